"""The five stages in-process on real MNIST, and determinism by hash."""

import dataclasses

import pytest
import torch

from prunelib import config, stages

from prunelib.catalogue import registry
from prunelib.config import contracts
from prunelib.foundations.artifacts import load_pt, read_parquet_rows
from prunelib.foundations.eval_row import RERUN_VARYING_COLUMNS
from prunelib.methods.masking import kept_count

from cells import run_cell, settings
from conftest import tensor_dict_digest

SETTINGS = settings(train={"epochs": 1, "train_subset": 2000, "batch_size": 64}, score={"batch_size": 64})


@pytest.fixture(scope="module")
def snip_cell(tmp_path_factory, mnist_pt):
    return run_cell(tmp_path_factory.mktemp("a"), mnist_pt, SETTINGS, "lenet300", "snip", 16, 0)


def test_init_table_lists_every_parameter(snip_cell):
    rows = read_parquet_rows(snip_cell / "init.parquet")
    assert [r["name"] for r in rows] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                                         "fc3.weight", "fc3.bias"]
    assert sum(r["numel"] for r in rows) == 266_610
    assert [r["prunable"] for r in rows] == [True, False] * 3
    assert rows[0]["shape"] == "300x784"


def test_scores_have_the_parameters_names_and_shapes(snip_cell):
    blob = load_pt(snip_cell / "scores.pt")
    init = load_pt(snip_cell / "init.pt")["state_dict"]
    assert {n: s.shape for n, s in blob["scores"].items()} == \
        {n: init[n].shape for n in ("fc1.weight", "fc2.weight", "fc3.weight")}
    assert blob["meta"]["batch_size"] == 64 and blob["meta"]["n_examples"] == 64
    assert abs(sum(float(s.sum()) for s in blob["scores"].values()) - 1) < 1e-4  # SNIP normalised


def test_mask_table_and_exact_count(snip_cell):
    rows = read_parquet_rows(snip_cell / "mask.parquet")
    masks = load_pt(snip_cell / "mask.pt")["masks"]
    assert sum(r["kept"] for r in rows) == kept_count(266_200, 16) == sum(int(m.sum()) for m in masks.values())
    for r in rows:
        assert r["kept"] == int(masks[r["name"]].sum())
        assert r["density"] == r["kept"] / r["numel"]
        assert r["collapsed"] == (r["kept"] == 0)


def test_train_log_and_final_weights(snip_cell):
    log = read_parquet_rows(snip_cell / "train_log.parquet")
    assert [r["epoch"] for r in log] == [1]
    assert set(log[0]) == {"epoch", "step", "lr", "train_loss", "train_top1", "seconds"}
    final = load_pt(snip_cell / "final.pt")["state_dict"]
    masks = load_pt(snip_cell / "mask.pt")["masks"]
    for name, m in masks.items():
        assert int(torch.count_nonzero(final[name][~m])) == 0


def test_eval_row(snip_cell):
    row = read_parquet_rows(snip_cell / "eval.parquet")[0]
    expected = {"arch", "dataset", "method", "ratio", "seed", "top1", "top5", "test_loss", "n_params",
                "n_prunable", "n_nonzero", "empirical_ratio", "compression_error", "collapsed_layers",
                "train_seconds", "prunelib_version", "torch_version", "device", "settings_hash"}
    assert expected <= set(row)
    assert (row["arch"], row["method"], row["ratio"], row["seed"], row["variant"]) == ("lenet300", "snip", 16.0, 0, "none")
    assert row["n_params"] == 266_610 and row["n_prunable"] == 266_200
    assert row["empirical_ratio"] == 266_200 / row["n_nonzero_prunable"]
    assert abs(row["empirical_ratio"] - 16) / 16 < 1e-3
    assert row["compression_error"] == (row["empirical_ratio"] - 16) / 16
    assert 0.5 < row["top1"] <= row["top5"] <= 1.0   # real MNIST learns even from 2,000 images
    assert row["device"] == "cpu"


def test_same_seed_and_config_give_bit_identical_artifacts(tmp_path, mnist_pt):
    s = dataclasses.replace(SETTINGS, train=dataclasses.replace(SETTINGS.train, train_subset=512))
    a = run_cell(tmp_path / "a", mnist_pt, s, "lenet5", "snip", 8, 1)
    b = run_cell(tmp_path / "b", mnist_pt, s, "lenet5", "snip", 8, 1)
    c = run_cell(tmp_path / "c", mnist_pt, s, "lenet5", "snip", 8, 2, until="mask")  # (only its mask is compared)
    digest = {k: tensor_dict_digest(load_pt(d / "mask.pt")["masks"]) for k, d in zip("abc", (a, b, c))}
    assert digest["a"] == digest["b"] != digest["c"]
    for f, key in (("init.pt", "state_dict"), ("scores.pt", "scores"), ("final.pt", "state_dict")):
        assert tensor_dict_digest(load_pt(a / f)[key]) == tensor_dict_digest(load_pt(b / f)[key]), f
    ra, rb = (read_parquet_rows(d / "eval.parquet")[0] for d in (a, b))
    for col in RERUN_VARYING_COLUMNS:
        ra.pop(col), rb.pop(col)
    assert ra == rb


@pytest.fixture(scope="module")
def lenet5_init(tmp_path_factory):
    d = tmp_path_factory.mktemp("lenet5")
    stages.run_init(contracts.init_contract(SETTINGS, "lenet5", "mnist", 0, "pytorch_default"),
                    d / "i.pt", d / "i.parquet")
    return d / "i.pt"


@pytest.mark.parametrize("method", [m for m in config.known("methods") if m not in config.IMP_METHODS
                                    and not registry.method(m).structured  # filters: tests/test_structured.py
                                    # (weight updates: tests/test_second_order.py, test_e2e_second_order.py)
                                    and not registry.method(m).pruning.updates_weights
                                    # (a rebuilt network meets its target by count, at most:
                                    # tests/test_eigendamage.py)
                                    and registry.method(m).pruning.trains_from != "mask"])
def test_every_method_meets_the_ratio_exactly_on_lenet5_deterministically(tmp_path, mnist_pt, lenet5_init,
                                                                         method):
    s, d, ratios = SETTINGS, tmp_path, (2, 4, 8, 16, 32, 64)
    if method == "synflow":  # it reruns its rounds per ratio: 10 rounds at 2 ratios (more: test_methods)
        s = dataclasses.replace(s, score=dataclasses.replace(s.score, per_method={"synflow": {"rounds": 10}}))
        ratios = (4, 64)
    digests = []
    for run in ("a", "b"):
        stages.run_score(contracts.score_contract(s, method, 0), lenet5_init, mnist_pt, d / f"s{run}.pt")
        for r in ratios:
            stages.run_mask(contracts.mask_contract(s, method, r, 0), lenet5_init, d / f"s{run}.pt",
                            d / "m.pt", d / "m.parquet")
            meta = load_pt(d / "m.pt")["meta"]
            rows = read_parquet_rows(d / "m.parquet")
            if method.startswith("layer_"):
                assert [x["kept"] for x in rows] == [kept_count(x["numel"], r) for x in rows]
            else:
                assert sum(x["kept"] for x in rows) == kept_count(430_500, r)
            assert meta["n_kept"] == meta["target_kept"]
            digests.append((run, r, tensor_dict_digest(load_pt(d / "m.pt")["masks"])))
    a = [x[1:] for x in digests if x[0] == "a"]
    b = [x[1:] for x in digests if x[0] == "b"]
    assert a == b  # bit-identical masks when scored and masked again


def test_dense_control_keeps_everything(tmp_path, mnist_pt):
    s = dataclasses.replace(SETTINGS, train=dataclasses.replace(SETTINGS.train, train_subset=128))
    d = run_cell(tmp_path, mnist_pt, s, "lenet300", config.DENSE, 1, 0)
    row = read_parquet_rows(d / "eval.parquet")[0]
    assert row["n_kept"] == row["n_prunable"] == 266_200
    assert row["empirical_ratio"] == 1.0 and row["compression_error"] == 0.0
    assert not (d / "scores.pt").exists()


def test_diverged_training_is_recorded_as_a_failed_cell_not_a_crash(tmp_path, mnist_pt):
    from prunelib.report import aggregate

    s = dataclasses.replace(SETTINGS, train=dataclasses.replace(SETTINGS.train, lr=1e12, train_subset=256))
    d = run_cell(tmp_path, mnist_pt, s, "lenet300", "global_magnitude", 4, 0)
    row = read_parquet_rows(d / "eval.parquet")[0]
    assert row["status"] == "failed"
    assert row["reason"].startswith("training loss became")
    assert row["top1"] != row["top1"]  # NaN: no accuracy is reported for a diverged cell
    assert row["n_kept"] == kept_count(266_200, 4)
    import pandas as pd

    table = aggregate.blalock_table(pd.DataFrame([row]), "top1")
    assert table.loc["global_magnitude", "r=4"] == "[failed 1/1]"
