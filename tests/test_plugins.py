"""Plugins: a researcher's own method in one file, next to the built-ins.

Unit tests load plugins into a snapshot of the registry (restored afterwards, so no
other test sees them); the broken-plugin checks run `prunelib check-config` and
`snakemake -n` in fresh processes; the end-to-end test runs a small grid on real MNIST
with ``plugins: [examples/plugins/study_snip.py]`` through Snakemake.
"""

from __future__ import annotations

import os
import re
import shutil

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from prunelib.config import contracts

from prunelib.catalogue import plugins

from prunelib.catalogue import registry
from prunelib.foundations.artifacts import load_pt

from cells import settings
from conftest import PYTHON, REPO, run

EXAMPLE = REPO / "examples" / "plugins" / "study_snip.py"


@pytest.fixture
def isolated_registry():
    """The registry and the loaded-plugin record as they were, after the test."""
    tables = {name: dict(t) for name, t in registry._TABLES.items()}
    loaded = dict(plugins._LOADED)
    yield
    for name, t in registry._TABLES.items():
        t.clear()
        t.update(tables[name])
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)


def test_the_example_registers_through_the_public_api(isolated_registry):
    plugins.load([str(EXAMPLE)])
    entry = registry.method("snip_abs_grad")
    assert (entry.kind, entry.scope, entry.origin.name) == ("foresight", "global", str(EXAMPLE))
    assert entry.origin.sha256 == plugins.sha256_of(str(EXAMPLE))  # (its only entry: the whole file)
    assert entry.origin.entry == "method:snip_abs_grad"
    assert "Eq. 3.5" in entry.paper
    # its jobs carry the plugin (so they import it, and rerun when it changes); built-ins' do not
    s = settings(plugins=[str(EXAMPLE)], grid={"archs": ["lenet300"], "datasets": ["mnist"],
                                               "methods": ["snip", "snip_abs_grad"], "ratios": [1, 4], "seeds": [0]})
    mine = contracts.score_contract(s, "snip_abs_grad", 0, "lenet300", "mnist")
    record = {"plugin": str(EXAMPLE), "sha256": entry.origin.sha256, "entry": "method:snip_abs_grad"}
    assert mine.plugins == (record,)
    assert mine.to_dict()["plugins"] == [record]
    snip = contracts.score_contract(s, "snip", 0, "lenet300", "mnist")
    assert snip.plugins == () and "plugins" not in snip.to_dict()
    init = contracts.init_contract(s, "lenet300", "mnist", 0, "pytorch_default")
    assert init.plugins == () and "plugins" not in init.to_dict()


def test_the_example_scores_the_studys_eq_3_5(isolated_registry):
    """s_j = |dL/dtheta_j| / sum_k |dL/dtheta_k|, gradients averaged over two batches,
    against autograd through loss.backward() on a tiny network (and not theta * grad)."""
    plugins.load([str(EXAMPLE)])
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(3 * 4 * 4, 4))
    batches = [(torch.randn(8, 1, 6, 6), torch.randint(0, 4, (8,))) for _ in range(2)]
    params = {n: p for n, p in net.named_parameters() if n.endswith("weight")}
    got = registry.method("snip_abs_grad").make_scorer().score(net, params, batches, 0)
    net.zero_grad()
    (sum(F.cross_entropy(net(x), y) for x, y in batches) / 2).backward()
    ref = {n: p.grad.abs() for n, p in params.items()}
    total = sum(r.sum() for r in ref.values())
    for n in params:
        torch.testing.assert_close(got[n], ref[n] / total, rtol=1e-5, atol=1e-9)
    snip = registry.method("snip").make_scorer().score(net, params, batches, 0)
    assert not torch.allclose(got["3.weight"], snip["3.weight"])


def _check_config(tmp_path, plugin_text: str | None, methods, extra_plugins=()):
    names = list(extra_plugins)
    if plugin_text is not None:
        (tmp_path / "mine.py").write_text(plugin_text)
        names.append("mine.py")
    cfg = {"plugins": names, "grid": {"archs": ["lenet300"], "datasets": ["mnist"], "methods": methods,
                                      "ratios": [1, 4], "seeds": [0]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run([PYTHON, "-m", "prunelib", "check-config", "config.yaml"], cwd=tmp_path, check=False)


SHADOW = """
from prunelib import Scorer, register_method

@register_method("snip", paper="mine")
class Mine(Scorer):
    pass
"""

BROKEN = "import torch\nraise RuntimeError('cannot find my weights')\n"


@pytest.mark.parametrize("text, needle", [
    (SHADOW, "plugin error: mine.py: method 'snip' is a built-in; choose another name"),
    (BROKEN, "plugin error: mine.py failed to import: RuntimeError: cannot find my weights"),
    (None, "plugin error: nowhere.py: no such file"),
])
def test_a_broken_plugin_stops_with_one_line_naming_the_file(tmp_path, text, needle):
    proc = _check_config(tmp_path, text, ["snip"], extra_plugins=["nowhere.py"] if text is None else ())
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_two_plugins_registering_one_name_are_rejected(tmp_path):
    (tmp_path / "a.py").write_text(SHADOW.replace('"snip"', '"mine"'))
    shutil.copy(tmp_path / "a.py", tmp_path / "b.py")
    proc = _check_config(tmp_path, None, ["mine"], extra_plugins=["a.py", "b.py"])
    assert proc.returncode != 0
    assert proc.stderr.strip().endswith(
        "plugin error: b.py: method 'mine' is already registered by a.py; choose another name"), proc.stderr


def test_a_plugin_settings_typo_is_named_like_a_builtin(tmp_path):
    proc = _check_config(tmp_path, None, ["snip_abs_grad"], extra_plugins=[str(EXAMPLE)])
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    cfg["score"] = {"per_method": {"snip_abs_grad": {"batch_sise": 10}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run([PYTHON, "-m", "prunelib", "check-config", "config.yaml"], cwd=tmp_path, check=False)
    assert proc.stderr.strip().endswith("config error: unknown key score.per_method.snip_abs_grad.batch_sise; "
                                        "allowed keys batch_size, class_balanced, num_batches"), proc.stderr


@pytest.mark.e2e
def test_a_plugin_method_runs_the_grid_beside_snip_and_edits_rerun_only_its_jobs(tmp_path, mnist_root,
                                                                                 snakemake_bin):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    cfg = {"preset": "fast", "device": "cpu", "data_dir": str(mnist_root),
           "plugins": ["examples/plugins/study_snip.py"],
           "grid": {"archs": ["lenet300"], "datasets": ["mnist"], "methods": ["snip", "snip_abs_grad"],
                    "ratios": [1, 16], "seeds": [0]},
           "train": {"epochs": 1, "train_subset": 1000, "batch_size": 100}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    smk = [snakemake_bin, "-s", REPO / "Snakefile", "--directory", tmp_path, "--cores", "2"]
    run(smk, timeout=1200)
    rows = pd.read_parquet(tmp_path / "results" / "all.parquet")
    for method in ("snip", "snip_abs_grad"):
        got = rows[(rows["method"] == method) & (rows["ratio"] == 16)]
        assert len(got) == 1 and (got["status"] == "ok").all() and (got["n_kept"] == round(266_200 / 16)).all()
    table = (tmp_path / "reports" / "tables" / "mnist_lenet300.md").read_text()
    assert re.search(r"^\| snip_abs_grad\b", table, re.M) and re.search(r"^\| snip\b", table, re.M)
    audit = run([PYTHON, "-m", "prunelib", "audit", "grid", "--config", "config.yaml"], cwd=tmp_path)
    assert "missing" not in audit.stdout.lower() or "0 missing" in audit.stdout
    # editing the plugin reruns exactly the jobs that use it
    plugin = tmp_path / "examples" / "plugins" / "study_snip.py"
    plugin.write_text(plugin.read_text() + "\n# edited\n")
    dry = run(smk + ["-n"]).stdout
    jobs = re.findall(r"^rule (\w+):\n(?:.*\n)*?\s+wildcards: (.*)$", dry, re.M)
    assert jobs, dry
    for rule, wildcards in jobs:
        if rule not in ("aggregate", "all"):
            assert "method=snip_abs_grad" in wildcards, (rule, wildcards)
    assert {rule for rule, _ in jobs} >= {"score", "mask", "train", "eval"}


NET_AND_DATA = '''
import torch
from torch import nn
from prunelib import register_arch, register_dataset

@register_arch("tiny_mlp", description="784-32-10 MLP", cost=0.5)
def tiny_mlp(num_classes, in_channels, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, 32), nn.ReLU(),
                         nn.Linear(32, num_classes))

@register_dataset("stripes", num_classes=2, in_channels=1, image_size=8, mean=(0.5,), std=(0.5,),
                  description="horizontal vs vertical stripes")
def stripes(root):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (64,), generator=g)
    x = torch.zeros(64, 8, 8, dtype=torch.uint8)
    x[y == 0, ::2, :] = 255
    x[y == 1, :, ::2] = 255
    return {"train_x": x[:48], "train_y": y[:48], "test_x": x[48:], "test_y": y[48:], "source": "made here"}
'''


def test_a_plugin_network_and_dataset_run_the_data_and_init_stages_in_fresh_processes(tmp_path, isolated_registry):
    (tmp_path / "mine.py").write_text(NET_AND_DATA)
    cfg = {"plugins": ["mine.py"], "grid": {"archs": ["tiny_mlp"], "datasets": ["stripes"], "methods": ["snip"],
                                            "ratios": [1, 4], "seeds": [0]}}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        s = settings(cfg)
        data = contracts.data_contract("stripes")
        init = contracts.init_contract(s, "tiny_mlp", "stripes", 0, "pytorch_default")
    finally:
        os.chdir(cwd)
    # each entry carries its own digest: the data job the dataset's, the init job the network's too
    assert [r["entry"] for r in data.plugins] == ["dataset:stripes"] and data.plugins[0]["plugin"] == "mine.py"
    assert data.plugins[0] in init.plugins and {r["entry"] for r in init.plugins} == {"arch:tiny_mlp",
                                                                                      "dataset:stripes"}
    assert registry.arch("tiny_mlp").cost == 0.5 and registry.dataset("stripes").image_size == 8
    run([PYTHON, "-m", "prunelib", "data", "--dataset", "stripes", "--root", ".", "--out", "stripes.pt",
         "--settings", data.to_json()], cwd=tmp_path)
    run([PYTHON, "-m", "prunelib", "init", "--settings", init.to_json(), "--out-weights", "init.pt",
         "--out-table", "init.parquet"], cwd=tmp_path)
    blob = load_pt(tmp_path / "init.pt")
    assert blob["state_dict"]["1.weight"].shape == (32, 64) and blob["meta"]["arch"] == "tiny_mlp"
    assert load_pt(tmp_path / "stripes.pt")["meta"]["source"] == "made here"
    # the jobs refuse a plugin edited after the workflow was planned
    (tmp_path / "mine.py").write_text(NET_AND_DATA + "\n# edited\n")
    proc = run([PYTHON, "-m", "prunelib", "init", "--settings", init.to_json(), "--out-weights", "x.pt",
                "--out-table", "x.parquet"], cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "mine.py (arch tiny_mlp) changed since the workflow was planned" in proc.stderr
    assert not (tmp_path / "x.pt").exists()
