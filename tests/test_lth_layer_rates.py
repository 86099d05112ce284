"""Lottery-ticket layer rates (``iterative.criterion: layer_output_half``, Frankle & Carbin
2019): every tensor but the output layer at one rate p, the output layer at p / 2, the
round's total kept count exact, and every rounding adjustment recorded."""

from fractions import Fraction

import pytest
import torch

from cells import settings
from prunelib import config, stages
from prunelib.config import contracts

from prunelib.methods import iterative

from prunelib.nets import models

from prunelib.config import validation

from prunelib.methods import variants
from prunelib.foundations.artifacts import load_pt, read_parquet_rows
from prunelib.methods.masking import kept_count
from prunelib.foundations.paths import imp_round_files
from prunelib.config.validation import ConfigError

LOH = "layer_output_half"


def _lenet300(seed: int = 0):
    torch.manual_seed(seed)
    model = models.build("lenet300", 10, 1, 28)
    params = dict(model.named_parameters())
    return model, {n: params[n].detach().clone() for n in models.prunable_names(model)}


def _check_rates(rates: iterative.LayerRates, target: int) -> None:
    """Total exact; each tensor within one weight of a_l (1 - its rate), with one rate p
    for the hidden tensors and p / 2 for the output layer."""
    assert sum(rates.kept.values()) == target
    p = rates.hidden_rate
    for n, a in rates.remaining.items():
        rate = p / 2 if n in rates.output else p
        assert abs(rates.kept[n] - a * (1 - rate)) < 1, n
        assert 1 <= rates.kept[n] <= a


def test_the_output_layer_is_the_last_prunable_linear():
    model, weights = _lenet300()
    assert iterative.output_layer(model, weights) == ("fc3.weight",)
    assert iterative.output_layer(model, models.prunable_names(model, include_bias=True)) == \
        ("fc3.weight", "fc3.bias")
    lenet5 = models.build("lenet5", 10, 1, 28)
    last_linear = [n for n, m in lenet5.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    assert iterative.output_layer(lenet5, models.prunable_names(lenet5)) == (f"{last_linear}.weight",)
    convs = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 2, 3))
    with pytest.raises(ValueError, match="needs a prunable Linear output layer and Sequential has none; "
                                         "allowed: global, layer"):
        iterative.output_layer(convs, models.prunable_names(convs))


@pytest.mark.parametrize("ratio", [1.25, 2, 3, 7, 10, 64, 500])
def test_one_round_meets_the_target_exactly_with_the_output_at_half_the_rate(ratio):
    model, weights = _lenet300()
    out = iterative.output_layer(model, weights)
    remaining = {n: w.numel() for n, w in weights.items()}
    target = kept_count(sum(remaining.values()), ratio)
    rates = iterative.layer_output_half_counts(remaining, out, target)
    _check_rates(rates, target)
    # the realised removal fractions: hidden layers share one rate, the output layer half of it
    removed = {n: 1 - rates.kept[n] / a for n, a in remaining.items()}
    assert abs(removed["fc1.weight"] - removed["fc2.weight"]) <= 1 / remaining["fc2.weight"]
    assert abs(removed["fc3.weight"] - removed["fc1.weight"] / 2) <= 1 / remaining["fc3.weight"]


def test_a_chain_of_rounds_meets_every_density_and_keeps_the_largest_magnitudes():
    model, weights = _lenet300(1)
    out = iterative.output_layer(model, weights)
    n_total = sum(w.numel() for w in weights.values())
    masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    g = torch.Generator().manual_seed(1)
    for j, d in enumerate(config.imp_densities([1, 4, 64], 0.8), start=1):
        # "retraining": new magnitudes each round, so the round ranks other weights than the last
        weights = {n: w + 0.01 * torch.randn(w.shape, generator=g) for n, w in weights.items()}
        new, rows, _ = iterative.prune_round(weights, masks, d, LOH, 0, j, "lth", out)
        target = kept_count(n_total, 1 / d)
        assert sum(int(m.sum()) for m in new.values()) == target, j
        by_name = {r["name"]: r for r in rows}
        p = by_name["fc1.weight"]["nominal_rate"]
        assert by_name["fc2.weight"]["nominal_rate"] == p and by_name["fc3.weight"]["nominal_rate"] == p / 2
        for n in weights:
            r = by_name[n]
            assert r["remaining"] == int(masks[n].sum()) and r["kept"] == int(new[n].sum())
            assert abs(r["kept"] - r["remaining"] * (1 - r["nominal_rate"])) < 1
            assert r["realised_rate"] == 1 - r["kept"] / r["remaining"] and r["output_layer"] == (n == "fc3.weight")
            assert bool((new[n] <= masks[n]).all())  # pruned weights stay pruned
            candidates = masks[n] & ~new[n]  # ranked this round and pruned: no larger than any survivor
            assert weights[n].abs()[new[n]].min() >= weights[n].abs()[candidates].max()
        masks = new
    assert kept_count(n_total, 64) == sum(int(m.sum()) for m in masks.values())


def test_rounding_adjustments_are_recorded_not_hidden():
    # a = b = 3, output 2, keep 5: p = 3/7, ideal 12/7, 12/7 and 11/7 (sum 5); round() would
    # keep 2 + 2 + 2 = 6, so the output layer (smallest fractional part) keeps one fewer
    rates = iterative.layer_output_half_counts({"a": 3, "b": 3, "out": 2}, ("out",), 5)
    assert rates.hidden_rate == Fraction(3, 7) and rates.kept == {"a": 2, "b": 2, "out": 1}
    assert rates.row("out")["rounding_adjustment"] == -1 and rates.row("a")["rounding_adjustment"] == 0
    # through prune_round: the rows carry it, and the meta record lists exactly that tensor
    w = {"a": torch.tensor([3.0, 1.0, 2.0]), "b": torch.tensor([0.5, -4.0, 1.0]), "out": torch.tensor([1.0, -2.0])}
    full = {n: torch.ones_like(v, dtype=torch.bool) for n, v in w.items()}
    masks, rows, _ = iterative.prune_round(w, full, Fraction(5, 8), LOH, 0, 1, "lth", ("out",))
    assert {n: m.tolist() for n, m in masks.items()} == {
        "a": [True, False, True], "b": [False, True, True], "out": [False, True]}
    record = iterative.layer_rates_record(rows)
    assert record["rounding_adjustments"] == {"out": -1} and record["output_layer"] == ["out"]
    assert record["hidden_rate"] == 3 / 7 and record["output_rate"] == 3 / 14 and record["n_kept"] == 5
    assert record["max_count_deviation"] == pytest.approx(4 / 7)
    assert iterative.layer_rates_record(iterative.prune_round(w, full, Fraction(5, 8), "global", 0, 1)[1]) is None


def test_a_target_that_would_empty_a_tensor_is_an_error():
    with pytest.raises(ValueError, match=r"cannot keep exactly 5 of the 111 remaining weights in round 3 without "
                                         r"emptying a \(1 weights left"):
        iterative.layer_output_half_counts({"a": 1, "b": 100, "out": 10}, ("out",), 5, 3)
    with pytest.raises(ValueError, match="without emptying b"):  # p > 1: the output alone keeps more than 2
        iterative.layer_output_half_counts({"b": 100, "out": 10}, ("out",), 2, 1)


def test_the_criterion_is_allowed_in_one_place_and_a_typo_is_a_one_line_config_error():
    schema = validation.load_schema()["properties"]["iterative"]["properties"]["criterion"]
    assert schema["enum"] == list(iterative.CRITERIA) and LOH in iterative.CRITERIA
    assert settings(iterative={"criterion": LOH}).iterative.criterion == LOH
    with pytest.raises(ConfigError) as err:
        config.resolve({"iterative": {"criterion": "layer_output_halve"}})
    assert str(err.value) == ('config error: iterative.criterion = "layer_output_halve" is not allowed; '
                              'allowed: global, layer, layer_output_half')
    s = config.load(config.preset_dir() / "lth_mnist.yaml")
    assert s.iterative.criterion == LOH and config.imp_spec(s, "lth").criterion == LOH


# one tiny chain through the stage functions: 120 examples in batches of 60, 1 epoch = T = 2
# steps; K = 0.5 to r = 4 is two rounds (densities 1/2, 1/4)
CFG = {
    "grid": {"archs": ["lenet300"], "datasets": ["mnist"], "methods": ["lth"], "ratios": [1, 4], "seeds": [0],
             "variants": ["none", "invert"]},
    "train": {"epochs": 1, "train_subset": 120, "batch_size": 60, "lr": 0.05},
    "iterative": {"round_factor": 0.5, "criterion": LOH},
}


def test_an_lth_chain_with_layer_rates_through_the_stages(tmp_path, mnist_pt):
    s = settings(CFG)
    densities = config.imp_densities(s.grid.ratios, s.iterative.round_factor)
    assert densities == [Fraction(1, 2), Fraction(1, 4)]
    stages.run_init(contracts.init_contract(s, "lenet300", "mnist", 0, "pytorch_default"), tmp_path / "init.pt",
                    tmp_path / "init.parquet")
    files = [imp_round_files(tmp_path / f"round{j}") for j in range(3)]
    stages.run_imp_round(contracts.imp_round_contract(s, "lth", 0, "mnist", 0), mnist_pt, files[0],
                         init_path=tmp_path / "init.pt")
    for j in (1, 2):
        stages.run_imp_round(contracts.imp_round_contract(s, "lth", 0, "mnist", j), mnist_pt, files[j],
                             prev_weights=files[j - 1]["weights"], prev_mask=files[j - 1]["mask"],
                             rewind_path=files[0]["rewind"])
    n_total = 266_200
    prev_masks = load_pt(files[0]["mask"])["masks"]
    for j, d in zip((1, 2), densities):
        blob = load_pt(files[j]["mask"])
        meta, masks = blob["meta"], blob["masks"]
        assert meta["scope"] == LOH and meta["n_kept"] == meta["target_kept"] == kept_count(n_total, 1 / d)
        rates = meta["layer_rates"]
        assert rates["output_layer"] == ["fc3.weight"] and rates["n_kept"] == meta["n_kept"]
        assert rates["output_rate"] == rates["hidden_rate"] / 2 and rates["max_count_deviation"] < 1
        table = {r["name"]: r for r in read_parquet_rows(files[j]["mask_table"])}
        assert {n: r["rounding_adjustment"] for n, r in table.items() if r["rounding_adjustment"]} == \
            rates["rounding_adjustments"]
        removed = {n: 1 - int(masks[n].sum()) / int(prev_masks[n].sum()) for n in masks}
        assert removed == pytest.approx(rates["realised_rates"])
        assert abs(removed["fc3.weight"] - removed["fc1.weight"] / 2) <= 1 / int(prev_masks["fc3.weight"].sum())
        # the survivors are each tensor's largest magnitudes of the previous round's trained weights
        trained = load_pt(files[j - 1]["weights"])["state_dict"]
        for n in masks:
            mag = trained[n].abs()
            assert mag[masks[n]].min() >= mag[prev_masks[n] & ~masks[n]].max(), n
        prev_masks = masks
    # the cell at r = 4 is round 2's mask, its layer rates recorded; invert keeps as many per tensor
    chain = load_pt(files[2]["mask"])
    for variant in ("none", "invert"):
        out = tmp_path / f"r4-{variant}"
        stages.run_mask(contracts.mask_contract(s, "lth", 4, 0, variant), None, files[2]["mask"],
                        out / "mask.pt", out / "mask.parquet")
        cell = load_pt(out / "mask.pt")
        assert cell["meta"]["layer_rates"] == chain["meta"]["layer_rates"]
        assert cell["meta"]["n_kept"] == cell["meta"]["target_kept"] == kept_count(n_total, 4)
        assert {n: int(m.sum()) for n, m in cell["masks"].items()} == \
            {n: int(m.sum()) for n, m in chain["masks"].items()}
        if variant == "invert":  # the bottom k of each tensor's ranking overlaps its top k only where k > n / 2
            assert {n: int((m & chain["masks"][n]).sum()) for n, m in cell["masks"].items()} == \
                {n: max(0, 2 * int(m.sum()) - m.numel()) for n, m in chain["masks"].items()}
        else:
            assert all(torch.equal(m, chain["masks"][n]) for n, m in cell["masks"].items())


def test_invert_needs_the_counts_for_layer_rates():
    scores = {"a": torch.arange(4.0)}
    with pytest.raises(ValueError, match="needs the method's kept count per tensor"):
        variants.invert(scores, 2, LOH, 0, "lth")
    masks, _ = variants.invert(scores, 2, LOH, 0, "lth", counts={"a": 1})
    assert masks["a"].tolist() == [True, False, False, False]
