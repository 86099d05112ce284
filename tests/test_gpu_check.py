"""``make gpu-check`` (benchmarks/gpu_check.py) cannot rot while no GPU is at hand: the
same script, device forced to the CPU and tiny sizes, end to end (~40 s on 2 cores)."""

from __future__ import annotations

import json

import pytest

from conftest import PYTHON, REPO, run

pytestmark = pytest.mark.e2e

SCRIPT = REPO / "benchmarks/gpu_check.py"


@pytest.fixture(scope="module")
def report(tmp_path_factory, mnist_root):
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check"
    proc = run([PYTHON, SCRIPT, "--device", "cpu", "--tiny", "--data", mnist_root, "--out", out], timeout=600)
    return json.loads(out.with_suffix(".json").read_text()), out.with_suffix(".md").read_text(), proc


def test_every_stage_of_every_cell_runs_twice_and_repeats_itself_on_the_cpu(report):
    rep, _, _ = report
    cells = rep["stages"]["cells"]
    assert sorted(cells) == ["lenet5 / mnist", "lenet5 / mnist, IMP (lth) rounds 0-1",
                             "resnet20 / synthetic_cifar10", "vgg16 / synthetic_cifar10"]
    for name, c in cells.items():
        if "IMP" in name:
            assert set(c["seconds"]) == {"imp round 0", "imp round 1"}
            assert {"round0 rewind", "round1 weights", "round1 mask"} <= set(c["artifacts_identical"])
        else:
            assert set(c["seconds"]) == {"init", "score", "mask", "train", "eval"}
            assert set(c["artifacts_identical"]) == {"init", "scores", "mask", "mask_table", "final", "train_log",
                                                     "eval"}
            assert c["eval"]["status"] == "ok" and 0 <= c["eval"]["top1"] <= 1
        assert all(c["artifacts_identical"].values()), name  # the CPU is deterministic: a difference is a bug
    assert rep["stages"]["deterministic"] is True
    assert rep["stages"]["nondeterministic_ops"] == []
    assert rep["determinism_settings"] == {}  # nothing to set off CUDA


def test_throughput_scoring_cost_and_the_training_options_are_measured(report):
    rep, md, _ = report
    assert set(rep["throughput"]) == {"lenet5", "resnet20", "vgg16"}
    for r in rep["throughput"].values():
        # (the ratio is of the unrounded throughputs; the two shown are rounded to 0.1)
        assert r["dense"] > 0 and r["masked"] > 0
        # (each rounded value is off by at most 0.05, so the ratio of the two shown is off by
        # at most that much, relatively, of each: 2.9 / 3.2 against an unrounded 0.886)
        bound = r["masked/dense"] * (0.05 / r["masked"] + 0.05 / r["dense"]) + 0.001
        assert abs(r["masked/dense"] - r["masked"] / r["dense"]) <= bound
    for arch in ("lenet5", "resnet20", "vgg16"):
        cost = rep["scoring"][arch]
        assert cost["unit_ms"] > 0
        assert all(cost[m]["units"] > 0 and cost[m]["seconds"] > 0 for m in ("snip", "grasp", "synflow"))
    for arch in ("lenet5", "resnet20"):
        options = rep["options"][arch]
        assert sorted(options) == ["bf16, channels_last=off", "bf16, channels_last=on", "fp32, channels_last=off",
                                   "fp32, channels_last=on"]
        for label, v in options.items():
            assert v["images_per_s"] > 0 and 0 <= v["test_top1"] <= 1
            # bf16 autocast is CUDA's: on the CPU the run says it was ignored, and trains in fp32
            assert v["notes"] == (["train.precision = bf16 ignored on cpu (autocast is used on CUDA only)"]
                                  if label.startswith("bf16") else [])
        assert options["bf16, channels_last=off"]["test_top1"] == options["fp32, channels_last=off"]["test_top1"]
    assert rep["environment"]["device"] == "cpu" and rep["skipped"] == []
    for heading in ("# GPU check: CPU", "## 1-2. Every stage on the device, twice", "Deterministic: **yes**",
                    "## 3. Training throughput", "## 4. Scoring cost", "## 5. train.precision"):
        assert heading in md


def test_without_a_gpu_cuda_is_refused_in_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: make gpu-check is the test")
    proc = run([PYTHON, SCRIPT, "--out", tmp_path / "r"], check=False, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        "gpu_check: --device = cuda but this machine has no CUDA device; allowed: run it where a GPU is, or "
        "--device cpu (with --tiny for the quick check)")


def test_sections_past_the_budget_are_skipped_and_named(tmp_path, mnist_root):
    out = tmp_path / "r"
    run([PYTHON, SCRIPT, "--device", "cpu", "--tiny", "--data", mnist_root, "--out", out, "--budget", "0"],
        timeout=600)
    rep = json.loads(out.with_suffix(".json").read_text())
    assert rep["stages"]["cells"] == {} and rep["throughput"] == {} and rep["options"] == {}
    assert rep["stages"]["deterministic"] is None  # nothing compared is not "deterministic"
    assert "stages of lenet5" in rep["skipped"] and "throughput of vgg16" in rep["skipped"]
    assert "Skipped (past the 0 s budget): stages of lenet5" in out.with_suffix(".md").read_text()
