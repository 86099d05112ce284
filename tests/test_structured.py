"""Structured (filter) pruning and the slimmed network (issue 15): the slimmed network
computes what the masked one computes on every built-in network, the counts include the
input channels a pruned filter fed, ResNet residual channels are kept, and the eval stage
records measured speed-ups (measured, never asserted)."""

import math

import pytest
import torch

from cells import run_cell, settings
from prunelib import stages
from prunelib.config import contracts

from prunelib.nets import models

from prunelib.catalogue import registry

from prunelib.methods import slimming

from prunelib.methods import structured
from prunelib.foundations import eval_row
from prunelib.foundations.artifacts import load_pt, read_parquet_rows
from prunelib.methods.masking import kept_count

SHAPES = {"mnist": (1, 28), "cifar": (3, 32)}
ARCH_CASES = [(a, {}) for a in registry.ARCHS if not a.startswith("resnet")] + \
    [(a, {"shortcut": sc}) for a in registry.ARCHS if a.startswith("resnet") for sc in models.SHORTCUTS]
FAST = slimming.Timing(min_repeats=1, max_repeats=2, min_sample_seconds=0.0, warmup=0)


def _random_model(arch, options, seed=0):
    torch.manual_seed(seed)
    c, side = SHAPES["cifar" if arch.startswith(("vgg", "resnet")) else "mnist"]
    side = 8 if arch.startswith("resnet") else side  # any side works; small keeps ResNet-110 quick
    model = models.build(arch, 10, c, side, **options)
    with torch.no_grad():  # BatchNorm statistics and affine parameters away from 0 and 1
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval(), (c, side)


def _structured(model, ratio, scope="global", seed=0, prunable=None):
    prunable = prunable or models.prunable_names(model)
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(seed)
    scores = {n: torch.rand(params[n].shape, generator=g) for n in prunable}
    return structured.select_filters(model, scores, prunable, ratio, scope, seed)


@pytest.mark.parametrize("arch, options", ARCH_CASES, ids=[f"{a}{o.get('shortcut', '')}" for a, o in ARCH_CASES])
def test_slimmed_network_equals_masked_network_on_every_builtin_arch(arch, options):
    model, (c, side) = _random_model(arch, options)
    masks, rows, rec = _structured(model, 3, "layer" if arch in ("lenet5", "resnet20") else "global")
    assert any(f["pruned"] for f in rec["filters"])
    small = slimming.slim(model, masks).eval()
    masked = slimming.masked_copy(model, masks).eval()
    x = torch.randn(3, c, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = float((small(x) - masked(x)).abs().max())
    assert diff <= slimming.TOLERANCE
    # really smaller: the slimmed network has the kept prunable weights (plus non-prunable ones)
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == sum(r["kept"] for r in rows) == rec["filter_n_kept"]
    non_prunable = sum(p.numel() for n, p in small.named_parameters()
                       if not (n.endswith(".weight") and isinstance(small.get_submodule(n[:-7]),
                                                                   (torch.nn.Conv2d, torch.nn.Linear))))
    assert sum(p.numel() for p in small.parameters()) == kept + non_prunable


def test_count_is_exact_to_filter_granularity_and_deviation_recorded():
    model, _ = _random_model("lenet5", {})
    prunable = models.prunable_names(model)
    n = sum(p.numel() for name, p in model.named_parameters() if name in prunable)
    masks, rows, rec = _structured(model, 4)
    assert rec["filter_target_kept"] == kept_count(n, 4)
    assert rec["filter_n_kept"] <= rec["filter_target_kept"] and rec["target_reached"]
    assert rec["filter_deviation"] == rec["filter_target_kept"] - rec["filter_n_kept"]
    # at most one filter's worth below the target: conv2's filter feeds 16 columns of fc1
    biggest = max(25 * 20 + 16 * 500, 800 + 10, 25 + 20 * 25, 500 * 0 + 10)
    assert rec["filter_deviation"] < biggest


def test_a_pruned_filter_removes_the_input_columns_it_fed():
    model, _ = _random_model("lenet5", {})
    masks, _, rec = _structured(model, 8)
    by_layer = {f["layer"]: f["pruned"] for f in rec["filters"]}
    assert by_layer["conv2"], "ratio 8 prunes some of conv2's filters"
    for c in range(50):
        cols = masks["fc1.weight"][:, c * 16:(c + 1) * 16]
        assert bool((~cols).all()) == (c in by_layer["conv2"])
        assert bool((~masks["conv2.weight"][c]).all()) == (c in by_layer["conv2"])
    for c in by_layer["conv1"]:
        assert not masks["conv1.weight"][c].any() and not masks["conv2.weight"][:, c].any()


def test_layer_scope_keeps_the_same_fraction_of_filters_in_every_layer():
    model, _ = _random_model("mlp400x3", {})
    _, _, rec = _structured(model, 4, "layer")
    kept = [f["kept"] for f in rec["filters"]]
    assert max(kept) - min(kept) <= 1  # three groups of 400 units


def test_no_layer_is_emptied_and_an_unreached_target_is_said():
    model, _ = _random_model("lenet300", {})
    masks, rows, rec = _structured(model, 10_000)
    assert all(f["kept"] == 1 for f in rec["filters"])
    assert not rec["target_reached"] and rec["filter_deviation"] < 0
    assert not any(r["collapsed"] for r in rows)


@pytest.mark.parametrize("shortcut", models.SHORTCUTS)
def test_resnet_residual_channels_are_kept(shortcut):
    model, _ = _random_model("resnet20", {"shortcut": shortcut})
    masks, _, rec = _structured(model, 4)
    assert rec["shortcut_policy"] == structured.SHORTCUT_POLICY
    assert {f["layer"] for f in rec["filters"]} == {f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)}
    for name, m in masks.items():
        if name.endswith("conv2.weight"):
            assert m.reshape(m.shape[0], -1).any(1).all()  # every output channel of the residual stream
        if "shortcut" in name or name in ("conv1.weight", "fc.weight"):
            assert m.all()


def test_unstructured_mask_is_not_slimmed_and_sparse_linear_is_measured():
    model, _ = _random_model("lenet300", {})
    g = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=g) < 0.05 for n, p in model.named_parameters() if n.endswith("weight")}
    assert slimming.kept_filters(model, masks) is None
    sparse, names = slimming.csr_copy(model, masks)
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert float((sparse(x) - slimming.masked_copy(model, masks)(x)).abs().max()) < 1e-5
    assert names == ["fc1", "fc2", "fc3"]
    data = {"test_x": torch.randint(0, 255, (16, 28, 28), dtype=torch.uint8), "test_y": torch.arange(16) % 10}
    row = slimming.measure(model, masks, data, "mnist", "cpu", structured=False, timing=FAST)
    assert row["measured_speedup_infer_sparse"] > 0 and row["sparse_layers"] == "fc1,fc2,fc3"
    assert math.isnan(row["measured_speedup_infer_b1"]) and row["measure_device"].startswith("cpu")


def test_measure_on_resnet_with_shortcut_b():
    model, _ = _random_model("resnet20", {"shortcut": "B"})
    masks, _, _ = _structured(model, 2)
    data = {"test_x": torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8), "test_y": torch.arange(8)}
    row = slimming.measure(model, masks, data, "synthetic_cifar10", "cpu", structured=True, train_batch=8,
                           timing=FAST, infer_batch=8)
    assert row["slim_equal"] and row["slim_max_abs_diff"] <= slimming.TOLERANCE
    for c in ("measured_speedup_infer_b1", "measured_speedup_infer_b256", "measured_speedup_train"):
        assert row[c] > 0  # a measurement, not a claim about its size
    assert math.isnan(row["measured_speedup_infer_sparse"])


def test_structured_cell_through_the_stages(tmp_path, mnist_pt):
    s = settings(train={"epochs": 1, "train_subset": 512, "batch_size": 64}, score={"batch_size": 64})
    cell = run_cell(tmp_path, mnist_pt, s, "lenet5", "snip_filter", 4, folder=tmp_path)
    mask = load_pt(cell.mask)
    rec = mask["meta"]["structured"]
    assert mask["meta"]["target_kept"] == rec["filter_target_kept"]
    assert mask["meta"]["n_kept"] == rec["filter_n_kept"] == sum(int(m.sum()) for m in mask["masks"].values())
    assert {f["layer"] for f in rec["filters"]} == {"conv1", "conv2", "fc1"}
    row = read_parquet_rows(cell.eval)[0]
    assert row["granularity"] == "filter" and row["slim_equal"]
    assert row["slim_max_abs_diff"] <= slimming.TOLERANCE
    assert row["slim_params"] < row["n_params"]
    for c in ("measured_speedup_infer_b1", "measured_speedup_infer_b256", "measured_speedup_train"):
        assert math.isnan(row[c]) and c in eval_row.TIMING_COLUMNS  # timed by the measure stage, not here
    assert row["filter_deviation"] == rec["filter_deviation"]
    c = contracts.replace(contracts.measure_contract(s), timing=FAST)
    (timed,) = stages.run_measure(c, [str(cell.eval)], [str(mnist_pt)], tmp_path / "speedups.parquet")
    assert {k: timed[k] for k in eval_row.KEY} == {k: row[k] for k in eval_row.KEY}
    for c in ("measured_speedup_infer_b1", "measured_speedup_infer_b256", "measured_speedup_train"):
        assert timed[c] > 0 and timed[c + "_iqr"] >= 0 and 1 <= timed[c + "_repeats"] <= 2
    assert math.isnan(timed["measured_speedup_infer_sparse"])


def test_filter_masks_are_deterministic_per_seed():
    model, _ = _random_model("lenet5", {})
    prunable = models.prunable_names(model)
    scores = {n: torch.ones_like(p) for n, p in model.named_parameters() if n in prunable}  # all filters tie
    a, _, ra = structured.select_filters(model, scores, prunable, 4, "global", 0)
    b, _, rb = structured.select_filters(model, scores, prunable, 4, "global", 0)
    c, _, rc = structured.select_filters(model, scores, prunable, 4, "global", 1)
    assert all(torch.equal(a[n], b[n]) for n in a) and ra == rb
    assert rc["filters"] != ra["filters"]  # ties are drawn with the seed


def _report_rows():
    import pandas as pd

    rows = []
    for method, gran in (("dense", "weight"), ("global_l1_filter", "filter"), ("global_magnitude", "weight")):
        for ratio in ((1,) if method == "dense" else (2, 4)):
            for seed in (0, 1):
                filt = gran == "filter" and method != "dense"
                rows.append({"arch": "lenet5", "dataset": "synthetic_cifar10", "method": method, "ratio": float(ratio),
                             "seed": seed, "variant": "none", "top1": 0.5, "top5": 0.9, "empirical_ratio": ratio,
                             "compression_error": 0.0, "speedup": ratio * 1.5, "granularity": gran,
                             "measured_speedup_infer_b1": 1.2 * ratio if filt else math.nan,
                             "measured_speedup_infer_b256": 1.5 * ratio if filt else math.nan,
                             "measured_speedup_train": 1.1 * ratio if filt else math.nan,
                             "measured_speedup_infer_sparse": 0.5 if method == "global_magnitude" and ratio == 4
                             else math.nan,
                             "slim_max_abs_diff": 1e-7 if filt else math.nan,
                             "measure_device": "cpu (x86_64, 2 threads)"})
    return pd.DataFrame(rows)


def test_compression_table_and_figure_show_theoretical_vs_measured(tmp_path):
    from prunelib.report import aggregate
    from prunelib.report import figures as report_figures

    df = _report_rows()
    comp = aggregate.compression_table(df)
    row = comp[(comp.index == "global_l1_filter") & (comp["r"] == "4")].iloc[0]
    assert row["speed-up (MACs)"] == "6.00×" and row["measured × infer b256"] == "6.00×"
    assert row["measured × infer b1"] == "4.80×" and row["measured × train step"] == "4.40×"
    assert row["measured × CSR infer b256"] == "—" and row["pruned"] == "filter"
    assert row["measured on"] == "cpu (x86_64, 2 threads)" and row["slim vs masked max |Δ|"] == "1.0e-07"
    mag = comp[(comp.index == "global_magnitude") & (comp["r"] == "4")].iloc[0]
    assert mag["measured × CSR infer b256"] == "0.50×" and mag["measured × infer b1"] == "—"
    assert aggregate.measured_devices(df) == "cpu (x86_64, 2 threads)"
    # rows from before the columns existed: the table is as it was
    old = aggregate.compression_table(df[["method", "ratio", "empirical_ratio", "compression_error", "speedup"]])
    assert not any(c.startswith("measured") for c in old.columns)
    out = tmp_path / "c.png"
    report_figures.plot_compression(df, "synthetic_cifar10 / lenet5", out)
    assert out.exists() and out.stat().st_size > 0
    assert len(report_figures._measured_long(df)) == 4 * 3 + 2


@pytest.mark.parametrize("method", [m for m, e in registry.METHODS.items() if e.structured
                                    # (kron_obs also writes its update: tests/test_kron_cells.py)
                                    and not e.pruning.updates_weights])
def test_every_filter_method_scores_and_masks_through_the_stages(tmp_path, mnist_pt, method):
    s = settings(score={"batch_size": 32})
    d = tmp_path
    stages.run_init(contracts.init_contract(s, "lenet5", "mnist", 0, s.init.scheme_for(method)), d / "i.pt",
                    d / "i.parquet")
    stages.run_score(contracts.score_contract(s, method, 0), d / "i.pt", mnist_pt, d / "s.pt")
    masks = []
    for r in (2, 8):
        stages.run_mask(contracts.mask_contract(s, method, r, 0), d / "i.pt", d / "s.pt", d / "m.pt",
                        d / "m.parquet")
        blob = load_pt(d / "m.pt")
        meta, rec = blob["meta"], blob["meta"]["structured"]
        assert meta["n_kept"] == rec["filter_n_kept"] <= meta["target_kept"] == rec["filter_target_kept"]
        assert rec["target_reached"] and rec["scope"] == registry.method(method).scope
        assert sum(r["kept"] for r in read_parquet_rows(d / "m.parquet")) == meta["n_kept"]
        assert slimming.kept_filters(models.build("lenet5", 10, 1, 28), blob["masks"]) is not None
        masks.append(blob["masks"])
    assert sum(int(m.sum()) for m in masks[1].values()) < sum(int(m.sum()) for m in masks[0].values())


@pytest.mark.parametrize("arch, options", [("lenet5", {}), ("resnet20", {"shortcut": "B"})])
def test_prunable_biases_and_norm_parameters_go_with_their_filter(arch, options):
    model, (c, side) = _random_model(arch, options)
    prunable = models.prunable_names(model, include_bias=True, include_norm=True)
    masks, rows, rec = _structured(model, 3, prunable=prunable)
    assert sum(r["kept"] for r in rows) == rec["filter_n_kept"] == sum(int(m.sum()) for m in masks.values())
    first = rec["filters"][0]
    assert first["pruned"]
    for name, m in masks.items():
        if name.startswith(first["layer"].rsplit(".", 1)[0] + ".bn1") or name == first["layer"] + ".bias":
            assert not m[first["pruned"]].any()
    small = slimming.slim(model, masks).eval()
    x = torch.randn(2, c, side, side)
    with torch.no_grad():
        assert float((small(x) - slimming.masked_copy(model, masks).eval()(x)).abs().max()) <= slimming.TOLERANCE


def test_measured_columns_are_timing_for_reruns_and_audit():
    from prunelib.audit import rows as compare_rows

    assert set(slimming.MEASURED) <= set(compare_rows.TIMING_COLUMNS) <= set(compare_rows.RERUN_VARYING_COLUMNS)
    assert "measure_device" in compare_rows.PROVENANCE
