"""A plugin's mistake never becomes a plausible number: the scorer contract, checked for
every method before anything is written, and the error shown where the user looks.

One real Snakemake run (keep-going) takes a plugin with one method per ordinary mistake
through the score stage beside a correct one; each test reads its method's one line off
Snakemake's console and checks that nothing of that method was left on disk."""

from __future__ import annotations

import subprocess

import pytest
import torch
import yaml

from prunelib.catalogue import registry
from prunelib.methods import score_checks

from conftest import HANG_SECONDS, REPO, SNAKEMAKE

MISTAKES = '''
import torch
import torch.nn.functional as F
from prunelib import Scorer, register_method


@register_method("missing_layer", paper="a score() that forgets the last tensor")
class MissingLayer(Scorer):
    def score(self, model, params, batches, seed):
        return {n: p.detach().abs() for n, p in list(params.items())[:-1]}


@register_method("forgot_needs_data", paper="loops over the batches without asking for them")
class ForgotNeedsData(Scorer):
    def score(self, model, params, batches, seed):
        grads = {n: torch.zeros_like(p) for n, p in params.items()}
        for x, y in batches:  # empty: needs_data is not set
            for n, g in zip(params, torch.autograd.grad(F.cross_entropy(model(x), y), list(params.values()))):
                grads[n] += g
        return {n: (g * params[n]).abs() for n, g in grads.items()}


@register_method("wrong_shape", paper="a score of one row")
class WrongShape(Scorer):
    def score(self, model, params, batches, seed):
        out = {n: p.detach().abs() for n, p in params.items()}
        first = next(iter(out))
        out[first] = out[first][0]
        return out


@register_method("all_equal", paper="every score 1")
class AllEqual(Scorer):
    def score(self, model, params, batches, seed):
        return {n: torch.ones_like(p) for n, p in params.items()}


@register_method("plugin_magnitude", paper="a correct one")
class Fine(Scorer):
    def score(self, model, params, batches, seed):
        return {n: p.detach().abs() for n, p in params.items()}
'''
BROKEN = ("missing_layer", "forgot_needs_data", "wrong_shape", "all_equal")


@pytest.fixture(scope="module")
def mistakes_run(tmp_path_factory, mnist_root):
    wd = tmp_path_factory.mktemp("mistakes")
    (wd / "mistakes.py").write_text(MISTAKES)
    (wd / "config.yaml").write_text(yaml.safe_dump({
        "preset": "fast", "device": "cpu", "data_dir": str(mnist_root), "plugins": ["mistakes.py"],
        "grid": {"archs": ["lenet300"], "datasets": ["mnist"], "methods": [*BROKEN, "plugin_magnitude"],
                 "ratios": [1, 4], "seeds": [0]},
        "train": {"epochs": 1, "train_subset": 500, "batch_size": 100}}))
    proc = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(wd), "--cores", "2",
                           "--keep-going"], capture_output=True, text=True, timeout=HANG_SECONDS)
    return wd, proc


def _console_line(proc, method) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("prunelib: score failed:") and method in ln]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def _nothing_left(wd, method):
    seed_dir = wd / "results/mnist/lenet300/seed0" / method
    assert not (seed_dir / "scores.pt").exists() and not list(seed_dir.glob("r*/mask.pt"))


def test_the_run_fails_and_the_correct_method_beside_the_mistakes_completes(mistakes_run):
    wd, proc = mistakes_run
    assert proc.returncode != 0
    assert (wd / "results/mnist/lenet300/seed0/plugin_magnitude/r4/eval.parquet").exists()


def test_a_missing_layer_is_named(mistakes_run):
    wd, proc = mistakes_run
    line = _console_line(proc, "missing_layer")
    assert ("method missing_layer (plugin mistakes.py): score() must return one score per prunable tensor, "
            "exactly fc1.weight, fc2.weight, fc3.weight; missing fc3.weight") in line
    _nothing_left(wd, "missing_layer")


def test_batches_read_without_needs_data_are_named(mistakes_run):
    wd, proc = mistakes_run
    line = _console_line(proc, "forgot_needs_data")
    assert ("method forgot_needs_data (plugin mistakes.py): score() read its batches but needs_data = False, "
            "so it got none") in line and "set needs_data = True" in line
    _nothing_left(wd, "forgot_needs_data")


def test_a_wrong_shape_is_named_with_what_was_expected(mistakes_run):
    wd, proc = mistakes_run
    line = _console_line(proc, "wrong_shape")
    assert ("method wrong_shape (plugin mistakes.py): the score of fc1.weight has shape 784 (784 values); "
            "expected 300x784 (235200), its parameter's shape") in line
    _nothing_left(wd, "wrong_shape")


def test_all_equal_scores_are_refused(mistakes_run):
    wd, proc = mistakes_run
    line = _console_line(proc, "all_equal")
    assert "every one of its 266,200 scores is 1, so its mask would be a random draw under its name" in line
    _nothing_left(wd, "all_equal")


def test_the_job_log_keeps_the_whole_message_and_the_console_names_it(mistakes_run):
    wd, proc = mistakes_run
    log = (wd / "results/logs/score/mnist/lenet300/seed0/wrong_shape.log").read_text()
    assert log.strip().splitlines()[-1].startswith("prunelib score: method wrong_shape (plugin mistakes.py)")
    assert "[log: results/logs/score/mnist/lenet300/seed0/wrong_shape.log]" in _console_line(proc, "wrong_shape")


# --- the checks themselves, in-process -------------------------------------------------------

class _Entry:
    name, ties_by_design = "m", False
    origin = registry.Origin()


def test_a_plugin_exception_is_one_line_naming_its_file_and_line(tmp_path):
    from prunelib.cli.main import one_line

    plugin = tmp_path / "bad.py"
    plugin.write_text("def score():\n    raise KeyError('fc9.weight')\n")
    namespace = {}
    exec(compile(plugin.read_text(), str(plugin), "exec"), namespace)
    with pytest.raises(KeyError) as info:
        namespace["score"]()
    assert one_line(info.value) == f"KeyError: 'fc9.weight' (at {plugin}:2, in score)"


def test_needs_data_never_read_is_named():
    batches = score_checks.Batches([(torch.zeros(1), torch.zeros(1))])
    with pytest.raises(score_checks.ScorerContractError, match="needs_data = True but score.. never read"):
        score_checks.check_data_use(_Entry, True, batches)


def test_extra_names_dtype_and_nan_are_named():
    params = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    good = {"a": torch.rand(2, 3), "b": torch.rand(4)}
    score_checks.check_scores(_Entry, good, params)
    for bad, pattern in (({**good, "c.bias": torch.rand(1)}, "not prunable c.bias"),
                         ({**good, "b": torch.arange(4)}, "the score of b has dtype torch.int64; expected a floating"),
                         ({**good, "b": torch.tensor([0.1, float("nan"), 0.2, 0.3])}, "b has 1 NaN or infinite"),
                         ([1, 2], "returned a list; expected a dict")):
        with pytest.raises(score_checks.ScorerContractError, match=pattern):
            score_checks.check_scores(_Entry, bad, params)


def test_a_prune_that_misses_the_target_count_is_refused():
    params = {"a": torch.zeros(10), "b": torch.zeros(10)}
    masks = {"a": torch.ones(10, dtype=torch.bool), "b": torch.zeros(10, dtype=torch.bool)}
    rows = [{}, {}]
    score_checks.check_pruned(_Entry, masks, rows, params, 10, "global")
    with pytest.raises(score_checks.ScorerContractError, match="keeps 10 weights; expected exactly 5"):
        score_checks.check_pruned(_Entry, masks, rows, params, 5, "global")
    with pytest.raises(score_checks.ScorerContractError, match="mask of b is torch.float32 10"):
        score_checks.check_pruned(_Entry, {**masks, "b": torch.zeros(10)}, rows, params, 10, "global")
    with pytest.raises(score_checks.ScorerContractError, match="mask of a keeps 10 weights; expected exactly 5"):
        score_checks.check_pruned(_Entry, masks, rows, params, 10, "layer", {"a": 5, "b": 5})


def test_ties_by_design_lets_all_equal_scores_through():
    class Random(_Entry):
        ties_by_design = True

    score_checks.check_scores(Random, {"a": torch.ones(3)}, {"a": torch.zeros(3)})
    with pytest.raises(score_checks.ScorerContractError):
        score_checks.check_scores(_Entry, {"a": torch.ones(3)}, {"a": torch.zeros(3)})


# --- reruns per registry entry ------------------------------------------------------------------

TWO_METHODS = '''
import torch
from prunelib import Scorer, register_method


def magnitude(p):  # shared by both entries
    return p.detach().abs()


@register_method("mine_a", paper="entry A")
class A(Scorer):
    def score(self, model, params, batches, seed):
        return {n: magnitude(p) for n, p in params.items()}


@register_method("mine_b", paper="entry B")
class B(Scorer):
    def score(self, model, params, batches, seed):
        return {n: magnitude(p) + 1.0 for n, p in params.items()}
'''


def _planned(wd) -> set:
    """(rule, method) of every job a dry run would run."""
    dry = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(wd), "-n"],
                         capture_output=True, text=True, timeout=HANG_SECONDS)
    assert dry.returncode == 0, dry.stderr[-2000:]
    import re

    return {(rule, method) for rule, method in re.findall(r"^rule (\w+):\n(?:.*\n)*?\s+wildcards: .*method=(\w+)",
                                                          dry.stdout, re.M)}


def test_editing_one_entry_reruns_its_jobs_only_and_shared_code_reruns_all(tmp_path, mnist_root):
    (tmp_path / "two.py").write_text(TWO_METHODS)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "preset": "fast", "device": "cpu", "data_dir": str(mnist_root), "plugins": ["two.py"],
        "grid": {"archs": ["lenet300"], "datasets": ["mnist"], "methods": ["mine_a", "mine_b"], "ratios": [1, 4],
                 "seeds": [0]},
        "train": {"epochs": 1, "train_subset": 500, "batch_size": 100}}))
    done = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--cores", "2"],
                          capture_output=True, text=True, timeout=HANG_SECONDS)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _planned(tmp_path) == set()
    plugin = tmp_path / "two.py"
    plugin.write_text(TWO_METHODS.replace("magnitude(p) + 1.0", "magnitude(p) + 2.0"))  # entry B only
    assert {m for _, m in _planned(tmp_path)} == {"mine_b"}
    assert {r for r, _ in _planned(tmp_path)} >= {"score", "mask", "train", "eval"}
    plugin.write_text(TWO_METHODS.replace("return p.detach().abs()", "return p.detach().abs().clone()"))  # shared
    assert {m for _, m in _planned(tmp_path)} == {"mine_a", "mine_b"}


def test_a_ratio_no_network_can_take_stops_before_any_job(tmp_path):
    (tmp_path / "huge.yaml").write_text(yaml.safe_dump({"grid": {"ratios": [1, 1.0e12]}}))
    dry = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n",
                          "--configfile", str(REPO / "config.yaml"), str(tmp_path / "huge.yaml")],
                         capture_output=True, text=True, timeout=HANG_SECONDS)
    assert dry.returncode != 0 and "rule " not in dry.stdout
    assert ("config error: grid.ratios[1] = 1000000000000 keeps no weight of lenet300 on mnist (266,200 prunable "
            "weights, round(n / r) = 0); allowed: ratios up to 532,400") in dry.stderr


def test_cells_whose_mask_the_tie_break_drew_are_marked():
    from prunelib.report import tables

    stat = {"metric": "top1", "mean": 11.35, "std": 0.0, "n": 3, "seeds": 3, "best": False, "within_one_std": False,
            "collapsed_seeds": 0, "tied_seeds": 2, "failed_seeds": 0}
    assert tables.render(stat, "md").endswith(" ‡") and "[ties 2/3]" in tables.render(stat, "csv")
    assert not tables.render({**stat, "tied_seeds": 0}, "md").endswith("‡")
    from prunelib.methods import masking

    rows = [{"numel": 100, "tied_at_threshold": 40, "tied_kept": 10}, {"numel": 100, "tied_at_threshold": 5,
                                                                      "tied_kept": 5}]
    summary = masking.mask_summary([{**r, "name": str(i), "kept": 10, "collapsed": False}
                                    for i, r in enumerate(rows)])
    assert (summary["tied_at_cut"], summary["tied_at_cut_fraction"]) == (40, 0.2)  # only where the draw decided
