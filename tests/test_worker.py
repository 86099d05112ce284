"""The pre-imported worker: same results as a cold start, streams and exit codes passed
through, a cancelled client's job killed, and a fallback when no worker is there."""

import os
import signal
import subprocess
from types import SimpleNamespace

import pytest
import torch

from prunelib.cli import worker
from prunelib.config import contracts
from prunelib.foundations.artifacts import load_pt

from cells import settings
from conftest import PYTHON, wait_until


@pytest.fixture(scope="module")
def running_worker(tmp_path_factory):
    d = tmp_path_factory.mktemp("worker")
    sock = str(d / "w.sock")
    proc = worker.start(sock, str(d / "worker.log"), os.getpid())
    assert proc is not None, (d / "worker.log").read_text()
    yield SimpleNamespace(sock=sock, pid=proc.pid)
    worker.stop_started()
    assert proc.poll() is not None


def _init_cmd(out_dir, seed=3):
    contract = contracts.init_contract(settings(), "lenet300", "mnist", seed, "pytorch_default")
    return [PYTHON, "-m", "prunelib", "init", "--settings", contract.to_json(),
            "--out-weights", str(out_dir / "init.pt"), "--out-table", str(out_dir / "init.parquet")]


def test_worker_and_cold_start_write_identical_init_weights(running_worker, tmp_path):
    """The init stage only; score, mask, train and eval are compared in
    test_determinism.py.  (The worker's saving is measured by benchmarks/startup_overhead.py,
    not asserted here.)"""
    cold, warm = tmp_path / "cold", tmp_path / "warm"
    subprocess.run(_init_cmd(cold), check=True, env={k: v for k, v in os.environ.items()
                                                     if k != worker.ENV_VAR})
    subprocess.run(_init_cmd(warm), check=True, env={**os.environ, worker.ENV_VAR: running_worker.sock})
    a, b = load_pt(cold / "init.pt")["state_dict"], load_pt(warm / "init.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_errors_and_exit_codes_come_back_through_the_worker(running_worker, tmp_path):
    cmd = [PYTHON, "-m", "prunelib", "mask", "--settings", '{"method":"snip","ratio":4,"seed":0}',
           "--init", str(tmp_path / "missing.pt"), "--scores", str(tmp_path / "missing.pt"),
           "--out-mask", str(tmp_path / "m.pt"), "--out-table", str(tmp_path / "m.parquet")]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, worker.ENV_VAR: running_worker.sock})
    assert proc.returncode == 1
    assert "missing.pt" in proc.stderr and "Traceback" in proc.stderr
    assert not (tmp_path / "m.pt").exists()


def test_a_cancelled_client_kills_its_job(running_worker, tmp_path):
    code = ("import time, sys; from prunelib.cli.worker import try_forward; "
            "sys.exit(try_forward(sys.argv[1:]))")
    # a stage that sleeps: `train` on a data file that is a FIFO nobody writes to
    fifo = tmp_path / "data.pt"
    os.mkfifo(fifo)
    contract = contracts.train_contract(settings(), "dense", 1, 0, "mnist")
    args = ["train", "--settings", contract.to_json(), "--init", str(fifo),
            "--mask", str(fifo), "--data", str(fifo), "--out-weights", str(tmp_path / "f.pt"),
            "--out-log", str(tmp_path / "l.parquet")]
    client = subprocess.Popen([PYTHON, "-c", code, *args], env={**os.environ, worker.ENV_VAR: running_worker.sock})
    def jobs():
        return subprocess.run(["pgrep", "-P", str(running_worker.pid)], capture_output=True,
                              text=True).stdout.split()

    def job_opened_the_fifo():
        try:  # succeeds once a reader has the FIFO open (or is opening it)
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK) + 1
        except OSError:
            return 0

    writer = wait_until(job_opened_the_fifo, "the forked job to open its data file") - 1
    try:
        assert len(jobs()) == 1  # the forked job, blocked reading the FIFO
        client.send_signal(signal.SIGKILL)
        client.wait()
        wait_until(lambda: not jobs(), "the worker to kill the job of a cancelled client")
    finally:
        os.close(writer)
    assert not (tmp_path / "f.pt").exists()


def test_no_worker_means_the_command_runs_itself(tmp_path):
    env = {**os.environ, worker.ENV_VAR: str(tmp_path / "nobody-listens.sock")}
    subprocess.run(_init_cmd(tmp_path), check=True, env=env)
    assert (tmp_path / "init.pt").exists()
