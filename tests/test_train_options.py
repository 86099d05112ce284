"""``train.precision`` (fp32 | bf16, superseding ``train.amp``) and ``train.channels_last``:
hashes unchanged until set, one-line config errors, what they do on the CPU, and a
channels-last training that resumes from its checkpoint bit-identical.  Their speed
and accuracy on CUDA: ``make gpu-check`` (benchmarks/gpu_check.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
import torch

from prunelib import config
from prunelib.config import contracts
from prunelib.config.settings import TrainSettings
from prunelib.train import resume
from prunelib.train.loop import run_steps, train

from cells import settings
from conftest import PYTHON, REPO, tensor_dict_digest


def test_the_new_options_change_no_hash_until_they_are_set():
    s = settings()
    base = contracts.train_contract(s, "snip", 4.0, 0, "mnist", "none", "lenet5")
    assert "precision" not in base.to_dict()["train"] and "channels_last" not in base.to_dict()["train"]
    for change in ({"precision": "bf16"}, {"channels_last": True}):
        other = contracts.train_contract(settings(train=change), "snip", 4.0, 0, "mnist", "none", "lenet5")
        assert other.to_dict()["train"].items() >= change.items()
        assert other.hash() != base.hash()


def test_amp_is_the_older_name_of_precision_bf16():
    assert TrainSettings().autocast_dtype is None
    assert TrainSettings(amp="bf16").autocast_dtype == TrainSettings(precision="bf16").autocast_dtype == "bfloat16"
    assert settings(train={"amp": "bf16", "precision": "bf16"}).train.autocast_dtype == "bfloat16"


@pytest.mark.parametrize("train, message", [
    ({"amp": "bf16", "precision": "fp32"},
     "config error: train.amp = bf16 and train.precision = fp32 disagree; train.amp: bf16 is the older name of "
     "train.precision: bf16; allowed: set train.precision alone (fp32 or bf16)"),
    ({"precision": "fp16"}, 'config error: train.precision = "fp16" is not allowed; allowed: fp32, bf16'),
    ({"channels_last": "yes"}, 'config error: train.channels_last = "yes" is not allowed; allowed: true or false'),
])
def test_bad_values_are_one_line_naming_key_value_and_allowed(train, message):
    with pytest.raises(config.ConfigError) as err:
        config.resolve({"train": train})
    assert str(err.value).startswith(message)


def _tiny(mnist, n=512):
    return {k: (v[:n] if k.startswith("train_") else v[:256]) if hasattr(v, "shape") else v for k, v in mnist.items()}


def test_bf16_on_the_cpu_is_said_to_be_ignored_and_trains_exactly_as_fp32(mnist):
    from prunelib.nets import models

    data, out = _tiny(mnist), {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model, notes = models.build("lenet5", 10, 1, 28), []
        train(model, {}, data, "mnist", TrainSettings(steps=6, batch_size=32, precision=precision), 0,
              torch.device("cpu"), progress=notes.append)
        out[precision] = (tensor_dict_digest(model.state_dict()), [n for n in notes if "ignored" in n])
    assert out["bf16"][1] == ["train.precision = bf16 ignored on cpu (autocast is used on CUDA only)"]
    assert out["fp32"][1] == [] and out["bf16"][0] == out["fp32"][0]


def _cl_run(data, tmp_path, stop_at=None, fresh=True):
    """LeNet-5 trained channels-last for 12 steps; with ``stop_at``, asked to stop (as a
    SIGTERM would) before that step."""
    from prunelib.nets import models

    torch.manual_seed(0)
    model = models.build("lenet5", 10, 1, 28)
    s = TrainSettings(steps=12, batch_size=32, channels_last=True)
    ckpt = resume.Checkpointer(tmp_path / "final.pt", {"job": "cl"}, minutes=60)
    if fresh:
        ckpt.remove()

    def due(position=[0]):  # noqa: B006 - a counter of the loop's calls
        position[0] += 1
        if stop_at is not None and position[0] == stop_at + 1:
            ckpt.signalled = signal.SIGTERM
        return ckpt.signalled is not None

    ckpt.due = due
    run_steps(model, {}, data, "mnist", s, 0, torch.device("cpu"), range(0, 12), lambda p: 0.05, resume=ckpt)
    return model


def test_channels_last_training_is_in_nhwc_and_resumes_bit_identical(mnist, tmp_path):
    data = _tiny(mnist)
    whole = _cl_run(data, tmp_path / "whole")
    # (the second convolution: with one input channel the two layouts coincide)
    conv = next(p for p in whole.parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    with pytest.raises(resume.JobInterrupted, match="before step 5 "):
        _cl_run(data, tmp_path / "cut", stop_at=5)
    assert resume.checkpoint_path(tmp_path / "cut" / "final.pt").exists()
    resumed = _cl_run(data, tmp_path / "cut", fresh=False)
    assert tensor_dict_digest(resumed.state_dict()) == tensor_dict_digest(whole.state_dict())


def test_deterministic_cuda_sets_what_cuda_needs(tmp_path):
    """In a process of its own: it changes process-wide state (deterministic mode)."""
    code = ("import json, os, torch; from prunelib.foundations.seeding import deterministic_cuda; "
            "out = deterministic_cuda(); "
            "print(json.dumps([out, os.environ['CUBLAS_WORKSPACE_CONFIG'], torch.backends.cudnn.deterministic, "
            "torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled(), "
            "torch.is_deterministic_algorithms_warn_only_enabled()]))")
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env={**env, "PYTHONPATH": str(REPO)},
                          check=True)
    out, workspace, cudnn_det, cudnn_bench, det, warn_only = json.loads(proc.stdout)
    assert workspace == ":4096:8" and cudnn_det and not cudnn_bench and det and warn_only
    assert out == {"CUBLAS_WORKSPACE_CONFIG": ":4096:8", "cudnn_deterministic": True, "cudnn_benchmark": False,
                   "deterministic_algorithms": "warn_only"}
