"""Settings paths that had no test: include_bias / include_norm through the stages,
class-balanced scoring (GraSP's default) through the score stage, iterative.per_method
overrides through an IMP round, `check-config` and YAML syntax errors, and the
cluster profiles' rule names and options."""

from __future__ import annotations

import re

import pytest
import torch
import yaml

from prunelib import config, stages
from prunelib.config import contracts

from prunelib.cli import main as cli

from prunelib.data import datasets
from prunelib.foundations.paths import imp_round_files
from prunelib.foundations.artifacts import load_pt, read_parquet_rows
from prunelib.methods.masking import kept_count
from prunelib.methods.scorers.grasp import GraspScorer

from cells import run_cell, settings
from conftest import REPO


def _settings(**over):
    return settings(**{"train": {"epochs": 1, "train_subset": 256, "batch_size": 64}, **over})


@pytest.mark.parametrize("arch, prune, extra", [
    ("lenet300", {"include_bias": True}, ["fc1.bias", "fc2.bias", "fc3.bias"]),
    ("resnet20", {"include_norm": True}, ["bn1.weight", "bn1.bias"]),
])
def test_include_bias_and_norm_make_those_parameters_prunable_and_counted(tmp_path, mnist_pt, arch, prune, extra):
    s = _settings(prune=prune)
    cell = run_cell(tmp_path, mnist_pt, s, arch, "global_magnitude", 8, until="mask", folder=tmp_path)
    init = load_pt(cell.init)
    prunable = init["meta"]["prunable"]
    assert set(extra) <= set(prunable)
    table = {r["name"]: r["prunable"] for r in read_parquet_rows(cell.init_table)}
    assert all(table[n] for n in extra)
    n = sum(init["state_dict"][k].numel() for k in prunable)
    masks = load_pt(cell.mask)["masks"]
    assert list(masks) == prunable
    assert sum(int(m.sum()) for m in masks.values()) == kept_count(n, 8)


def test_grasp_scores_on_class_balanced_batches_by_default(tmp_path, mnist, mnist_pt):
    s = _settings()
    cell = run_cell(tmp_path, mnist_pt, s, "lenet300", "grasp", 8, seed=3, until="score", folder=tmp_path)
    blob = load_pt(cell.scores)
    assert (blob["meta"]["class_balanced"], blob["meta"]["batch_size"], blob["meta"]["n_examples"]) == \
        (True, 100, 100)
    batches = list(datasets.scoring_batches(mnist, "mnist", 3, 100, 1, class_balanced=True))
    assert torch.bincount(batches[0][1], minlength=10).tolist() == [10] * 10
    # the stage scored exactly those examples: recomputing on them gives the same bits
    model, meta = stages.load_model(cell.init)
    params = {n: p for n, p in model.named_parameters() if n in meta["prunable"]}
    want = GraspScorer().score(model, params, batches, 3)
    assert all(torch.equal(blob["scores"][n], want[n].detach()) for n in want)
    # a plain (not balanced) draw is another set of examples
    plain = list(datasets.scoring_batches(mnist, "mnist", 3, 100, 1, class_balanced=False))
    assert not torch.equal(plain[0][1].sort().values, batches[0][1].sort().values)


def test_class_balanced_batches_are_disjoint_seeded_and_balanced(mnist):
    a = list(datasets.scoring_batches(mnist, "mnist", 0, 25, 3, class_balanced=True))
    b = list(datasets.scoring_batches(mnist, "mnist", 0, 25, 3, class_balanced=True))
    c = list(datasets.scoring_batches(mnist, "mnist", 1, 25, 3, class_balanced=True))
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0], c[0][0])
    for _, y in a:  # 25 over 10 classes: 3 of the first five classes, 2 of the rest
        assert torch.bincount(y, minlength=10).tolist() == [3] * 5 + [2] * 5
    rows = torch.cat([x.flatten(1) for x, _ in a])
    assert torch.unique(rows, dim=0).shape[0] == 75  # no example twice across batches


def test_iterative_per_method_overrides_reach_the_imp_rounds(tmp_path, mnist_pt):
    s = _settings(iterative={"train_steps": 4, "per_method": {"lth": {"rewind_weights_to": 2, "retrain_steps": 2}}},
                  grid={"ratios": [1, 2], "methods": ["lth", "lrr"]})
    assert config.imp_spec(s, "lrr") == config.imp_spec(_settings(iterative={"train_steps": 4}), "lrr")
    assert (config.imp_spec(s, "lth").rewind_weights_to, config.imp_spec(s, "lth").retrain_steps) == (2, 2)
    stages.run_init(contracts.init_contract(s, "lenet300", "mnist", 0, "pytorch_default"), tmp_path / "i.pt",
                    tmp_path / "i.parquet")
    r0, r1 = tmp_path / "round0", tmp_path / "round1"
    stages.run_imp_round(contracts.imp_round_contract(s, "lth", 0, "mnist", 0, "lenet300"), mnist_pt,
                         imp_round_files(r0), init_path=tmp_path / "i.pt")
    rewind = load_pt(r0 / "rewind.pt")
    assert rewind["meta"]["step"] == 2 and rewind["meta"]["plan"]["rewind_step"] == 2
    init = load_pt(tmp_path / "i.pt")["state_dict"]
    dense = load_pt(r0 / "weights.pt")["state_dict"]
    assert not torch.equal(rewind["state_dict"]["fc1.weight"], init["fc1.weight"])  # step 2, not 0
    assert not torch.equal(rewind["state_dict"]["fc1.weight"], dense["fc1.weight"])  # nor T = 4
    stages.run_imp_round(contracts.imp_round_contract(s, "lth", 0, "mnist", 1, "lenet300"), mnist_pt,
                         imp_round_files(r1), prev_weights=r0 / "weights.pt", prev_mask=r0 / "mask.pt",
                         rewind_path=r0 / "rewind.pt")
    plan = load_pt(r1 / "weights.pt")["meta"]["plan"]
    assert (plan["rewind_step"], plan["retrain_steps"], plan["train_steps"]) == (2, 2, 4)
    log = read_parquet_rows(r1 / "train_log.parquet")
    assert max(r["step"] for r in log) == 4  # positions T-R .. T-1: the round ends where the dense run did


def test_check_config_accepts_the_default_config_and_names_a_yaml_syntax_error(tmp_path, capsys):
    assert cli.main(["check-config", str(REPO / "config.yaml")]) == 0
    n = len(config.cells(config.load(REPO / "config.yaml")))
    assert capsys.readouterr().out.strip() == f"{REPO / 'config.yaml'}: ok ({n} cells)"
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  methods: [snip\n  ratios: 1\n")
    assert cli.main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == (f"prunelib check-config: config error: {bad}: not valid YAML (line 3, column 9): "
                   "expected ',' or ']', but got ':'\n")
    assert cli.main(["check-config", str(tmp_path / "none.yaml")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{tmp_path / 'none.yaml'}: no such config file")
    (tmp_path / "typo.yaml").write_text("grid:\n  methods: [snipp]\n")
    assert cli.main(["check-config", str(tmp_path / "typo.yaml")]) == 2
    assert 'grid.methods[0] = "snipp" is not allowed' in capsys.readouterr().err


def _workflow_rules() -> set[str]:
    text = (REPO / "Snakefile").read_text() + "".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk"))
    return set(re.findall(r"^(?:rule|checkpoint) (\w+):", text, re.M))


@pytest.mark.parametrize("profile", ["slurm", "local"])
def test_cluster_profiles_name_real_rules_and_real_snakemake_options(profile):
    from snakemake.cli import get_argument_parser

    prof = yaml.safe_load((REPO / "workflow/profiles" / profile / "config.yaml").read_text())
    options = {o.lstrip("-") for a in get_argument_parser()._actions for o in a.option_strings}
    assert set(prof) <= options, set(prof) - options
    rules = _workflow_rules()
    assert {"init", "score", "mask", "train", "eval", "imp_dense", "imp_round", "aggregate"} <= rules
    for key in ("set-resources", "set-threads", "groups"):
        assert set(prof.get(key, {})) <= rules, (key, set(prof.get(key, {})) - rules)
    groups = set(prof.get("groups", {}).values())
    assert groups <= set(prof.get("group-components", {})) | set()
    if profile == "slurm":
        assert prof["executor"] == "slurm"
        # every stage that trains or scores asks for a GPU there
        assert {r for r, res in prof["set-resources"].items() if res.get("gpu") == 1} == \
            {"score", "train", "eval", "imp_dense", "imp_round"}
        # the keys the comments offer (no accounting, GPU partitions) are real options too
        text = (REPO / "workflow/profiles/slurm/config.yaml").read_text()
        commented = set(re.findall(r"^# ([a-z][a-z-]+): ", text, re.M))
        assert {"slurm-status-command", "slurm-no-account"} <= commented <= options, commented - options
