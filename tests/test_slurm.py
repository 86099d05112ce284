"""The SLURM profile on a real SLURM (tests/slurm_cluster.py: slurmctld, slurmd, munge,
one node with this machine's CPUs and memory, no accounting, no GPU).

Every run goes through ``workflow/profiles/slurm`` as shipped, with what a site fills in
given by a small overlay (``site_profile``): the partition, and the profile's own advice
for a cluster without accounting (``slurm-status-command: squeue``, no account); the GPU
requests dropped (this node has none); the first status check after 2 s instead of 40
(MinJobAge 300 >= 3 x 2).  What each test changes beyond that, it says.

* a small grid completes, in far fewer submissions than jobs, and its eval rows equal a
  local run's (``prunelib audit rows``: timing and provenance aside);
* a train job that reaches its time limit (6 minutes: the profile's ``--signal=TERM@300``
  arrives 30 to 60 s in) writes its checkpoint, is retried, resumes at the step it stopped
  at, and ends bit-identical to an uninterrupted run;
* ``scontrol requeue`` of a running train job: the same job id starts again, resumes,
  and ends bit-identical;
* ``scancel`` of one cell's submission fails that cell only (keep-going);
* before any submission, the run refuses a group bigger than the node, GPU requests on
  a node without GPUs, a group sent to two partitions and a status command the cluster
  cannot answer, with one line naming the key to change.

The Snakemake runs of the first four go at once (``runs``): the node has 2 CPUs, and
most of each run is waiting (for the scheduler, the status checks, a time limit).
Waits are on events (squeue states, files, log lines), bounded only against a hang.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import PYTHON, REPO, SNAKEMAKE, run, tensor_dict_digest
from slurm_cluster import HANG_SECONDS, slurm_cluster  # noqa: F401 (the fixture)

pytestmark = pytest.mark.e2e

PROFILE = REPO / "workflow/profiles/slurm/config.yaml"
#: A run's upper bound (a hang, never a slow machine: the slowest takes ~2-4 min).
RUN_SECONDS = 900

#: The grid run: 2 cells travel in one submission.
GRID = {"archs": ["lenet300"], "datasets": ["mnist"], "methods": ["snip"], "ratios": [1, 4], "seeds": [0]}
#: The preempted cells: LeNet-300-100's dense control on MNIST, trained for a number of
#: seconds of one core (steps measured on this machine, so as long on any machine):
#: the time-limit test's for longer than its signal can take to come (60 s in), the
#: requeue test's for long enough to be requeued after its second epoch.
ONE = {"archs": ["lenet300"], "datasets": ["mnist"], "methods": ["snip"], "ratios": [1], "seeds": [0]}
LONG_SECONDS, SHORT_SECONDS = 60, 15
CELL = "results/mnist/lenet300/seed0/dense/r1"
CELL_LOG = "results/logs/train/mnist/lenet300/seed0/dense/r1.log"
#: The scancel run: 2 cells (their inits and one's mask already made), each in a submission of its own.
CANCEL = {**ONE, "seeds": [0, 1]}


def seconds_per_step(prepared: Path) -> float:
    """Of LeNet-300-100 training (batch 128) on one core of this machine."""
    import torch

    from prunelib.config.settings import TrainSettings
    from prunelib.data.datasets import load_prepared
    from prunelib.nets import models
    from prunelib.train.loop import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        started = time.perf_counter()
        train(models.build("lenet300", 10, 1, 28), {}, load_prepared(prepared), "mnist", TrainSettings(steps=300),
              0, torch.device("cpu"))
        return (time.perf_counter() - started) / 300
    finally:
        torch.set_num_threads(threads)


def config(grid: dict, data_dir, **train) -> str:
    return yaml.safe_dump({"preset": "fast", "device": "cpu", "data_dir": str(data_dir), "grid": grid,
                           "train": train})


def site_profile(folder: Path, cluster, gpus: bool = False, **changes) -> Path:
    """The shipped SLURM profile, filled in for the test cluster (see the module
    docstring; ``gpus``: keep its GPU requests); ``changes`` set further keys (None
    removes one).  Returns its folder."""
    prof = yaml.safe_load(PROFILE.read_text())
    resources = prof["default-resources"]
    resources.pop("slurm_account")
    resources["slurm_partition"] = cluster.partition
    prof["slurm-status-command"] = "squeue"
    prof["slurm-no-account"] = True
    gpu_free = {rule: {k: v for k, v in res.items() if gpus or k not in ("gpu", "gpu_model")}
                for rule, res in prof.get("set-resources", {}).items()}
    prof["set-resources"] = {rule: res for rule, res in gpu_free.items() if res}
    if not prof["set-resources"]:
        del prof["set-resources"]
    prof["slurm-init-seconds-before-status-checks"] = 2
    for key, value in changes.items():
        if value is None:
            prof.pop(key, None)
        else:
            prof[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    return folder


def smk(workdir: Path, *args) -> list[str]:
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *map(str, args)]


class Run:
    """A Snakemake run in the background, its output in ``<workdir>/snakemake.out``."""

    def __init__(self, workdir: Path, argv: list[str], env: dict):
        self.workdir = workdir
        self.out = workdir / "snakemake.out"
        self.started = time.monotonic()
        self.seconds: float | None = None
        with open(self.out, "w") as fh:
            self.proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL)
        threading.Thread(target=self._reap, daemon=True).start()

    def _reap(self) -> None:
        self.proc.wait()
        self.seconds = time.monotonic() - self.started

    def text(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def run_id(self) -> str | None:
        """The executor's SLURM run id: the job name of every submission of this run."""
        m = re.search(r"SLURM run ID: (\S+)", self.text())
        return m.group(1) if m else None

    def wait(self) -> "Run":
        try:
            self.proc.wait(timeout=max(1.0, RUN_SECONDS - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"snakemake in {self.workdir} hung for {RUN_SECONDS} s:\n{self.text()[-4000:]}")
        return self

    @property
    def returncode(self) -> int:
        return self.wait().proc.returncode


class Watcher(threading.Thread):
    """Does one thing to a run's job when an event comes (``act``) and keeps what it saw;
    an exception is kept for the test to raise."""

    def __init__(self, act):
        super().__init__(daemon=True)
        self.act, self.seen, self.error = act, {}, None

    def run(self):
        try:
            self.act(self.seen)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            self.error = exc

    def result(self) -> dict:
        self.join(timeout=RUN_SECONDS)
        if self.error is not None:
            raise self.error
        return self.seen


def _job_of(cluster, r: Run, states: str, comment: str | None = None) -> dict | None:
    run_id = r.run_id()
    if run_id is None:
        return None
    jobs = [j for j in cluster.jobs(states=states, name=run_id) if comment is None or j["comment"] == comment]
    return jobs[0] if jobs else None


@pytest.fixture(scope="module")
def runs(slurm_cluster, mnist_root, tmp_path_factory):  # noqa: F811 (the fixture)
    """Start every run at once (the grid's chain of three submissions and the time-limit
    run, the longest, first); each test waits for its own."""
    cluster = slurm_cluster
    root = tmp_path_factory.mktemp("slurm_runs")
    env = {**cluster.env, "PYTHONPATH": str(REPO)}
    out = {}

    def workdir(name: str, grid: dict, seed: Path, cells: bool = True, **train) -> Path:
        """A run's folder: a copy of ``seed`` (its results and Snakemake's records of them,
        so that nothing done there is redone; without ``cells``, MNIST only) with its own
        config."""
        shutil.copytree(seed, root / name, symlinks=True)
        if not cells:
            shutil.rmtree(root / name / "results/mnist")
        (root / name / "config.yaml").write_text(config(grid, mnist_root, **train))
        return root / name

    # Made once, locally: MNIST prepared, and the init and mask of one cell, which is
    # then trained long (b) and short (c), each on SLURM and, uninterrupted, locally,
    # and of the scancel run's first cell (d)
    first = root / "reference_long"
    first.mkdir()
    (first / "config.yaml").write_text(config(ONE, mnist_root))
    run(smk(first, "--cores", "2", "results/data/mnist.pt", f"{CELL}/mask.pt",
            "results/mnist/lenet300/seed1/init_pytorch_default.pt"), env=env)
    per_step = seconds_per_step(first / "results/data/mnist.pt")  # (before anything else runs)
    steps = out["steps"] = {"long": int(LONG_SECONDS / per_step), "short": int(SHORT_SECONDS / per_step)}
    (first / "config.yaml").write_text(config(ONE, mnist_root, steps=steps["long"]))
    for name, length in (("timelimit", "long"), ("reference_short", "short"), ("requeue", "short")):
        workdir(name, ONE, first, steps=steps[length])
    for name in ("grid", "grid_local"):
        workdir(name, GRID, first, cells=False, train_subset=1000)
    workdir("cancel", CANCEL, first, train_subset=1000)

    # (a) the grid, on SLURM and locally (first: its chain of three submissions is the
    # longest; the node runs two jobs at a time, and a job that waits in the queue has
    # its status checked ever less often, the plugin adding 10 s per check)
    out["grid"] = Run(root / "grid", smk(root / "grid", "--profile", site_profile(root / "p_grid", cluster)), env)
    # a 6-minute limit on the first attempt: the profile's --signal=TERM@300 comes 30-60 s
    # in (SLURM checks every 30 s); the retry gets 30 minutes, longer than the rest takes
    out["timelimit"] = Run(root / "timelimit", smk(
        root / "timelimit", "--profile",
        site_profile(root / "p_timelimit", cluster, **{"set-resources": {
            "train": {"runtime": "6 if attempt == 1 else 30"}}}),
        f"{CELL}/final.pt"), env)
    cluster.wait_for(lambda: _job_of(cluster, out["timelimit"], "RUNNING"), "the time-limit run's job running",
                     timeout=RUN_SECONDS)
    out["requeue"] = Run(root / "requeue", smk(root / "requeue", "--profile", site_profile(root / "p_requeue", cluster),
                                               f"{CELL}/final.pt"), env)
    # (at the lowest priority: they must finish, but the cluster's jobs are the ones timed)
    for name in ("reference_long", "reference_short"):
        out[name] = Run(root / name, ["nice", "-n", "19"] + smk(root / name, "--cores", "1", f"{CELL}/final.pt"), env)
    out["grid_local"] = Run(root / "grid_local", ["nice", "-n", "19"] + smk(root / "grid_local", "--cores", "2"), env)

    def requeue(seen):
        r = out["requeue"]
        job = cluster.wait_for(lambda: _job_of(cluster, r, "RUNNING"), "the requeue run's train job running",
                               timeout=RUN_SECONDS)
        log = r.workdir / CELL_LOG
        # two epochs logged: training is well under way (and no checkpoint written yet:
        # the interval is 5 min, so the one resumed is the one the requeue's SIGTERM wrote)
        cluster.wait_for(lambda: log.exists() and log.read_text().count("] epoch ") >= 2,
                         "two epochs in the requeued job's log", timeout=RUN_SECONDS)
        seen["ckpt_before"] = (r.workdir / CELL / "final.pt.ckpt").exists()
        cluster.command(["scontrol", "requeue", job["id"]])
        seen["job"] = job["id"]
        seen["restarts"] = cluster.wait_for(lambda: int(cluster.job(job["id"]).get("Restarts", 0)),
                                            "the requeued job counted a restart", timeout=RUN_SECONDS)

    out["requeue_watch"] = Watcher(requeue)
    out["requeue_watch"].start()

    # (d) two cells, one submission each, no retries: one cancelled while it runs
    out["cancel"] = Run(root / "cancel", smk(
        root / "cancel", "--profile",
        site_profile(root / "p_cancel", cluster, retries=0, **{"group-components": {"cell": 1}})), env)

    def cancel(seen):
        r = out["cancel"]
        job = cluster.wait_for(lambda: _job_of(cluster, r, "RUNNING", "rule_cell_eval_mask_train"),
                               "a cell submission of the cancel run running", timeout=RUN_SECONDS)
        cluster.command(["scancel", job["id"]])
        seen["job"] = job["id"]

    out["cancel_watch"] = Watcher(cancel)
    out["cancel_watch"].start()
    yield out
    for name, r in out.items():
        if isinstance(r, Run):
            if r.proc.poll() is None:
                r.proc.kill()
            print(f"\n[slurm runs] {name}: {r.seconds or float('nan'):.0f} s", end="")
    print()


# --- (a) ---------------------------------------------------------------------------------

def test_a_grid_completes_in_few_submissions_and_its_rows_equal_a_local_runs(runs, slurm_cluster):  # noqa: F811
    r, local = runs["grid"], runs["grid_local"]
    assert r.returncode == 0, r.text()[-4000:]
    assert local.returncode == 0, local.text()[-4000:]
    compare = run([PYTHON, "-m", "prunelib", "audit", "rows", r.workdir / "results/all.parquet",
                   local.workdir / "results/all.parquet"], check=False)
    assert compare.returncode == 0, compare.stdout + compare.stderr
    assert "rows only in A: 0, only in B: 0" in compare.stdout and ": identical" in compare.stdout
    # init, score, and the 2 cells' mask, train and eval in one submission of 1 CPU (`cores: 1`)
    jobs = slurm_cluster.jobs(name=r.run_id())
    assert sorted(j["comment"] for j in jobs) == ["rule_cell_eval_mask_train", "rule_init_wildcards_mnist_lenet300_0"
                                                  "_pytorch_default", "rule_measure",
                                                  "rule_score_wildcards_mnist_lenet300_0_snip"]
    assert all(j["state"] == "COMPLETED" for j in jobs)
    group = next(j for j in jobs if j["comment"].startswith("rule_cell"))
    assert group["cpus"] == "1" and group["memory"] == "2000M"
    assert group["time_limit"] == "1:10:00"  # 2 x (mask 10 + train 15 + eval 10) min, in turn


# --- (b) ---------------------------------------------------------------------------------

def _digest(path: Path) -> str:
    import torch

    return tensor_dict_digest(torch.load(path, map_location="cpu", weights_only=False)["state_dict"])


def _stopped_at(text: str) -> int:
    m = re.search(r"prunelib train: stopped by SIGTERM before step (\d+) of 0\.\.\d+; checkpoint written to "
                  r"(\S+);", text)
    assert m, "no line saying the job stopped on SIGTERM with its checkpoint written"
    assert m.group(2).endswith("final.pt.ckpt")
    return int(m.group(1))


def _resumed_at(text: str) -> int:
    m = re.search(r"resuming from (\S+) at step (\d+)", text)
    assert m, "no line saying the job resumed from its checkpoint"
    return int(m.group(2))


def test_a_train_job_at_its_time_limit_checkpoints_is_retried_and_resumes_bit_identical(runs, slurm_cluster):  # noqa
    r, ref = runs["timelimit"], runs["reference_long"]
    assert ref.returncode == 0, ref.text()[-4000:]
    assert r.returncode == 0, r.text()[-4000:]
    jobs = sorted(slurm_cluster.jobs(name=r.run_id()), key=lambda j: int(j["id"]))
    assert [j["time_limit"] for j in jobs] == ["6:00", "30:00"]  # the retry: attempt 2
    assert [j["state"] for j in jobs] == ["FAILED", "COMPLETED"]
    first_log = r.workdir / ".snakemake/slurm_logs/group_cell_train" / f"{jobs[0]['id']}.log"
    stopped = _stopped_at(first_log.read_text())  # (a failed job's SLURM log is kept)
    main = r.text()
    assert "Error in group cell" in main and str(first_log) in main  # the failure names its log
    assert "Trying to restart job" in main
    resumed = _resumed_at((r.workdir / CELL_LOG).read_text())
    assert 0 < stopped == resumed < runs["steps"]["long"]  # mid-run, and exactly where it stopped
    assert not (r.workdir / CELL / "final.pt.ckpt").exists()  # removed once the job completed
    assert _digest(r.workdir / CELL / "final.pt") == _digest(ref.workdir / CELL / "final.pt")
    print(f"\n[time limit] attempt 1, SLURM job {jobs[0]['id']} (limit {jobs[0]['time_limit']}): "
          f"stopped by SIGTERM before step {stopped}, checkpoint written; "
          f"retried as SLURM job {jobs[1]['id']} (limit {jobs[1]['time_limit']}): resumed at step {resumed}; "
          f"final weights' digest equals the uninterrupted run's: {_digest(ref.workdir / CELL / 'final.pt')}")


# --- (c) ---------------------------------------------------------------------------------

def test_a_requeued_train_job_resumes_bit_identical(runs, slurm_cluster):  # noqa: F811
    r, ref = runs["requeue"], runs["reference_short"]
    seen = runs["requeue_watch"].result()
    assert r.returncode == 0, r.text()[-4000:]
    assert ref.returncode == 0, ref.text()[-4000:]
    assert not seen["ckpt_before"]
    assert seen["restarts"] == 1
    jobs = slurm_cluster.jobs(name=r.run_id())
    assert [(j["id"], j["state"]) for j in jobs] == [(seen["job"], "COMPLETED")]  # one job, run twice
    resumed = _resumed_at((r.workdir / CELL_LOG).read_text())
    assert 0 < resumed < runs["steps"]["short"]
    assert "Trying to restart job" not in r.text()  # SLURM restarted it, not Snakemake
    assert _digest(r.workdir / CELL / "final.pt") == _digest(ref.workdir / CELL / "final.pt")


# --- (d) ---------------------------------------------------------------------------------

def test_scancel_of_one_submission_fails_only_its_cell(runs, slurm_cluster):  # noqa: F811
    r = runs["cancel"]
    seen = runs["cancel_watch"].result()
    assert r.returncode != 0
    text = r.text()
    assert [j["state"] for j in slurm_cluster.jobs(name=r.run_id()) if j["id"] == seen["job"]] == ["CANCELLED"]
    assert "Error in group cell" in text and f"group_cell_eval_mask_train/{seen['job']}.log" in text, text[-4000:]
    done = sorted(str(p.parent.relative_to(r.workdir)) for p in r.workdir.glob("results/mnist/**/eval.parquet"))
    cells = {"results/mnist/lenet300/seed0/dense/r1", "results/mnist/lenet300/seed1/dense/r1"}
    assert len(done) == 1 and set(done) < cells
    (failed,) = cells - set(done)
    # the failed cell's logs are named; its checkpoint (if training had begun) is left for a rerun
    cell_id = failed.removeprefix("results/")
    assert re.search(rf"results/logs/(mask|train|eval)/{re.escape(cell_id)}\.log", text)


# --- before any submission ----------------------------------------------------------------------

def _refused(cluster, folder: Path, mnist_root, grid: dict, gpus: bool = False, **changes) -> tuple[str, str | None]:
    folder.mkdir()
    (folder / "config.yaml").write_text(config(grid, mnist_root, train_subset=1000))
    out = run(smk(folder, "--profile", site_profile(folder / "profile", cluster, gpus, **changes)),
              env={**cluster.env, "PYTHONPATH": str(REPO)}, check=False, timeout=HANG_SECONDS)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text[-3000:]
    run_id = re.search(r"SLURM run ID: (\S+)", text)
    assert run_id and cluster.jobs(name=run_id.group(1)) == []  # nothing was submitted
    return text, run_id.group(1)


def test_a_group_bigger_than_any_node_is_refused_before_submission(slurm_cluster, mnist_root, tmp_path):  # noqa
    """The first user's surprise: 3 cells per submission, no `cores` -> 3 CPUs on a 2-CPU
    node, which SLURM would keep PENDING (PartitionConfig) for ever."""
    cluster = slurm_cluster
    n = cluster.cpus + 1  # cells, each its dense control (mask, train, eval: 1 CPU, 2000 MB each)
    grid = {**GRID, "ratios": [1], "seeds": list(range(n))}
    text, _ = _refused(cluster, tmp_path / "big", mnist_root, grid, cores=None, **{"group-components": {"cell": n}})
    line = next(ln for ln in text.splitlines() if ln.startswith("prunelib: "))
    assert line == (f"prunelib: a 'cell' group submission ({3 * n} jobs: eval, mask, train) asks for {n} CPUs, "
                    f"{2000 * n} MB, more than any node of partition '{cluster.partition}' offers (largest: "
                    f"{cluster.node}, {cluster.cpus} CPUs, {cluster.memory_mb} MB); it would wait in the queue "
                    "for ever: set `cores:` in the profile to the config's `threads` (Snakemake then runs a "
                    "group's jobs in turn and asks for one job's CPUs, memory and GPU), or lower "
                    "`group-components`")


def test_a_cluster_without_accounting_needs_the_squeue_status_command(slurm_cluster, mnist_root, tmp_path):  # noqa
    """The profile as shipped asks sacct (the plugin's default), which this cluster cannot
    answer: the run says what to set instead of waiting for ever."""
    text, _ = _refused(slurm_cluster, tmp_path / "acct", mnist_root, GRID,
                       **{"slurm-status-command": None, "slurm-no-account": None})
    assert ("prunelib: this cluster keeps no job accounting (sacct: Slurm accounting storage is disabled), so "
            "the executor cannot see jobs finish and the run would wait for ever: set `slurm-status-command: "
            "squeue` (and `slurm-no-account: true`) in the profile") in text


def test_gpu_requests_where_no_node_has_a_gpu_are_refused_before_submission(slurm_cluster, mnist_root,
                                                                            tmp_path):  # noqa: F811
    """The profile's GPU lines, kept on this CPU-only node: sbatch would refuse them one
    job at a time; the run names each kind of submission at once."""
    cluster = slurm_cluster
    text, _ = _refused(cluster, tmp_path / "gpu", mnist_root, GRID, gpus=True)
    lines = [ln for ln in text.splitlines() if ln.startswith("prunelib: ")]
    offer = f"more than any node of partition '{cluster.partition}' offers (largest: {cluster.node}, " \
            f"{cluster.cpus} CPUs, {cluster.memory_mb} MB)"
    assert sorted(lines) == [
        f"prunelib: a 'cell' group submission (6 jobs: eval, mask, train) asks for 1 CPU, 2000 MB, 1 GPU, {offer}; "
        "it would wait in the queue for ever: lower the rule's resources in the profile's `set-resources`, or "
        "choose another `slurm_partition`",
        f"prunelib: rule score asks for 1 CPU, 2000 MB, 1 GPU, {offer}; it would wait in the queue for ever: lower "
        "the rule's resources in the profile's `set-resources`, or choose another `slurm_partition`"]


def test_grouped_jobs_that_disagree_on_the_partition_are_named_before_submission(slurm_cluster, mnist_root,
                                                                                   tmp_path):  # noqa: F811
    """Training alone sent to another partition: mask, train and eval share a submission,
    which can go to one partition only; the run says so in one line, not a traceback."""
    text, _ = _refused(slurm_cluster, tmp_path / "partition", mnist_root, GRID,
                       **{"set-resources": {"train": {"slurm_partition": "gpu"}}})
    lines = [ln for ln in text.splitlines() if ln.startswith("prunelib: ")]
    assert len(lines) == 1 and "Traceback" not in text
    assert lines[0].startswith("prunelib: a 'cell' group submission (6 jobs: eval, mask, train): ")
    assert "slurm_partition is a string but not all jobs in group require the same value" in lines[0]
