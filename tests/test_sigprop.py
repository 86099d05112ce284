"""The signal-propagation perspective (Lee, Ajanthan, Gould & Torr, ICLR 2020;
``namhoonlee/spp-public``): orthogonal initialisation, approximate isometry (AI) after
pruning, the Jacobian singular values, and their place in the contracts and the eval row."""

import json

import pytest
import torch
import torch.nn.functional as F

from prunelib.config import contracts
from prunelib.foundations import eval_row
from prunelib.nets import init_schemes, isometry, models

from cells import settings


def _orthogonal(arch="mlp7_linear", seed=0):
    torch.manual_seed(seed)
    return init_schemes.apply(models.build(arch, 10, 1, 28), "orthogonal")


# --- the law of the orthogonal scheme --------------------------------------------------------------

def test_a_dense_orthogonal_linear_network_has_every_singular_value_one():
    """Acceptance: every layer's and the input-output Jacobian's singular values are 1."""
    m = _orthogonal()
    for name, s in isometry.layer_spectra(m).items():
        assert abs(s["max"] - 1) < 1e-5 and abs(s["min"] - 1) < 1e-5, name
    jsv = isometry.io_jacobian_singular_values(m, torch.randn(20, 1, 28, 28))
    assert jsv.shape == (20, 10)
    assert torch.allclose(jsv, torch.ones_like(jsv), atol=1e-5)
    assert all(float(b.detach().abs().max()) == 0 for n, b in m.named_parameters() if n.endswith("bias"))


def test_the_orthogonal_layers_have_orthonormal_rows_or_columns_whichever_are_fewer():
    m = _orthogonal()
    w_in, w_mid, w_out = m.layers[0].weight, m.layers[1].weight, m.layers[6].weight  # 100x784, 100x100, 10x100
    assert torch.allclose(w_in @ w_in.T, torch.eye(100), atol=1e-5)
    assert torch.allclose(w_mid.T @ w_mid, torch.eye(100), atol=1e-5)
    assert torch.allclose(w_out @ w_out.T, torch.eye(10), atol=1e-5)


def test_orthogonal_draws_follow_the_seed():
    a, b, c = _orthogonal(seed=1), _orthogonal(seed=1), _orthogonal(seed=2)
    assert torch.equal(a.layers[1].weight, b.layers[1].weight)
    assert not torch.equal(a.layers[1].weight, c.layers[1].weight)


@pytest.mark.parametrize("cin, cout, k", [(6, 16, 3), (4, 4, 3), (3, 8, 5), (8, 8, 1)])
def test_the_block_orthogonal_kernel_is_an_isometry_under_periodic_padding(cin, cout, k):
    """TF's ConvolutionOrthogonal2D (the SPP code's conv_orthogonal): with circular
    padding the convolution preserves the norm of every input."""
    torch.manual_seed(0)
    w = torch.empty(cout, cin, k, k)
    init_schemes.conv_orthogonal_(w)
    for _ in range(3):
        x = torch.randn(2, cin, 9, 9, dtype=torch.float64)
        y = F.conv2d(F.pad(x, (k // 2,) * 4, mode="circular"), w.double())
        assert y.shape[-2:] == x.shape[-2:]
        assert torch.allclose(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-5)


def test_the_block_orthogonal_kernel_refuses_what_the_code_refuses():
    with pytest.raises(ValueError, match="in_channels <= out_channels"):
        init_schemes.conv_orthogonal_(torch.empty(4, 8, 3, 3))
    with pytest.raises(ValueError, match="square"):
        init_schemes.conv_orthogonal_(torch.empty(8, 4, 3, 1))


def test_orthogonal_reaches_every_conv_of_lenet5_and_vgg16():
    torch.manual_seed(0)
    for arch, shape in (("lenet5", (1, 28)), ("vgg16", (3, 32))):
        m = init_schemes.apply(models.build(arch, 10, shape[0], shape[1]), "orthogonal")
        for name, w in isometry.layer_weights(m).items():
            mat = isometry.as_matrix(w.detach())
            k = min(mat.shape)
            gram = mat @ mat.T if mat.shape[0] <= mat.shape[1] else mat.T @ mat
            if w.dim() == 2 or w.shape[-1] == 1:
                assert torch.allclose(gram, torch.eye(k), atol=1e-4), name


# --- approximate isometry -----------------------------------------------------------------------------

def _pruned_orthogonal_layer(n=64, density=0.3, seed=0):
    torch.manual_seed(seed)
    layer = torch.nn.Linear(n, n)
    torch.nn.init.orthogonal_(layer.weight)
    mask = (torch.rand(n, n) < density).float()
    return layer, {"weight": mask}


def _spread(layer, mask):
    """Distance of the masked layer's singular values from 1 (the largest gap)."""
    s = torch.linalg.svdvals((layer.weight * mask["weight"]).detach().double())
    return float((s - 1).abs().max()), float((s - 1).abs().mean())


@pytest.mark.parametrize("power", [1, 2])
def test_ai_lowers_the_residual_of_a_pruned_orthogonal_layer_and_moves_its_singular_values_to_one(power):
    layer, mask = _pruned_orthogonal_layer()
    before_w = layer.weight.detach().clone()
    gap_before = _spread(layer, mask)
    rec = isometry.approximate_isometry(layer, mask, steps=400, power=power)["weight"]
    gap_after = _spread(layer, mask)
    assert rec["after"] < 0.5 * rec["before"]
    assert rec["before"] == pytest.approx(float(isometry.residual(before_w.double(), mask["weight"].double())))
    assert gap_after[1] < gap_before[1] and gap_after[0] < gap_before[0]
    # only kept weights moved; pruned ones are zero
    assert float((layer.weight * (1 - mask["weight"])).abs().max()) == 0
    assert not torch.equal(layer.weight * mask["weight"], before_w * mask["weight"])


def test_ai_with_the_mask_ignored_fails_the_criterion():
    """The test above fails when the mask is ignored during the optimisation: a dense
    orthogonal layer is already at the optimum, so optimising without the mask leaves
    it unchanged, and masking afterwards leaves the residual where pruning put it."""
    layer, mask = _pruned_orthogonal_layer()
    before = float(isometry.residual(layer.weight.detach().double(), mask["weight"].double()))
    gap_before = _spread(layer, mask)
    isometry.approximate_isometry(layer, {"weight": torch.ones_like(mask["weight"])}, steps=400)  # mask ignored
    after = float(isometry.residual(layer.weight.detach().double(), mask["weight"].double()))
    assert not after < 0.5 * before
    assert not _spread(layer, mask)[1] < gap_before[1] - 1e-3


def test_ai_follows_the_codes_objective_the_frobenius_norm_not_its_square():
    """spp/model.py compute_isometry: tf.norm(V^T V - I, ord='euclidean'), summed over
    layers; one SGD step at lr 0.1 moves W by 0.1 * grad of the norm."""
    torch.manual_seed(1)
    layer = torch.nn.Linear(5, 4)
    mask = {"weight": (torch.rand(4, 5) < 0.7).float()}
    w0 = layer.weight.detach().clone().requires_grad_(True)
    m = w0 * mask["weight"]
    torch.linalg.matrix_norm(m @ m.T - torch.eye(4)).backward()
    expected = (w0 - 0.1 * w0.grad) * mask["weight"]
    isometry.approximate_isometry(layer, mask, steps=1, lr=0.1, power=1)
    assert torch.allclose(layer.weight, expected.detach(), atol=1e-6)


def test_ai_leaves_biases_alone_and_is_data_free():
    m = _orthogonal()
    torch.nn.init.uniform_(m.layers[0].bias)
    bias = m.layers[0].bias.detach().clone()
    masks = {n: (torch.rand_like(w) < 0.2).float() for n, w in isometry.layer_weights(m).items()}
    rec = isometry.approximate_isometry(m, masks, steps=5)
    assert set(rec) == set(isometry.layer_weights(m))
    assert torch.equal(m.layers[0].bias, bias)


# --- contracts and the eval row --------------------------------------------------------------------

def test_ai_and_the_spectrum_enter_the_train_hash_only_when_set():
    plain = contracts.train_contract(settings(), "snip", 10, 0, "mnist")
    assert "isometry" not in plain.to_dict() and "jacobian_examples" not in plain.to_dict()
    ai = contracts.train_contract(settings(init={"scheme": "orthogonal", "after_pruning": "approximate_isometry",
                                                 "isometry_steps": 50}), "snip", 10, 0, "mnist")
    d = ai.to_dict()
    assert d["after_pruning"] == "approximate_isometry"
    assert d["isometry"] == {"steps": 50, "lr": 0.1, "power": 1}
    assert ai.hash() != plain.hash()
    spec = contracts.train_contract(settings(init={"jacobian_spectrum": True}), "snip", 10, 0, "mnist")
    assert spec.to_dict()["jacobian_examples"] == 1000 and "isometry" not in spec.to_dict()
    # the AI knobs alone (after_pruning keep) change nothing
    assert contracts.train_contract(settings(init={"isometry_steps": 5}), "snip", 10, 0, "mnist").hash() == plain.hash()


def test_the_eval_row_columns_from_the_train_meta():
    empty = eval_row.signal_propagation_columns({})
    assert empty["after_pruning"] == "keep" and empty["isometry_residual_before"] is None
    assert empty["jacobian_spectrum"] == "{}" and empty["jsv_mean_pruned_ai"] is None
    io = {"mean": 0.5, "std": 0.1, "max": 0.9, "min": 0.1}
    meta = {"after_pruning": "approximate_isometry",
            "isometry": {"a": {"before": 3.0, "after": 1.0}, "b": {"before": 2.0, "after": 0.5}},
            "jacobian_spectrum": {"dense": {"io": io, "layers": {}}, "pruned": {"io": io, "layers": {}},
                                  "pruned_ai": {"io": {**io, "mean": 0.8}, "layers": {}}}}
    row = eval_row.signal_propagation_columns(meta)
    assert row["isometry_residual_before"] == 5.0 and row["isometry_residual_after"] == 1.5
    assert json.loads(row["isometry_residuals"])["a"]["after"] == 1.0
    assert row["jsv_mean_pruned_ai"] == 0.8 and row["jsv_min_dense"] == 0.1


def test_the_spectrum_applies_the_mask_to_a_copy():
    m = _orthogonal()
    masks = {n: (torch.rand_like(w) < 0.1).float() for n, w in isometry.layer_weights(m).items()}
    w = m.layers[2].weight.detach().clone()
    x = torch.randn(8, 1, 28, 28)
    dense, pruned = isometry.spectrum(m, None, x), isometry.spectrum(m, masks, x)
    assert torch.equal(m.layers[2].weight, w)
    assert dense["io"]["min"] == pytest.approx(1, abs=1e-4)
    assert pruned["io"]["max"] < 0.5  # pruning 90% of an orthogonal linear net shrinks its signal
    assert set(pruned["layers"]) == set(isometry.layer_weights(m))


@pytest.mark.parametrize("arch, params", [("mlp7_linear", 784 * 100 + 5 * 100 * 100 + 100 * 10 + 6 * 100 + 10)])
def test_mlp7_matches_the_spp_code(arch, params):
    for a in ("mlp7_linear", "mlp7_tanh"):
        m = models.build(a, 10, 1, 28)
        assert sum(p.numel() for p in m.parameters()) == params
        assert len(models.prunable_names(m)) == 7
        assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    lin, tanh = _orthogonal("mlp7_linear"), _orthogonal("mlp7_tanh")
    x = torch.randn(4, 1, 28, 28) * 3
    assert torch.allclose(lin(2 * x), 2 * lin(x), atol=1e-4)  # linear: no bias, no nonlinearity
    assert not torch.allclose(tanh(2 * x), 2 * tanh(x), atol=1e-2)


# --- through the stages -------------------------------------------------------------------------------

def test_a_snip_cell_with_ai_and_the_spectrum_records_both_in_the_artifact_and_the_eval_row(tmp_path, mnist_pt):
    from prunelib.foundations.artifacts import load_pt, read_parquet_rows

    from cells import run_cell

    s = settings(init={"scheme": "orthogonal", "after_pruning": "approximate_isometry", "isometry_steps": 200,
                       "jacobian_spectrum": True, "jacobian_examples": 50},
                 train={"epochs": 1, "train_subset": 200, "batch_size": 100}, score={"batch_size": 100})
    cell = run_cell(tmp_path, mnist_pt, s, "mlp7_linear", "snip", 10)
    meta = load_pt(cell.final)["meta"]
    assert meta["after_pruning"] == "approximate_isometry"
    assert set(meta["isometry"]) == {f"layers.{i}.weight" for i in range(7)}
    assert all(v["after"] < v["before"] for v in meta["isometry"].values())
    spec = meta["jacobian_spectrum"]
    assert spec["dense"]["io"]["min"] == pytest.approx(1, abs=1e-4)  # orthogonal linear net: isometry
    assert spec["pruned_ai"]["io"]["mean"] > spec["pruned"]["io"]["mean"]  # AI restores the signal
    (row,) = read_parquet_rows(cell.eval)
    assert row["isometry_residual_after"] < row["isometry_residual_before"]
    assert row["jsv_mean_pruned_ai"] == pytest.approx(spec["pruned_ai"]["io"]["mean"])
    assert json.loads(row["jacobian_spectrum"])["pruned"]["layers"]["layers.0.weight"]["max"] <= 1 + 1e-6


def test_the_report_declares_and_draws_the_spectra_figure_and_tabulates_the_residuals(tmp_path):
    import pandas as pd

    from prunelib.report import figures, layout, tables

    cfg = {"init": {"jacobian_spectrum": True}}
    assert layout.writes_spectra(cfg) and not layout.writes_spectra({"init": {}})
    names = layout.output_names([("mnist", "mlp7_linear")], ["mlp7_linear"], {}, ["dense", "snip"], [1, 10],
                                spectra=True)
    assert "figures/mnist_mlp7_linear_jacobian_spectra.png" in names["figures"]
    assert layout.caption_name(names["figures"][-1]) == "jacobian_spectra"
    assert "figures/mnist_mlp7_linear_jacobian_spectra.png" not in layout.output_names(
        [("mnist", "mlp7_linear")], ["mlp7_linear"], {}, ["dense", "snip"], [1, 10])["figures"]
    stats = {"mean": 0.5, "std": 0.1, "max": 0.9, "min": 0.1}
    spec = {p: {"io": stats, "layers": {"a": stats, "b": stats}} for p in ("dense", "pruned", "pruned_ai")}
    rows = [{"method": m, "ratio": r, "seed": s, "after_pruning": "approximate_isometry",
             **eval_row.signal_propagation_columns({"isometry": {"a": {"before": 2.0, "after": 1.0}},
                                                    "jacobian_spectrum": spec})}
            for m, r in (("dense", 1.0), ("snip", 10.0)) for s in (0, 1)]
    df = pd.DataFrame(rows)
    out = tmp_path / "spectra.png"
    figures.plot_jacobian_spectra(df, "t", out)
    assert out.stat().st_size > 10_000
    t = tables.signal_propagation_table(df)
    assert list(t["n"]) == [2, 2] and list(t["residual after AI"]) == [1.0, 1.0]
    assert tables.signal_propagation_table(pd.DataFrame([{"method": "snip", "ratio": 4.0}])).empty
    figures.plot_jacobian_spectra(df.iloc[:0].assign(jacobian_spectrum=[]), "none", tmp_path / "empty.png")


def test_the_dense_control_is_left_as_it_is_by_ai(tmp_path, mnist_pt):
    """Nothing pruned, nothing to restore: the code's norm objective would jitter an
    exact isometry (its gradient has unit norm however small the residual)."""
    from prunelib.foundations.artifacts import load_pt

    from cells import run_cell

    s = settings(init={"scheme": "orthogonal", "after_pruning": "approximate_isometry", "isometry_steps": 50},
                 train={"epochs": 1, "train_subset": 100, "batch_size": 100, "lr": 1e-9})
    cell = run_cell(tmp_path, mnist_pt, s, "mlp7_linear", "dense", 1, until="train")
    meta = load_pt(cell.final)["meta"]
    assert all(v["before"] == v["after"] < 1e-4 for v in meta["isometry"].values())


# --- unsupervised pruning: score.labels = uniform ---------------------------------------------------

def _scores(mnist, labels, seed=0, arch="mlp7_tanh", data=None):
    from prunelib.catalogue import registry
    from prunelib.stages.score import compute_scores

    model = _orthogonal(arch, seed=0)
    prunable = [n for n, _ in model.named_parameters() if n.endswith("weight")]
    d = {"batch_size": 100, "num_batches": 2, "class_balanced": False}
    if labels != "data":
        d["labels"] = labels
    scores, used = compute_scores(model, prunable, registry.method("snip").make_scorer({}), data or mnist, "mnist",
                                  seed, d, torch.device("cpu"), entry=registry.method("snip"))
    return scores, used


def test_uniform_label_snip_reads_no_label_is_seeded_and_differs_from_supervised_snip(mnist):
    """The SPP code's fake_uniform targets: the scores are the same whatever the labels
    (here all replaced by 0), bit-identical for a seed, moved by the seed (other scoring
    images), and not supervised SNIP's."""
    uni, used = _scores(mnist, "uniform")
    assert used["labels"] == "uniform"
    again, _ = _scores(mnist, "uniform")
    relabelled, _ = _scores(mnist, "uniform", data={**mnist, "train_y": torch.zeros_like(mnist["train_y"])})
    other_seed, _ = _scores(mnist, "uniform", seed=1)
    sup, sup_used = _scores(mnist, "data")
    assert "labels" not in sup_used
    for n in uni:
        assert torch.equal(uni[n], again[n]) and torch.equal(uni[n], relabelled[n]), n
    assert any(not torch.equal(uni[n], other_seed[n]) for n in uni)
    assert any(not torch.allclose(uni[n], sup[n], rtol=1e-3, atol=0) for n in uni)
    relabelled_sup, _ = _scores(mnist, "data", data={**mnist, "train_y": torch.zeros_like(mnist["train_y"])})
    assert any(not torch.equal(sup[n], relabelled_sup[n]) for n in sup)  # (the test can tell labels apart)


def test_uniform_targets_are_the_cross_entropy_against_one_over_c(mnist):
    """|w * dL/dw| with L = mean over the batch of logsumexp(z) - mean_k z_k (the
    cross-entropy against 1/C), written out without F.cross_entropy."""
    from prunelib.data import datasets

    uni, _ = _scores(mnist, "uniform", arch="mlp7_linear")
    model = _orthogonal("mlp7_linear", seed=0)
    weights = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
    grads = {n: torch.zeros_like(p) for n, p in weights.items()}
    for x, _ in datasets.scoring_batches(mnist, "mnist", 0, 100, 2):
        z = model(x)
        loss = (torch.logsumexp(z, 1) - z.mean(1)).mean()
        for n, g in zip(weights, torch.autograd.grad(loss, list(weights.values()))):
            grads[n] += g / 2
    sens = {n: (w.detach() * grads[n]).abs() for n, w in weights.items()}
    total = sum(s.sum() for s in sens.values())
    for n in uni:  # (float32 sums in another order: agreement to 1e-4 of the layer's largest score)
        assert torch.allclose(uni[n], sens[n] / total, rtol=1e-3, atol=1e-4 * float(uni[n].max())), n


def test_score_labels_enter_the_score_hash_only_when_set_and_bad_values_are_one_line():
    from prunelib.config import ConfigError, resolve

    plain, uniform = settings(), settings(score={"labels": "uniform"})
    assert "labels" not in plain.score.data_for("snip")
    assert contracts.score_contract(plain, "snip", 0).hash() == \
        contracts.score_contract(settings(score={"labels": "data"}), "snip", 0).hash()
    assert contracts.score_contract(uniform, "snip", 0).hash() != contracts.score_contract(plain, "snip", 0).hash()
    assert uniform.score.data_for("grasp")["labels"] == "uniform"
    with pytest.raises(ConfigError) as err:
        resolve({"score": {"labels": "random"}})
    text = str(err.value)
    assert "\n" not in text and "score.labels" in text and "random" in text and "uniform" in text, text


# --- init arms: variance scaling, orthogonal, orthogonal + AI in one grid ------------------------------

ARMS = {"vs": {"scheme": "variance_scaling", "after_pruning": "keep"},
        "orth": {"scheme": "orthogonal", "after_pruning": "keep"}}
AI_INIT = {"scheme": "orthogonal", "after_pruning": "approximate_isometry", "isometry_steps": 20}


def test_an_arm_is_its_method_under_the_arms_init_and_leaves_the_method_itself_alone():
    from prunelib.catalogue import registry
    from prunelib.config import grid

    plain = settings(init=AI_INIT, grid={"methods": ["snip"]})
    armed = settings(init={**AI_INIT, "arms": ARMS}, grid={"methods": ["snip", "snip@vs", "snip@orth"]})
    entry = registry.method("snip@vs")
    assert entry.name == "snip@vs" and entry.scorer == registry.method("snip").scorer and not entry.default_grid
    assert [armed.init.scheme_for(m) for m in ("snip", "snip@vs", "snip@orth", "dense")] == \
        ["orthogonal", "variance_scaling", "orthogonal", "orthogonal"]
    assert [armed.init.after_pruning_for(m) for m in ("snip", "snip@vs", "snip@orth")] == \
        ["approximate_isometry", "keep", "keep"]
    # the method itself (and the dense control): the same contracts as without arms
    for m, r in (("snip", 10), ("dense", 1)):
        assert contracts.eval_contract(armed, "mlp7_linear", "mnist", m, r, 0).hash() == \
            contracts.eval_contract(plain, "mlp7_linear", "mnist", m, r, 0).hash()
    train = {m: contracts.train_contract(armed, m, 10, 0, "mnist", arch="mlp7_linear") for m in ARMS_METHODS}
    assert train["snip"].after_pruning == "approximate_isometry" and train["snip"].isometry is not None
    assert train["snip@vs"].after_pruning == "keep" and train["snip@vs"].isometry is None
    assert contracts.init_contract(armed, "mlp7_linear", "mnist", 0, armed.init.scheme_for("snip@vs")).init_scheme == \
        "variance_scaling"
    hashes = {contracts.eval_contract(armed, "mlp7_linear", "mnist", m, 10, 0).hash() for m in ARMS_METHODS}
    assert len(hashes) == 3
    folders = {c.method for c in grid.cells(armed)}
    assert folders == {"dense", "snip", "snip@vs", "snip@orth"}


ARMS_METHODS = ("snip", "snip@vs", "snip@orth")


@pytest.mark.parametrize("user, message", [
    ({"grid": {"methods": ["snip@vs"]}},
     'grid.methods[0] = "snip@vs" is not allowed; allowed: <method>@<arm> with a single-pass pruning method'),
    ({"init": {"arms": ARMS}, "grid": {"methods": ["snip", "imp@vs"]}}, 'grid.methods[1] = "imp@vs"'),
    ({"init": {"arms": ARMS}, "grid": {"methods": ["snip@nope"]}}, "an arm of init.arms (orth, vs)"),
    ({"init": {"arms": {"vs": {"scheme": "nope"}}}}, "init.arms.vs.scheme"),
    ({"init": {"arms": {"vs": {"after_pruning": "nope"}}}}, "init.arms.vs.after_pruning"),
])
def test_bad_arms_are_one_line(user, message):
    from prunelib.config import ConfigError, resolve

    with pytest.raises(ConfigError) as err:
        resolve(user)
    text = str(err.value)
    assert "\n" not in text and text.startswith("config error: ") and message in text, text


@pytest.mark.e2e
def test_the_three_arms_run_in_one_snakemake_grid(tmp_path, mnist_root):
    """variance scaling, orthogonal, orthogonal + AI: SNIP cells of one grid, each with its
    init artifact, scores and training start, labelled by arm in the rows and the table."""
    import subprocess

    import pandas as pd
    import yaml

    from prunelib.foundations.artifacts import load_pt

    from conftest import HANG_SECONDS, REPO, SNAKEMAKE

    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "preset": "sigprop", "device": "cpu", "data_dir": str(mnist_root),
        "init": {"arms": ARMS, "isometry_steps": 20, "jacobian_examples": 20},
        "grid": {"archs": ["mlp7_linear"], "datasets": ["mnist"], "methods": list(ARMS_METHODS), "ratios": [10],
                 "seeds": [0]},
        "score": {"num_batches": 1}, "train": {"steps": 5, "train_subset": 500}}))
    proc = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "2"],
                          capture_output=True, text=True, timeout=HANG_SECONDS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seed = tmp_path / "results/mnist/mlp7_linear/seed0"
    assert (seed / "init_variance_scaling.pt").exists() and (seed / "init_orthogonal.pt").exists()
    rows = pd.read_parquet(tmp_path / "results/all.parquet").set_index("method")
    assert set(rows.index) == {"dense", *ARMS_METHODS}
    for m, scheme, after in (("snip", "orthogonal", "approximate_isometry"), ("snip@vs", "variance_scaling", "keep"),
                             ("snip@orth", "orthogonal", "keep")):
        folder = seed / m / "r10"
        assert load_pt(seed / m / "scores.pt")["meta"]["init"]["init_scheme"] == scheme, m
        meta = load_pt(folder / "final.pt")["meta"]
        assert meta.get("after_pruning", "keep") == after, m
        assert set(meta["jacobian_spectrum"]["pruned"]["layer_jacobians"]) == {f"layers.{i}.weight" for i in range(7)}
    assert rows.loc["snip", "isometry_residual_after"] < rows.loc["snip", "isometry_residual_before"]
    table = (tmp_path / "reports/tables/mnist_mlp7_linear.md").read_text()
    assert "| snip@vs " in table and "| snip@orth " in table


# --- the true layer-wise Jacobian D_l W_l (the MLPs) --------------------------------------------------

def test_the_layer_jacobian_of_a_tanh_mlp_is_d_l_w_l_example_by_example():
    """Against autograd's full Jacobian of x_l = tanh(W_l x_(l-1) + b_l) w.r.t. x_(l-1)
    for one example (the last layer: W_l itself), with a mask applied."""
    torch.manual_seed(0)
    m = _orthogonal("mlp7_tanh")
    with torch.no_grad():
        for fc in m.layers:
            fc.bias.normal_(0, 0.5)  # (non-zero pre-activations: D_l is not the identity)
    masks = {"layers.2.weight": (torch.rand(100, 100) < 0.3).float()}
    x = torch.randn(1, 1, 28, 28) * 3
    spec = isometry.spectrum(m, masks, x)["layer_jacobians"]
    net = _orthogonal("mlp7_tanh")
    net.load_state_dict(m.state_dict())
    with torch.no_grad():
        net.layers[2].weight.mul_(masks["layers.2.weight"])
    a = torch.flatten(x, 1)[0].double()
    for i, fc in enumerate(net.layers):
        w, b = fc.weight.detach().double(), fc.bias.detach().double()
        last = i == len(net.layers) - 1
        f = (lambda v, w=w, b=b: w @ v + b) if last else (lambda v, w=w, b=b: torch.tanh(w @ v + b))
        s = torch.linalg.svdvals(torch.autograd.functional.jacobian(f, a))
        got = spec[f"layers.{i}.weight"]
        assert got["max"] == pytest.approx(float(s.max()), rel=1e-4), i
        assert got["min"] == pytest.approx(float(s.min()), rel=1e-4, abs=1e-5), i  # (float32 D_l: saturated units)
        assert got["mean"] == pytest.approx(float(s.mean()), rel=1e-4), i
        a = f(a)
    dense_w = isometry.spectrum(m, masks, x)["layers"]["layers.1.weight"]
    assert spec["layers.1.weight"]["max"] < dense_w["max"] - 1e-3  # |tanh'| < 1 shrinks it here


def test_the_layer_jacobian_of_a_linear_mlp_is_its_weight_and_convnets_keep_the_linear_part():
    m = _orthogonal("mlp7_linear")
    spec = isometry.spectrum(m, None, torch.randn(5, 1, 28, 28))
    for n, s in spec["layers"].items():
        j = spec["layer_jacobians"][n]
        assert j["mean"] == pytest.approx(s["mean"], rel=1e-6) and j["min"] == pytest.approx(s["min"], abs=1e-6)
    torch.manual_seed(0)
    lenet = models.build("lenet5", 10, 1, 28)
    assert isometry.layer_jacobian_spectra(lenet, torch.randn(2, 1, 28, 28)) is None
    assert "layer_jacobians" not in isometry.spectrum(lenet, None, torch.randn(2, 1, 28, 28))


def test_the_gram_route_gives_the_svd_of_d_w_for_wide_and_tall_layers():
    torch.manual_seed(0)
    for out, inp in ((30, 70), (70, 30), (20, 20)):
        w, d = torch.randn(out, inp, dtype=torch.float64), torch.rand(4, out, dtype=torch.float64)
        got = isometry._scaled_rows_singular_values(d, w)
        want = torch.linalg.svdvals(d.unsqueeze(2) * w.unsqueeze(0))
        assert got.shape == want.shape == (4, min(out, inp))
        assert torch.allclose(got.sort(dim=1).values, want.sort(dim=1).values, atol=1e-8)


def test_the_layer_jacobians_can_be_switched_off_and_enter_the_train_hash_only_then(tmp_path, mnist_pt):
    from prunelib.foundations.artifacts import load_pt

    from cells import run_cell

    base = {"scheme": "orthogonal", "jacobian_spectrum": True, "jacobian_examples": 10}
    on, default, off = (settings(init={**base, **extra}, train={"steps": 2, "train_subset": 200, "batch_size": 100},
                                 score={"batch_size": 100})
                        for extra in ({"jacobian_layers": True}, {}, {"jacobian_layers": False}))
    h = [contracts.train_contract(s, "snip", 10, 0, "mnist", arch="mlp7_tanh").hash() for s in (on, default, off)]
    assert h[0] == h[1] != h[2]
    spec = load_pt(run_cell(tmp_path, mnist_pt, off, "mlp7_tanh", "snip", 10, until="train").final)["meta"]
    assert "layer_jacobians" not in spec["jacobian_spectrum"]["pruned"] and "layers" in spec["jacobian_spectrum"]["pruned"]
