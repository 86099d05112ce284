"""Elements of the SNIP authors' protocol (namhoonlee/snip-public): LeNet-5-Caffe, TF's
variance-scaling initialiser on weights and biases, fresh weights after pruning."""

from __future__ import annotations

import pytest
import torch

from prunelib import config, init_schemes, models, stages
from prunelib.artifacts import load_pt


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


def test_variance_scaling_draws_weights_and_biases_with_variance_one_over_fan_in_truncated_at_two_std():
    torch.manual_seed(0)
    net = init_schemes.apply(models.build("lenet5_caffe", 10, 1, 28), "variance_scaling")
    fan_in = {"conv1.weight": 25, "conv2.weight": 500, "fc1.weight": 800, "fc1.bias": 500, "conv2.bias": 50}
    for name, fan in fan_in.items():
        p = dict(net.named_parameters())[name].detach()
        bound = 2 / 0.87962566103423978 * (1 / fan) ** 0.5  # TF truncates at two std of the untruncated normal
        assert p.abs().max() <= bound
        tolerance = 3 * (2 / p.numel()) ** 0.5  # ~3 standard errors of a variance estimate
        assert abs(p.var().item() * fan - 1) < max(tolerance, 0.02), name
        assert p.abs().max() > 0.9 * bound  # truncated, not clipped far inside


def test_after_pruning_redraw_is_recorded_only_when_asked_and_draws_fresh_weights_with_zero_biases(tmp_path):
    s = config.to_settings(config.resolve({"init": {"scheme": "variance_scaling", "after_pruning": "redraw"},
                                           "train": {"epochs": 1, "train_subset": 200, "batch_size": 100}}))
    keep = config.to_settings(config.resolve({}))
    assert config.cell_train_settings(s, "snip", 4, 0, "mnist")["after_pruning"] == "redraw"
    assert "after_pruning" not in config.cell_train_settings(keep, "snip", 4, 0, "mnist")
    assert "after_pruning" not in config.cell_train_settings(s, "lth", 4, 0, "mnist")  # a chain trains its own
    init = config.init_settings(s, "lenet300", "mnist", 0, "variance_scaling")
    stages.run_init(init, tmp_path / "init.pt", tmp_path / "init.parquet")
    meta = load_pt(tmp_path / "init.pt")["meta"]
    fresh = stages.redrawn_state(meta, 0)
    scored = load_pt(tmp_path / "init.pt")["state_dict"]
    assert not torch.equal(fresh["fc1.weight"], scored["fc1.weight"])
    assert all(not fresh[f"fc{i}.bias"].any() for i in (1, 2, 3)) and scored["fc1.bias"].any()
    assert abs(fresh["fc1.weight"].var().item() * 784 - 1) < 0.02
    assert torch.equal(fresh["fc1.weight"], stages.redrawn_state(meta, 0)["fc1.weight"])  # seeded


@pytest.mark.parametrize("after", ["keep", "redraw"])
def test_training_starts_from_the_redrawn_weights_masked(tmp_path, mnist_pt, after):
    s = config.to_settings(config.resolve({"init": {"scheme": "variance_scaling", "after_pruning": after},
                                           "train": {"epochs": 1, "train_subset": 200, "batch_size": 100,
                                                     "lr": 1e-9}}))
    stages.run_init(config.init_settings(s, "lenet300", "mnist", 0, "variance_scaling"), tmp_path / "init.pt",
                    tmp_path / "init.parquet")
    stages.run_score(config.score_settings(s, "global_magnitude", 0), tmp_path / "init.pt", mnist_pt,
                     tmp_path / "scores.pt")
    stages.run_mask(config.mask_settings(s, "global_magnitude", 4, 0), tmp_path / "init.pt", tmp_path / "scores.pt",
                    tmp_path / "mask.pt", tmp_path / "mask.parquet")
    stages.run_train(config.cell_train_settings(s, "global_magnitude", 4, 0, "mnist"), tmp_path / "init.pt",
                     tmp_path / "mask.pt", mnist_pt, tmp_path / "final.pt", tmp_path / "log.parquet")
    final = load_pt(tmp_path / "final.pt")
    mask = load_pt(tmp_path / "mask.pt")["masks"]["fc1.weight"]
    start = (stages.redrawn_state(load_pt(tmp_path / "init.pt")["meta"], 0) if after == "redraw"
             else load_pt(tmp_path / "init.pt")["state_dict"])
    w = final["state_dict"]["fc1.weight"]
    assert not w[~mask].any()
    torch.testing.assert_close(w[mask], start["fc1.weight"][mask], rtol=0, atol=1e-6)  # lr ~ 0: barely moved
    assert final["meta"].get("after_pruning", "keep") == after
