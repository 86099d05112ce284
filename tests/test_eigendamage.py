"""EigenDamage (Wang et al., ICML 2019): the built network (projection, core,
back-projection per layer) computes the rotated, masked network; the row/column
importances are the K-FAC quadratic model's loss changes; the parameter target is met."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunelib.methods import eigendamage as ed
from prunelib.methods import kfac
from prunelib.nets import macs, models


def _net(arch, dataset_shape):
    c, side = dataset_shape
    torch.manual_seed(0)
    return models.build(arch, 10, c, side).double()


def _batches(c, side, n=2, b=16):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(b, c, side, side, generator=g, dtype=torch.float64),
             torch.randint(0, 10, (b,), generator=g)) for _ in range(n)]


CASES = [("lenet300", (1, 28), 4), ("lenet5", (1, 28), 4), ("resnet20", (3, 32), 3)]


@pytest.mark.parametrize("arch,shape,ratio", CASES)
def test_built_network_equals_the_rotated_masked_network_in_float64(arch, shape, ratio):
    net = _net(arch, shape)
    if arch == "resnet20":  # BatchNorm in eval mode with running statistics that are not the identity
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    prunable = models.prunable_names(net)
    batches = _batches(*shape)
    built, kept, record = ed.prune(net, prunable, batches, ratio, seed=0)
    assert any(sel is not None for sel in kept.values())
    layers = ed.eigen_layers(net, prunable)
    bases = ed.decompose(net, kfac.kfac_factors(net, layers, batches, 0, "true", "channel"))
    masked = ed.rotated_masked(net, bases, kept)
    x = batches[0][0]
    built.eval(), masked.eval(), net.eval()
    with torch.no_grad():
        diff = float((built(x) - masked(x)).abs().max())
        moved = float((masked(x) - net(x)).abs().max())
    assert diff <= 1e-10, diff
    assert moved > 1e-6  # the pruning changed the function: the check is not vacuous
    # the count the selection kept is the built network's, and it meets the target
    assert ed.weight_count(built) == record["eigen_n_kept"]
    assert record["target_reached"] and record["eigen_n_kept"] <= record["eigen_target_kept"]
    assert record["eigen_target_kept"] == round(sum(dict(net.named_parameters())[n].numel()
                                                    for n in prunable) / ratio)
    dense, _ = macs.multiply_accumulates(net.float(), {}, "mnist" if shape[0] == 1 else "cifar10")
    small, _ = macs.multiply_accumulates(built.float(), {}, "mnist" if shape[0] == 1 else "cifar10")
    assert small < dense


def test_unpruned_rotation_is_the_identity_of_the_network():
    net = _net("lenet5", (1, 28))
    prunable = models.prunable_names(net)
    batches = _batches(1, 28)
    layers = ed.eigen_layers(net, prunable)
    assert layers == ["conv1", "conv2", "fc1"]  # the classifier is left out, as the authors do
    bases = ed.decompose(net, kfac.kfac_factors(net, layers, batches, 0, "true", "channel"))
    full = {k: (torch.arange(b.n_rows), torch.arange(b.n_cols)) for k, b in bases.items()}
    x = batches[0][0]
    with torch.no_grad():
        torch.testing.assert_close(ed.build(net, bases, full)(x), net(x))
        torch.testing.assert_close(ed.rotated_masked(net, bases, full)(x), net(x))


def test_row_and_column_importances_are_the_quadratic_models_loss_changes():
    """Removing row r (column c) of W* changes W by -Q_S e_r W*_r Q_A^T; under the Fisher
    S (x) A that costs sum_c W*_rc^2 d_S[r] d_A[c] -- the importance EigenDamage ranks by."""
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(40, 6, dtype=torch.float64), torch.randint(0, 3, (40,))
    f = kfac.kfac_factors(net, ["0"], [(x, y)], 0, "true", "channel")
    b = ed.decompose(net, f)["0"]
    rows, cols = b.importances()
    A, S = f["0"].A, f["0"].S
    w_star = b.core[:, 0, :]
    for r in range(b.n_rows):
        dw = -torch.outer(b.q_s[:, r], w_star[r] @ b.q_a.t())
        assert float(rows[r]) == pytest.approx(float(torch.trace(dw.t() @ S @ dw @ A)), rel=1e-8, abs=1e-14)
    for c in range(b.n_cols):
        dw = -torch.outer(b.q_s @ w_star[:, c], b.q_a[:, c])
        assert float(cols[c]) == pytest.approx(float(torch.trace(dw.t() @ S @ dw @ A)), rel=1e-8, abs=1e-14)


def test_a_padded_convolution_with_a_bias_is_refused_by_name():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 16, 3))
    with pytest.raises(ValueError, match="layer 0 has a bias and zero padding"):
        ed.eigen_layers(net, ["0.weight", "2.weight"])


# ---- through the stages of a cell, as the workflow runs them -------------------------

@pytest.fixture(scope="module")
def synth_pt(tmp_path_factory):
    from prunelib.data import datasets

    out = tmp_path_factory.mktemp("synth") / "synthetic_cifar10.pt"
    datasets.prepare("synthetic_cifar10", tmp_path_factory.mktemp("root"), out)
    return out


def _cell(tmp_path, data_pt, arch, dataset, ratio):
    from cells import measure_cell, run_cell, settings
    from prunelib.foundations.artifacts import load_pt, read_parquet_rows
    from prunelib.stages.common import load_model

    s = settings(train={"epochs": 1, "train_subset": 256, "batch_size": 64}, score={"num_batches": 1})
    cell = run_cell(tmp_path, data_pt, s, arch, "eigendamage", ratio, dataset=dataset)
    blob = load_pt(cell.mask)
    rec = blob["meta"]["eigendamage"]
    assert rec["target_reached"] and rec["eigen_n_kept"] <= rec["eigen_target_kept"]
    assert blob["network"]["spec"] and "kfac" in load_pt(cell.scores)["extra"]
    # training started from the built network and kept its shape
    final, meta = load_model(cell.final)
    assert meta["eigendamage_spec"] == blob["network"]["spec"]
    assert ed.weight_count(final) == rec["eigen_n_kept"]
    row = read_parquet_rows(cell.eval)[0]
    assert row["granularity"] == "eigenbasis" and row["n_kept"] == rec["eigen_n_kept"]
    assert row["n_prunable"] == rec["n_prunable"] and row["empirical_ratio"] >= ratio
    assert bool(row["slim_equal"]) and row["macs_kept"] < row["macs_dense"]
    timed = measure_cell(cell, data_pt, s, tmp_path / "speedups.parquet")  # the eval row times nothing
    for c in ("measured_speedup_infer_b1", "measured_speedup_infer_b256", "measured_speedup_train"):
        assert row[c] != row[c] and timed[c] > 0 and 1 <= timed[c + "_repeats"] <= 2
    return cell


def test_eigendamage_cell_on_lenet5_mnist(tmp_path, mnist_pt):
    _cell(tmp_path, mnist_pt, "lenet5", "mnist", 4)


def test_eigendamage_cell_on_resnet20_synthetic_cifar10(tmp_path, synth_pt):
    _cell(tmp_path, synth_pt, "resnet20", "synthetic_cifar10", 2)


def test_a_variant_with_eigendamage_is_refused_in_one_line_before_any_job():
    from prunelib import config
    from prunelib.config.validation import ConfigError

    with pytest.raises(ConfigError, match=r'grid.variants = \["invert"\] is not allowed with eigendamage'):
        config.resolve({"preset": "fast", "grid": {"methods": ["eigendamage"], "variants": ["none", "invert"]}})
