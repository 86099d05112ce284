"""Kron-OBD and Kron-OBS through every stage of a cell (init, score, mask, train, eval), as
the workflow runs them: LeNet-5 on real MNIST (256 training images, one epoch) and
ResNet-20 on the synthetic CIFAR-10 stand-in.  The slimmed network is built and equals
the masked one; the speed-ups are measured (recorded, not asserted)."""

from __future__ import annotations

import pytest
import torch

from cells import measure_cell, run_cell, settings
from prunelib.data import datasets
from prunelib.foundations.artifacts import load_pt, read_parquet_rows
from prunelib.methods import kfac
from prunelib.methods.structured import channel_groups
from prunelib.stages.common import load_model

SMALL = settings(train={"epochs": 1, "train_subset": 256, "batch_size": 64}, score={"num_batches": 1})


@pytest.fixture(scope="module")
def synth_pt(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "synthetic_cifar10.pt"
    datasets.prepare("synthetic_cifar10", tmp_path_factory.mktemp("root"), out)
    return out


def _check_cell(cell, method, data_pt, tmp_path):
    mask = load_pt(cell.mask)["meta"]
    rec = mask["structured"]
    assert rec["granularity"] == "filter"
    assert rec["filter_n_kept"] <= rec["filter_target_kept"] or not rec["target_reached"]
    assert any(f["pruned"] for f in rec["filters"])
    row = read_parquet_rows(cell.eval)[0]
    assert row["method"] == method and bool(row["slim_equal"]) and row["slim_max_abs_diff"] <= 1e-5
    timed = measure_cell(cell, data_pt, SMALL, tmp_path / "speedups.parquet")  # the eval row times nothing
    for c in ("measured_speedup_infer_b1", "measured_speedup_infer_b256", "measured_speedup_train"):
        assert row[c] != row[c] and timed[c] > 0 and 1 <= timed[c + "_repeats"] <= 2
    return load_pt(cell.scores)


@pytest.mark.parametrize("method", ["kron_obd", "kron_obs"])
def test_kron_cell_on_lenet5_mnist(tmp_path, mnist_pt, method):
    cell = run_cell(tmp_path, mnist_pt, SMALL, "lenet5", method, 4)
    blob = _check_cell(cell, method, mnist_pt, tmp_path)
    # the summed score of each filter is its dL: recomputed here from the same batches
    model, meta = load_model(cell.init)
    data = datasets.load_prepared(mnist_pt)
    d = SMALL.score.data_for(method)
    batches = list(datasets.scoring_batches(data, "mnist", 0, d["batch_size"], d["num_batches"],
                                            d["class_balanced"]))
    from prunelib.methods.scorers import kron

    layers = [g.producer for g in channel_groups(model)]
    fac = kfac.kfac_factors(model, layers, batches, 0, "true")
    mods = dict(model.named_modules())
    for layer in layers:
        want = kron.kron_importance(kfac.matrix_weight(mods[layer]), fac[layer], method)
        got = blob["scores"][f"{layer}.weight"].double()
        torch.testing.assert_close(got.reshape(got.shape[0], -1).sum(1), want)
    assert blob["meta"]["form"] == "paper" and blob["meta"]["fisher"] == "true"
    assert ("extra" in blob) == (method == "kron_obs")  # S^-1 stored for the Kron-OBS update
    if method == "kron_obs":
        # the update: training started from updated.pt, whose kept filters moved by exactly
        # the Kron-OBS formula applied to the init's weights, and whose removed weights are 0
        from prunelib.foundations.paths import UPDATED_FILE
        from prunelib.methods.scorers.kron import updated_state

        upd = load_pt(cell.folder / UPDATED_FILE)
        masks = load_pt(cell.mask)["masks"]
        rec = load_pt(cell.mask)["meta"]["structured"]
        pruned = {f["layer"]: f["pruned"] for f in rec["filters"] if f["pruned"]}
        want = updated_state(model, blob["extra"]["s_inverse"], pruned)
        for n, mk in masks.items():
            torch.testing.assert_close(upd["state_dict"][n], want[n] * mk)
        moved = [n for n in masks if not torch.equal(upd["state_dict"][n], model.state_dict()[n] * masks[n])]
        assert moved  # the kept filters of a pruned layer carry the compensation
        norms = load_pt(cell.mask)["meta"]["update"]["norms"]
        assert any(v["update_norm"] > 0 for v in norms.values())
        final_meta = load_pt(cell.final)["meta"]
        assert final_meta.get("started_from") == "updated"


@pytest.mark.parametrize("method", ["kron_obd", "kron_obs"])
def test_kron_cell_on_resnet20_synthetic_cifar10(tmp_path, synth_pt, method):
    cell = run_cell(tmp_path, synth_pt, SMALL, "resnet20", method, 2, dataset="synthetic_cifar10")
    _check_cell(cell, method, synth_pt, tmp_path)
