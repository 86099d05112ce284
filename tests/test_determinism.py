"""Same config and seed => bit-identical artifacts, across processes: one LeNet-5 cell's
score, mask, train and eval stages run (a) through the pre-imported worker, as the
workflow runs them, and (b) cold, in a fresh process, with 1 thread and, twice, with 2.
Every tensor is compared by hash, every table row and meta field too, timings aside.

The thread count is part of what "the same config" means: with 2 threads PyTorch's CPU
convolutions and matrix products sum in another order, and LeNet-5's scores, weights and
test loss differ from the 1-thread run in the last bits (found when this test was
written; torch 2.14.1, 2-core CPU).  The workflow runs every job with ``threads`` (1 by
default), so the claim tested is: at a given thread count, worker and cold start, and
one process and the next, write the same bits."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from prunelib import stages

from prunelib.cli import worker
from prunelib.config import contracts
from prunelib.foundations.artifacts import load_pt, read_parquet_rows

from cells import settings
from conftest import PYTHON, tensor_dict_digest

SETTINGS = settings(train={"epochs": 1, "train_subset": 512, "batch_size": 64}, score={"batch_size": 64})
ARCH, METHOD, RATIO, SEED = "lenet5", "snip", 8, 1
TENSOR_KEYS = {"scores.pt": "scores", "mask.pt": "masks", "final.pt": "state_dict"}
TABLES = ("mask.parquet", "train_log.parquet", "eval.parquet")


def stage_argvs(init, data, out, threads) -> list[list[str]]:
    s = SETTINGS
    argvs = [
        ["score", "--settings", contracts.score_contract(s, METHOD, SEED, ARCH, "mnist").to_json(), "--init", init,
         "--data", data, "--out", f"{out}/scores.pt"],
        ["mask", "--settings", contracts.mask_contract(s, METHOD, RATIO, SEED, arch=ARCH, dataset="mnist").to_json(),
         "--init", init, "--scores", f"{out}/scores.pt", "--out-mask", f"{out}/mask.pt",
         "--out-table", f"{out}/mask.parquet"],
        ["train", "--settings", contracts.train_contract(s, METHOD, RATIO, SEED, "mnist", arch=ARCH).to_json(),
         "--init", init, "--mask", f"{out}/mask.pt", "--data", data, "--out-weights", f"{out}/final.pt",
         "--out-log", f"{out}/train_log.parquet"],
        ["eval", "--settings", contracts.eval_contract(s, ARCH, "mnist", METHOD, RATIO, SEED).to_json(), "--final",
         f"{out}/final.pt", "--mask", f"{out}/mask.pt", "--data", data, "--out", f"{out}/eval.parquet"],
    ]
    return [[*a, "--threads", str(threads)] for a in argvs]


def without_timings(obj):
    """``obj`` with every field that measures time (``*seconds*``) removed, recursively,
    and the lineage (``inputs``, ``*_sha256``: each run's own paths, and digests of
    artifacts whose meta records timings; the tensors themselves are compared by hash)."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items()
                if "seconds" not in k and k != "inputs" and not k.endswith("_sha256")}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


def fingerprint(folder) -> dict:
    out = {}
    for name, key in TENSOR_KEYS.items():
        blob = load_pt(folder / name)
        out[name] = (tensor_dict_digest(blob[key]), json.dumps(without_timings(blob["meta"]), sort_keys=True,
                                                                 default=str))
    for name in TABLES:
        out[name] = json.dumps(without_timings(read_parquet_rows(folder / name)), sort_keys=True, default=str)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_pt):
    root = tmp_path_factory.mktemp("determinism")
    init = root / "init.pt"
    stages.run_init(contracts.init_contract(SETTINGS, ARCH, "mnist", SEED, "pytorch_default"), init,
                    root / "init.parquet")
    cold_env = {k: v for k, v in os.environ.items() if k != worker.ENV_VAR}
    # (b) cold: a fresh process runs the four stages; 1 thread once, 2 threads twice
    for name, threads in (("cold1", 1), ("cold2", 2), ("cold2_again", 2)):
        out = root / name
        code = "import json, sys; from prunelib.cli.main import main; sys.exit(max(main(a) for a in json.loads(sys.argv[1])))"
        subprocess.run([PYTHON, "-c", code, json.dumps(stage_argvs(str(init), str(mnist_pt), str(out), threads))],
                       check=True, env=cold_env, capture_output=True)
    # (a) each stage forwarded to the worker, which forks a job per stage as in the
    # workflow; try_forward returns None when no worker took the job, so 0 proves it did
    sock = str(root / "w.sock")
    proc = worker.start(sock, str(root / "worker.log"), os.getpid())
    assert proc is not None, (root / "worker.log").read_text()
    saved = os.environ.get(worker.ENV_VAR)
    os.environ[worker.ENV_VAR] = sock
    try:
        for argv in stage_argvs(str(init), str(mnist_pt), str(root / "worker"), 1):
            assert worker.try_forward(argv) == 0, argv[0]
    finally:
        os.environ.pop(worker.ENV_VAR)
        if saved is not None:
            os.environ[worker.ENV_VAR] = saved
        worker.stop_started()
    return {name: fingerprint(root / name) for name in ("worker", "cold1", "cold2", "cold2_again")}


@pytest.mark.parametrize("artifact", [*TENSOR_KEYS, *TABLES])
def test_worker_and_cold_start_write_identical_artifacts_with_1_thread(runs, artifact):
    assert runs["worker"][artifact] == runs["cold1"][artifact]


@pytest.mark.parametrize("artifact", [*TENSOR_KEYS, *TABLES])
def test_two_cold_processes_with_2_threads_write_identical_artifacts(runs, artifact):
    assert runs["cold2"][artifact] == runs["cold2_again"][artifact]


def test_the_compared_artifacts_are_the_real_ones(runs):
    """Guard against comparing empty things: the eval row holds a trained accuracy (8
    steps on 512 images: above chance, far from converged)."""
    row = json.loads(runs["worker"]["eval.parquet"])[0]
    assert row["method"] == METHOD and row["ratio"] == RATIO and row["status"] == "ok"
    assert 0.15 < row["top1"] <= 1.0
