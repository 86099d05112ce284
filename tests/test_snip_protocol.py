"""Elements of the SNIP authors' protocol (namhoonlee/snip-public): LeNet-5-Caffe, TF's
variance-scaling initialiser (zero biases, and the first release's drawn ones), fresh
weights after pruning."""

from __future__ import annotations

import pytest
import torch

from cells import run_cell, settings
from prunelib import stages
from prunelib.catalogue import registry
from prunelib.config import contracts

from prunelib.nets import init_schemes

from prunelib.nets import models
from prunelib.foundations.artifacts import load_pt


def test_lenet5_caffe_has_431080_parameters_and_no_nonlinearity_after_its_convolutions():
    torch.manual_seed(0)
    net = models.build("lenet5_caffe", 10, 1, 28)
    assert sum(p.numel() for p in net.parameters()) == 431_080
    x = torch.randn(4, 1, 28, 28)
    h = torch.max_pool2d(net.conv2(torch.max_pool2d(net.conv1(x), 2)), 2)
    expected = net.fc2(torch.relu(net.fc1(torch.flatten(h, 1))))
    torch.testing.assert_close(net(x), expected, rtol=0, atol=0)
    # the study's lenet5, same parameters, does apply ReLU there
    study = models.build("lenet5", 10, 1, 28)
    study.load_state_dict(net.state_dict())
    assert not torch.allclose(study(x), net(x))


def test_variance_scaling_draws_weights_with_variance_one_over_fan_in_truncated_at_two_std_and_zero_biases():
    torch.manual_seed(0)
    net = init_schemes.apply(models.build("lenet5_caffe", 10, 1, 28), "variance_scaling")
    fan_in = {"conv1.weight": 25, "conv2.weight": 500, "fc1.weight": 800, "fc2.weight": 500}
    params = dict(net.named_parameters())
    for name, fan in fan_in.items():
        p = params[name].detach()
        bound = 2 / 0.87962566103423978 * (1 / fan) ** 0.5  # TF truncates at two std of the untruncated normal
        assert p.abs().max() <= bound
        tolerance = 3 * (2 / p.numel()) ** 0.5  # ~3 standard errors of a variance estimate
        assert abs(p.var().item() * fan - 1) < max(tolerance, 0.02), name
        assert p.abs().max() > 0.9 * bound  # truncated, not clipped far inside
    # snip/main.py: initializer_b_bp defaults to zeros
    assert all(bool((params[n] == 0).all()) for n in params if n.endswith(".bias"))


def test_snip_with_zero_biases_prunes_every_bias_and_counts_them_in_the_ratio(mnist):
    """The authors' code ranks weights and biases together; zero biases score |g b| = 0,
    so every bias is pruned and the kept count is round((weights + biases) / r)."""
    from prunelib.methods import masking

    torch.manual_seed(0)
    net = init_schemes.apply(models.build("lenet300", 10, 1, 28), "variance_scaling")
    prunable = models.prunable_names(net, include_bias=True)
    assert sum(n.endswith(".bias") for n in prunable) == 3
    scores, _used = stages.compute_scores(net, prunable, registry.method("snip").make_scorer({}), mnist, "mnist", 0,
                                          {"batch_size": 100, "num_batches": 1, "class_balanced": False},
                                          torch.device("cpu"))
    masks, _rows = masking.select_masks(scores, 20, "global", 0, method="snip")
    assert sum(int(m.sum()) for m in masks.values()) == masking.kept_count(266_610, 20) == 13_331
    assert all(int(masks[k].sum()) == 0 for k in masks if k.endswith(".bias"))


def test_the_first_releases_bias_draw_lets_biases_compete_and_redraw_still_starts_them_at_zero(mnist, tmp_path):
    """snip-public's first release (b00bef0) drew the biases with ``vs`` too
    (``initializer_b_bp``; zeros since f028496).  Then the biases are drawn with
    variance 1 / their length, score |g b| > 0 and some are kept at the same kept count;
    the fresh weights training starts from still have zero biases (``initializer_b_ap``)."""
    from prunelib.methods import masking

    torch.manual_seed(0)
    net = init_schemes.apply(models.build("lenet300", 10, 1, 28), "variance_scaling_with_biases")
    for name, length in (("fc1.bias", 300), ("fc2.bias", 100), ("fc3.bias", 10)):
        b = dict(net.named_parameters())[name].detach()
        assert b.abs().max() <= 2 / 0.87962566103423978 * (1 / length) ** 0.5 and b.count_nonzero() == length
    biases = torch.cat([b.detach() * length ** 0.5 for b, length in
                        ((net.fc1.bias, 300), (net.fc2.bias, 100), (net.fc3.bias, 10))])
    assert abs(biases.var().item() - 1) < 0.2  # 410 draws: ~0.06 standard error; fan_in 784 would give 0.38
    torch.manual_seed(0)
    zero_biases = init_schemes.apply(models.build("lenet300", 10, 1, 28), "variance_scaling")
    for name, p in zero_biases.named_parameters():  # the same weights: the two differ in the biases only
        if name.endswith(".weight"):
            assert torch.equal(p, dict(net.named_parameters())[name]), name
    prunable = models.prunable_names(net, include_bias=True)
    scores, _used = stages.compute_scores(net, prunable, registry.method("snip").make_scorer({}), mnist, "mnist", 0,
                                          {"batch_size": 100, "num_batches": 1, "class_balanced": False},
                                          torch.device("cpu"))
    masks, _rows = masking.select_masks(scores, 20, "global", 0, method="snip")
    assert sum(int(m.sum()) for m in masks.values()) == 13_331  # the same kept count as with zero biases
    assert sum(int(masks[k].sum()) for k in masks if k.endswith(".bias")) > 0  # now biases survive
    s = settings(init={"scheme": "variance_scaling_with_biases", "after_pruning": "redraw"})
    init = contracts.init_contract(s, "lenet300", "mnist", 0, "variance_scaling_with_biases")
    stages.run_init(init, tmp_path / "init.pt", tmp_path / "init.parquet")
    meta = load_pt(tmp_path / "init.pt")["meta"]
    assert load_pt(tmp_path / "init.pt")["state_dict"]["fc1.bias"].count_nonzero() == 300
    fresh = stages.redrawn_state(meta, 0)
    assert all(not fresh[f"fc{i}.bias"].any() for i in (1, 2, 3))


def test_after_pruning_redraw_is_recorded_only_when_asked_and_draws_fresh_weights_with_zero_biases(tmp_path):
    s = settings(init={"scheme": "variance_scaling", "after_pruning": "redraw"},
                 train={"epochs": 1, "train_subset": 200, "batch_size": 100})
    keep = settings()
    redraw = contracts.train_contract(s, "snip", 4, 0, "mnist")
    assert redraw.after_pruning == "redraw" and redraw.to_dict()["after_pruning"] == "redraw"
    assert contracts.train_contract(keep, "snip", 4, 0, "mnist").after_pruning == "keep"
    assert "after_pruning" not in contracts.train_contract(keep, "snip", 4, 0, "mnist").to_dict()
    chain = contracts.train_contract(s, "lth", 4, 0, "mnist")  # a chain trains its own
    assert chain.after_pruning == "keep" and "after_pruning" not in chain.to_dict()
    init = contracts.init_contract(s, "lenet300", "mnist", 0, "variance_scaling")
    stages.run_init(init, tmp_path / "init.pt", tmp_path / "init.parquet")
    meta = load_pt(tmp_path / "init.pt")["meta"]
    fresh = stages.redrawn_state(meta, 0)
    scored = load_pt(tmp_path / "init.pt")["state_dict"]
    assert not torch.equal(fresh["fc1.weight"], scored["fc1.weight"])
    assert all(not fresh[f"fc{i}.bias"].any() for i in (1, 2, 3))
    assert abs(fresh["fc1.weight"].var().item() * 784 - 1) < 0.02
    assert torch.equal(fresh["fc1.weight"], stages.redrawn_state(meta, 0)["fc1.weight"])  # seeded


@pytest.mark.parametrize("after", ["keep", "redraw"])
def test_training_starts_from_the_redrawn_weights_masked(tmp_path, mnist_pt, after):
    s = settings(init={"scheme": "variance_scaling", "after_pruning": after},
                 train={"epochs": 1, "train_subset": 200, "batch_size": 100, "lr": 1e-9})
    cell = run_cell(tmp_path, mnist_pt, s, "lenet300", "global_magnitude", 4, until="train", folder=tmp_path)
    assert load_pt(cell.init)["meta"]["init_scheme"] == "variance_scaling"
    final = load_pt(cell.final)
    mask = load_pt(cell.mask)["masks"]["fc1.weight"]
    start = (stages.redrawn_state(load_pt(cell.init)["meta"], 0) if after == "redraw"
             else load_pt(cell.init)["state_dict"])
    w = final["state_dict"]["fc1.weight"]
    assert not w[~mask].any()
    torch.testing.assert_close(w[mask], start["fc1.weight"][mask], rtol=0, atol=1e-6)  # lr ~ 0: barely moved
    assert final["meta"].get("after_pruning", "keep") == after


def test_step_milestones_drop_the_lr_once_that_many_steps_are_done_as_tf_piecewise_constant():
    from prunelib.config.settings import TrainSettings
    from prunelib.train.loop import lr_at_step

    s = TrainSettings(lr=0.1, lr_schedule="step", milestones=(25001, 50001), milestone_unit="steps", gamma=0.1)
    # tf.train.piecewise_constant(global_step, [25000, 50000], ...) keeps 0.1 while global_step <= 25000
    lrs = {p: lr_at_step(p, 540, s) for p in (0, 25000, 25001, 50000, 50001, 74999)}
    assert [round(v, 12) for v in lrs.values()] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    epochs = TrainSettings(lr=0.1, lr_schedule="step", milestones=(2,), gamma=0.1)
    assert lr_at_step(2 * 540 - 1, 540, epochs) == 0.1 and round(lr_at_step(2 * 540, 540, epochs), 12) == 0.01


def _cell(tmp_path, mnist_pt, extra: dict):
    """A snip cell at r = 4 run to its eval row; its train contract and the row."""
    from prunelib.foundations.artifacts import read_parquet_rows

    s = settings({"init": {"scheme": "variance_scaling"},
                  "train": {"train_subset": 300, "batch_size": 100, "lr": 0.1, "eval_batch_size": 1000}, **extra})
    cell = run_cell(tmp_path, mnist_pt, s, "lenet300", "snip", 4, folder=tmp_path)
    [row] = read_parquet_rows(cell.eval)
    return contracts.train_contract(s, "snip", 4, 0, "mnist", arch="lenet300"), row


def test_train_steps_replace_epochs_and_a_partial_last_epoch_is_logged(tmp_path, mnist_pt):
    from prunelib.foundations.artifacts import read_parquet_rows

    train, _row = _cell(tmp_path, mnist_pt, {"train": {"steps": 7, "train_subset": 300, "batch_size": 100}})
    assert train.train.steps == 7 and train.to_dict()["train"]["steps"] == 7
    log = read_parquet_rows(tmp_path / "train_log.parquet")
    assert [(r["epoch"], r["step"]) for r in log] == [(1, 3), (2, 6), (3, 7)]  # 3 steps per epoch, 7 in all
    unset = contracts.train_contract(settings(), "snip", 4, 0, "mnist").to_dict()
    assert "steps" not in unset["train"] and "milestone_unit" not in unset["train"]  # old hashes unchanged


def test_best_of_checkpoints_is_the_max_test_top1_over_the_last_checkpoints_beside_the_final_top1(tmp_path, mnist_pt):
    from prunelib.data import datasets
    from prunelib.train.loop import evaluate

    train, row = _cell(tmp_path, mnist_pt, {"train": {"steps": 12, "train_subset": 300, "batch_size": 100},
                                             "eval": {"every_steps": 3, "keep_last": 3}})
    assert (train.test_checkpoints.every_steps, train.test_checkpoints.keep_last) == (3, 3)
    assert train.to_dict()["test_checkpoints"] == {"every_steps": 3, "keep_last": 3}
    final = load_pt(tmp_path / "final.pt")
    kept = final["test_checkpoints"]
    assert sorted(kept) == [6, 9, 12]  # every 3 steps, the last 3 kept
    for name, w in final["state_dict"].items():  # the last checkpoint is the final weights
        assert torch.equal(kept[12][name], w)
    data = datasets.load_prepared(mnist_pt)
    model = stages.build_model("lenet300", "mnist")
    accuracy = {}
    for step, state in kept.items():
        model.load_state_dict(state)
        accuracy[step] = evaluate(model, data, "mnist", 1000, torch.device("cpu"))["top1"]
    assert row["checkpoints_evaluated"] == 3
    assert row["best_test_top1"] == max(accuracy.values()) >= row["top1"] == accuracy[12]
    assert accuracy[row["best_test_step"]] == row["best_test_top1"]
    assert len(set(accuracy.values())) > 1  # the checkpoints differ, so the max selects something


def test_without_eval_every_steps_no_checkpoints_are_kept_and_the_row_says_so(tmp_path, mnist_pt):
    train, row = _cell(tmp_path, mnist_pt, {"train": {"steps": 3, "train_subset": 300, "batch_size": 100}})
    assert train.test_checkpoints is None and "test_checkpoints" not in train.to_dict()
    assert "test_checkpoints" not in load_pt(tmp_path / "final.pt")
    assert row["best_test_top1"] is None and row["best_test_step"] is None and row["checkpoints_evaluated"] == 0
    from prunelib.foundations.artifacts import read_parquet_rows

    on_disk = read_parquet_rows(tmp_path / "eval.parquet")[0]
    assert on_disk["best_test_top1"] is None and on_disk["checkpoints_evaluated"] == 0


def test_the_checkpoints_table_shows_final_beside_best_of_checkpoints_with_its_label_and_marks_nothing():
    import pandas as pd

    from prunelib.report import tables as report_tables

    rows = [{"method": "snip", "ratio": 20.0, "seed": s, "status": "ok", "top1": t, "best_test_top1": b,
             "best_test_step": k} for s, t, b, k in ((0, 0.97, 0.98, 74000), (1, 0.96, 0.975, 75000))]
    rows.append({"method": "dense", "ratio": 1.0, "seed": 0, "status": "ok", "top1": 0.98,
                 "best_test_top1": None, "best_test_step": None})
    table = report_tables.checkpoints_table(pd.DataFrame(rows))
    cell = table.loc["snip", "r=20"]
    assert cell == "final 96.50 ± 0.71 (2); best of checkpoints 97.75 ± 0.35 (2) at step 74000, 75000"
    assert table.loc["dense", "r=1"] == "—" and "**" not in table.to_string()
    assert "optimistic, selected on test" in report_tables.BEST_OF_CHECKPOINTS
    no_checkpoints = pd.DataFrame(rows).assign(best_test_top1=None)
    assert report_tables.checkpoints_table(no_checkpoints).empty
    assert "best_test_top1" not in __import__("prunelib.foundations.eval_row", fromlist=["x"]).METRICS  # never ranked


def test_the_snip_preset_states_the_authors_protocol_point_by_point():
    s = settings(preset="snip")
    assert set(s.grid.archs) == {"lenet300", "lenet5_caffe"} and s.grid.methods == ("snip",)
    assert s.init.scheme == "variance_scaling" and s.init.after_pruning == "redraw"  # main.py, model.py
    assert s.prune.include_bias and not s.prune.include_norm  # every w and b key is pruned
    assert s.score.data_for("snip") == {"batch_size": 100, "num_batches": 1, "class_balanced": False}  # prune.py
    t = s.train
    assert (t.optimizer, t.momentum, t.nesterov, t.lr, t.batch_size) == ("sgd", 0.9, False, 0.1, 100)
    assert t.weight_decay == 0.0005  # 0.00025 * sum(theta^2) in the loss
    assert (t.steps, t.lr_schedule, t.milestones, t.milestone_unit) == (75000, "step", (25001, 50001), "steps")
    assert t.val_fraction == 0.1 and t.augment == "none"  # dataset.py holds out 10%
    assert (s.eval.every_steps, s.eval.keep_last) == (1000, 5)  # train.py saves every 1000; Saver keeps 5
    assert s.eval.checkpoint_steps(75000) == [71000, 72000, 73000, 74000, 75000]
