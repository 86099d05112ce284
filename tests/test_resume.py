"""Training that survives preemption: a train job and an IMP round killed mid-run
(SIGKILL, SIGTERM, a cancelled worker client) and rerun finish bit-identical on the CPU
to an uninterrupted run; a stale or damaged checkpoint is ignored; the file goes away
once the job completes."""

import dataclasses
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from prunelib import stages
from prunelib.config import contracts

from prunelib.train import resume

from prunelib.cli import worker
from prunelib.foundations.paths import imp_round_files
from prunelib.foundations.artifacts import checksum_path, load_pt, read_parquet_rows

from cells import run_cell, settings
from conftest import HANG_SECONDS, PYTHON, REPO, tensor_dict_digest, wait_until

# ~300 steps of LeNet-300-100 per job: long enough to be killed mid-run, a few seconds in all
S = settings(train={"epochs": 3, "train_subset": 3200, "batch_size": 32},
             iterative={"train_steps": 300, "rewind_fraction": 0.5})
TINY = "0.001"  # minutes between checkpoints (60 ms): several per job


def _train(s=S):
    """A plain train job's contract on MNIST (what every train job here runs)."""
    return contracts.train_contract(s, "dense", 1, 0, "mnist")


@pytest.fixture(scope="module")
def cell(tmp_path_factory, mnist_pt):
    """init + scores + mask of one global-magnitude cell at r = 4, and the final weights
    and log of an uninterrupted train job (the reference)."""
    d = tmp_path_factory.mktemp("cell")
    run_cell(d, mnist_pt, S, "lenet300", "global_magnitude", 4, until="mask", folder=d)
    # the reference runs as the jobs do (a process, one thread): results depend on the thread count
    ref = subprocess.run(_train_cmd(d, mnist_pt, d / "ref"), env=_env("0"), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    return d


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _same_result(a_dir, b_dir, weights="final.pt", log="train_log.parquet"):
    a, b = load_pt(a_dir / weights), load_pt(b_dir / weights)
    assert tensor_dict_digest(a["state_dict"]) == tensor_dict_digest(b["state_dict"])
    la, lb = read_parquet_rows(a_dir / log), read_parquet_rows(b_dir / log)
    for row in la + lb:
        row.pop("seconds")  # the only column that measures time
    assert la == lb and len(la) >= 1


def _train_cmd(cell, mnist_pt, out):
    return [PYTHON, "-m", "prunelib", "train", "--settings", _train().to_json(),
            "--init", str(cell / "init.pt"), "--mask", str(cell / "mask.pt"), "--data", str(mnist_pt),
            "--out-weights", str(out / "final.pt"), "--out-log", str(out / "train_log.parquet")]


def _env(minutes, **extra):
    env = {k: v for k, v in os.environ.items() if k != worker.ENV_VAR}
    return {**env, resume.ENV_VAR: minutes, "PYTHONPATH": str(REPO), **extra}


def _wait_for(path, proc, past=50):
    """Until the job's checkpoint is past step ``past`` (then it is surely mid-run)."""
    def past_step():
        assert proc.poll() is None, "the job finished before it wrote a checkpoint"
        return path.exists() and _position(path) > past

    wait_until(past_step, f"a checkpoint {path} past step {past}", interval=0.005)


def _resumed_step(stderr: str) -> int:
    line = next(ln for ln in stderr.splitlines() if "resuming from" in ln)
    return int(line.rsplit("at step", 1)[1])


def test_a_train_job_killed_with_sigkill_resumes_bit_identical(cell, mnist_pt, tmp_path):
    out = tmp_path / "cell"
    ckpt = resume.checkpoint_path(out / "final.pt")
    proc = subprocess.Popen(_train_cmd(cell, mnist_pt, out), env=_env(TINY), stderr=subprocess.DEVNULL)
    _wait_for(ckpt, proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert ckpt.exists() and not (out / "final.pt").exists()
    rerun = subprocess.run(_train_cmd(cell, mnist_pt, out), env=_env(TINY), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert _resumed_step(rerun.stderr) > 0
    _same_result(out, cell / "ref")
    assert not ckpt.exists() and not checksum_path(ckpt).exists()  # removed once the job completed


def test_sigterm_writes_a_checkpoint_and_stops_with_one_line(cell, mnist_pt, tmp_path):
    """What SLURM sends at the time limit or on preemption (and --signal before it)."""
    out = tmp_path / "cell"
    ckpt = resume.checkpoint_path(out / "final.pt")
    proc = subprocess.Popen(_train_cmd(cell, mnist_pt, out), env=_env(TINY), stderr=subprocess.PIPE, text=True)
    _wait_for(ckpt, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=HANG_SECONDS)
    assert proc.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("prunelib train: stopped by SIGTERM before step") and str(ckpt) in last
    assert ckpt.exists() and not (out / "final.pt").exists()
    # checkpoints turned off for the rerun: the one on disk is still this job's, so it is used
    rerun = subprocess.run(_train_cmd(cell, mnist_pt, out), env=_env("0"), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert _resumed_step(rerun.stderr) > 50
    _same_result(out, cell / "ref")
    assert not ckpt.exists()


def test_a_cancelled_worker_job_checkpoints_before_it_dies(cell, mnist_pt, tmp_path):
    """Through the pre-imported worker the job is a fork the signal cannot reach: the
    worker turns its client's death into SIGTERM, and the job checkpoints and exits."""
    sock = str(tmp_path / "w.sock")
    proc = worker.start(sock, str(tmp_path / "worker.log"), os.getpid())
    assert proc is not None
    try:
        out = tmp_path / "cell"
        ckpt = resume.checkpoint_path(out / "final.pt")
        client = subprocess.Popen(_train_cmd(cell, mnist_pt, out), env=_env(TINY, **{worker.ENV_VAR: sock}),
                                  stderr=subprocess.DEVNULL)
        _wait_for(ckpt, client)
        client.send_signal(signal.SIGKILL)
        client.wait()
        wait_until(lambda: not subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True).stdout,
                   "the worker to end the job of its killed client")
        assert ckpt.exists() and not (out / "final.pt").exists()
        step = resume.read_checkpoint(ckpt)["position"]
    finally:
        worker.stop_started()
    rerun = subprocess.run(_train_cmd(cell, mnist_pt, out), env=_env(TINY), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert _resumed_step(rerun.stderr) >= step > 0
    _same_result(out, cell / "ref")


class _KilledAt(Exception):
    pass


class _KillAt(resume.Checkpointer):
    """Writes exactly one checkpoint, before step ``at``, then 'dies'."""

    def __init__(self, output, key, at):
        super().__init__(output, key, minutes=1.0)
        self.at = at

    def due(self):
        return True

    def save(self, state):
        if state["position"] == self.at:
            super().save(state)
            raise _KilledAt


def test_resume_mid_epoch_in_process_is_bit_identical(cell, mnist_pt, tmp_path, monkeypatch, one_thread):
    """Step 137 is inside epoch 2 (100 steps per epoch): the partial epoch's running sums
    and the optimizer's momentum must come back exactly."""
    monkeypatch.setenv(resume.ENV_VAR, "60")
    train = _train()
    real = resume.for_job

    def killing(output, contract, inputs):
        ck = real(output, contract, inputs)
        return _KillAt(output, ck.key, 137)

    monkeypatch.setattr(resume, "for_job", killing)
    with pytest.raises(_KilledAt):
        stages.run_train(train, cell / "init.pt", cell / "mask.pt", mnist_pt, tmp_path / "final.pt",
                         tmp_path / "train_log.parquet")
    monkeypatch.setattr(resume, "for_job", real)
    assert resume.read_checkpoint(resume.checkpoint_path(tmp_path / "final.pt"))["partial"]["seen"] == 37 * 32
    stages.run_train(train, cell / "init.pt", cell / "mask.pt", mnist_pt, tmp_path / "final.pt",
                     tmp_path / "train_log.parquet")
    _same_result(tmp_path, cell / "ref")


def test_a_stale_or_damaged_checkpoint_is_ignored(cell, mnist_pt, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv(resume.ENV_VAR, "60")
    out = tmp_path / "final.pt"
    ckpt = resume.checkpoint_path(out)
    other = dataclasses.replace(S, train=dataclasses.replace(S.train, lr=0.01))
    key = resume.job_key(_train(other), {})
    # a checkpoint of other settings, full of garbage weights: resuming it would show
    resume.Checkpointer(out, {**key, "positions": [0, 300]}, 1).save(
        {"position": 299, "rows": [], "model": {}, "optimizer": {}, "rng": {}, "snapshots": {}, "partial": None})
    stages.run_train(_train(), cell / "init.pt", cell / "mask.pt", mnist_pt, out,
                     tmp_path / "train_log.parquet")
    _same_result(tmp_path, cell / "ref")
    assert not ckpt.exists()
    # damaged: a flipped byte fails its checksum; training starts over, correctly
    resume.Checkpointer(out, resume.job_key(_train(), {}), 1).save({"position": 5})
    with open(ckpt, "r+b") as fh:
        fh.seek(140)
        b = fh.read(1)
        fh.seek(40)
        fh.write(bytes([b[0] ^ 0xFF]))
    stages.run_train(_train(), cell / "init.pt", cell / "mask.pt", mnist_pt, out,
                     tmp_path / "train_log.parquet")
    _same_result(tmp_path, cell / "ref")


def test_the_interval_is_in_no_settings_hash(monkeypatch):
    a = _train()
    b = _train(dataclasses.replace(S, train=dataclasses.replace(S.train, checkpoint_minutes=1)))
    assert a.to_dict() == b.to_dict() and a.hash() == b.hash() and "checkpoint_minutes" not in a.to_dict()["train"]
    assert resume.job_key(a, {}) == resume.job_key(b, {})
    # the contract still carries it, for a job run without the environment variable
    monkeypatch.delenv(resume.ENV_VAR, raising=False)
    assert resume.interval_minutes(b) == 1 and resume.interval_minutes(a) == S.train.checkpoint_minutes


def test_a_bad_interval_is_one_line(monkeypatch):
    from prunelib.foundations.errors import PrunelibError

    monkeypatch.setenv(resume.ENV_VAR, "soon")
    with pytest.raises(PrunelibError, match=r"PRUNELIB_CHECKPOINT_MINUTES = 'soon' is not a number; allowed"):
        resume.interval_minutes(_train())


# --- one IMP round ---------------------------------------------------------------------

def _round_cmd(cell, mnist_pt, out):
    contract = contracts.imp_round_contract(S, "lth_rewind", 0, "mnist", 0)
    return [PYTHON, "-m", "prunelib", "imp-round", "--settings", contract.to_json(), "--init",
            str(cell / "init.pt"), "--data", str(mnist_pt), "--out-dir", str(out)]


@pytest.fixture(scope="module")
def round0(cell, mnist_pt, tmp_path_factory):
    """Round 0 of an lth_rewind chain, uninterrupted (the reference)."""
    out = tmp_path_factory.mktemp("chain") / "round0"
    ref = subprocess.run(_round_cmd(cell, mnist_pt, out), env=_env("0"), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    return out


def test_an_imp_round_killed_after_its_rewind_step_resumes_bit_identical(cell, mnist_pt, round0, tmp_path):
    """Round 0 of lth_rewind keeps the weights at step 150 of 300 (rewind.pt): killed
    after that, the snapshot must come back from the checkpoint."""
    out = tmp_path / "round0"
    ckpt = resume.checkpoint_path(out / "weights.pt")
    proc = subprocess.Popen(_round_cmd(cell, mnist_pt, out), env=_env(TINY), stderr=subprocess.DEVNULL)
    _wait_for(ckpt, proc, past=160)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "weights.pt").exists()
    rerun = subprocess.run(_round_cmd(cell, mnist_pt, out), env=_env(TINY), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert _resumed_step(rerun.stderr) > 150
    for name in ("weights.pt", "rewind.pt", "mask.pt"):
        key = "masks" if name == "mask.pt" else "state_dict"
        assert tensor_dict_digest(load_pt(out / name)[key]) == tensor_dict_digest(load_pt(round0 / name)[key])
    _same_result(out, round0, weights="weights.pt")
    assert not ckpt.exists()


def test_a_pruning_round_resumed_mid_retraining_is_bit_identical(round0, mnist_pt, tmp_path, monkeypatch,
                                                                 one_thread):
    """Round 1 (prune to 80 %, rewind to step 150, retrain steps 150..300) 'killed' before
    step 222 and rerun, against the same round uninterrupted."""
    monkeypatch.setenv(resume.ENV_VAR, "60")
    contract = contracts.imp_round_contract(S, "lth_rewind", 0, "mnist", 1)

    def round1(out):
        stages.run_imp_round(contract, mnist_pt, imp_round_files(out), prev_weights=round0 / "weights.pt",
                             prev_mask=round0 / "mask.pt", rewind_path=round0 / "rewind.pt")

    round1(tmp_path / "ref")
    real = resume.for_job
    monkeypatch.setattr(resume, "for_job", lambda o, st, i: _KillAt(o, real(o, st, i).key, 222))
    with pytest.raises(_KilledAt):
        round1(tmp_path / "round1")
    monkeypatch.setattr(resume, "for_job", real)
    assert not (tmp_path / "round1" / "weights.pt").exists()
    round1(tmp_path / "round1")
    for name, key in (("weights.pt", "state_dict"), ("mask.pt", "masks")):
        assert tensor_dict_digest(load_pt(tmp_path / "round1" / name)[key]) == \
            tensor_dict_digest(load_pt(tmp_path / "ref" / name)[key])
    _same_result(tmp_path / "round1", tmp_path / "ref", weights="weights.pt")
    assert load_pt(tmp_path / "round1" / "weights.pt")["meta"]["inputs"]["rewind"]["sha256"] == \
        load_pt(tmp_path / "ref" / "weights.pt")["meta"]["inputs"]["rewind"]["sha256"]


def _position(ckpt) -> int:
    try:
        return resume.read_checkpoint(ckpt)["position"]
    except Exception:  # noqa: BLE001 - being replaced right now
        return -1


# --- through Snakemake ------------------------------------------------------------------

@pytest.mark.e2e
def test_a_snakemake_run_killed_mid_training_resumes_with_rerun_incomplete(tmp_path, mnist_root, snakemake_bin):
    """kill -9 on Snakemake's whole process group (a node failure): the job's worker fork
    checkpoints on its client's death, Snakemake's rerun (--rerun-incomplete) deletes the
    train job's outputs but not the checkpoint, and the job finishes bit-identical."""
    import yaml

    from conftest import run

    target = "results/mnist/lenet300/seed0/global_magnitude/r4/final.pt"
    dirs = {}
    for name, minutes in (("ref", 0), ("killed", float(TINY))):
        wd = dirs[name] = tmp_path / name
        wd.mkdir()
        (wd / "config.yaml").write_text(yaml.safe_dump({
            "preset": "fast", "data_dir": str(mnist_root),
            "grid": {"archs": ["lenet300"], "datasets": ["mnist"], "methods": ["global_magnitude"],
                     "ratios": [4], "seeds": [0]},
            "train": {"epochs": 3, "train_subset": 6400, "batch_size": 32, "checkpoint_minutes": minutes}}))
    base = [snakemake_bin, "-s", REPO / "Snakefile", "--cores", "1"]
    run(base + ["--directory", dirs["ref"], target])
    wd = dirs["killed"]
    ckpt = wd / (target + resume.SUFFIX)
    proc = subprocess.Popen([str(c) for c in base + ["--directory", wd, target]], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(ckpt, proc, past=100)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # the worker (its own session) outlives Snakemake: its fork saves on SIGTERM and exits,
    # then the worker, its parent gone, exits too; both carry the socket's name in argv
    socket_name = f"prunelib-worker-{proc.pid}.sock"
    wait_until(lambda: not subprocess.run(["pgrep", "-f", socket_name], capture_output=True).stdout,
               "the worker and its job to exit after Snakemake was killed")
    assert ckpt.exists() and not (wd / target).exists()
    run(base + ["--directory", wd, "--unlock"])
    run(base + ["--directory", wd, "--rerun-incomplete", target])
    log = (wd / "results/logs/train/mnist/lenet300/seed0/global_magnitude/r4.log").read_text()
    assert "resuming from" in log
    _same_result(wd / Path(target).parent, dirs["ref"] / Path(target).parent)
    assert not ckpt.exists()
