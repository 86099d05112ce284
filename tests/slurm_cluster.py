"""A real single-node SLURM for the tests: Debian's slurmctld, slurmd and munge (22.05),
started as plain processes from a private configuration in a temporary folder.

Why a real one: the SLURM profile's promises (accounting-free status queries, the
``--signal`` before the time limit, retries, requeue, cancellation) are the scheduler's
behaviour, which no fake reproduces.  Why this way: no systemd, no accounting daemon, no
cgroups, nothing written outside the folder, so it starts in seconds on a development
machine or a CI container, beside any system SLURM (own ports, own munge socket, and
``SLURM_CONF`` in the environment of every command and job).

``slurm_cluster`` (a session fixture) writes ``slurm.conf`` for this machine (its CPUs,
sockets, cores and memory as ``slurmd -C`` detects them, so the node never drains for a
mismatch), starts ``munged``, ``slurmctld`` and ``slurmd``, waits until ``sinfo`` shows
the node idle, and on teardown cancels the jobs left, then stops exactly the processes it
started.  Without root or without the packages (``make setup`` installs them as root on
Debian) every test that uses it skips with one line saying why.

Waits poll the real state (node state, job states, files) and give up only after a
generous bound, with the daemons' log tails in the message: a bound that fires means a
real hang, never a slow machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: Where Debian puts the daemons (not on a non-root PATH).
SBIN = ("/usr/sbin", "/sbin")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sinfo", "squeue", "sbatch", "scontrol", "scancel", "srun")
PARTITION = "debug"
NODE = "node1"
#: Seconds the cluster keeps a finished job where ``squeue`` shows it.  The profile's
#: status command on a cluster without accounting is ``squeue``, which sees a job only
#: while the controller keeps it: shorter than the executor's longest status interval
#: (180 s) and a finished job could vanish before Snakemake learns how it ended (and the
#: plugin falls back to ``sacct`` below 3 x its first status interval).  300 is SLURM's
#: default.
MIN_JOB_AGE = 300
#: Seconds between SIGTERM and SIGKILL at the time limit (SLURM's default: 30).
KILL_WAIT = 30
#: Seconds a job credential lives, and so a requeued job waits (SLURM: 120; at least 5).
CRED_EXPIRE = 10
#: Upper bound of any wait on the cluster: fires only on a real hang.
HANG_SECONDS = 180.0


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


def why_unavailable() -> str | None:
    """One line saying why a real SLURM cannot run here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"real-SLURM tests need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "real-SLURM tests need root (slurmd starts jobs as their user; run make test as root)"
    missing = [b for b in DAEMONS + CLIENTS if _which(b) is None]
    if missing:
        return (f"real-SLURM tests: {' '.join(missing)} not installed "
                "(make setup installs Debian's slurmctld slurmd slurm-client munge when run as root)")
    return None


def machine() -> dict:
    """This machine as slurmd sees it (``slurmd -C``): CPUs, Boards, SocketsPerBoard,
    CoresPerSocket, ThreadsPerCore, RealMemory (MB)."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    fields = dict(re.findall(r"(\w+)=(\S+)", out.splitlines()[0]))
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    return {k: int(fields[k]) for k in keys}


def _state(pid: int) -> str:
    try:
        return next((ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("State:")),
                    "").lower()
    except OSError:
        return "zombie"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """A started single-node cluster: its configuration, environment and helpers."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.conf = self.folder / "slurm.conf"
        self.node = NODE
        self.partition = PARTITION
        self.hw = machine()
        self.cpus = self.hw["CPUs"]
        self.memory_mb = self.hw["RealMemory"]
        self.munge_socket = self.folder / "munge" / "munge.socket"
        self.shims = self.folder / "bin"
        self.procs: dict[str, subprocess.Popen] = {}
        #: The environment every SLURM command, Snakemake run and job of a test uses.
        self.env = {**os.environ, "SLURM_CONF": str(self.conf),
                    "PATH": os.pathsep.join([str(self.shims), os.environ.get("PATH", ""), *SBIN])}
        for var in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
            if var != "SLURM_CONF":  # a developer's own SLURM job must not leak into these
                del self.env[var]

    # --- configuration -------------------------------------------------------------------

    def config_text(self) -> str:
        d = self.folder
        host = socket.gethostname().split(".")[0]
        hw = " ".join(f"{k}={v}" for k, v in self.hw.items())
        return "\n".join([
            "# Written by tests/slurm_cluster.py: one node, no accounting, no cgroups.",
            "ClusterName=prunelibtest",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            # root runs everything: the folder is root's, and jobs run as the test's user (root)
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # cred_expire: a requeued job waits this long (+1 s) before it may start again
            # (SLURM's default: 120 s, which would make a requeue test wait two minutes)
            f"AuthInfo=socket={self.munge_socket},cred_expire={CRED_EXPIRE}",
            f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool'}",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'slurmd.pid'}",
            f"SlurmctldLogFile={d / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'slurmd.log'}",
            # processes tracked by parentage, no task binding: neither needs cgroups or systemd
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            # no accounting (as many small sites): sacct does not work, squeue must do
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            # cores and memory are consumable, so two 1-CPU jobs share the node and a job
            # asking for more than it has is refused, as on a real cluster
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "SchedulerType=sched/backfill",
            # a job that becomes eligible later (a requeued one) starts within seconds, not
            # at the next of SLURM's default 60 s scheduling passes
            "SchedulerParameters=sched_interval=2,bf_interval=2",
            "MpiDefault=none",
            f"MinJobAge={MIN_JOB_AGE}",
            f"KillWait={KILL_WAIT}",
            # a node back from a restart is usable at once; a dead slurmd is noticed soon
            "ReturnToService=2",
            "SlurmdTimeout=30",
            "SlurmctldTimeout=30",
            "InactiveLimit=0",
            f"NodeName={self.node} NodeHostname={host} NodeAddr=127.0.0.1 {hw} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ])

    def _write_srun_shim(self) -> None:
        """``srun`` that finds this cluster's configuration.  The executor plugin's job
        step (snakemake-executor-plugin-slurm-jobstep 0.6) starts each rule with an
        ``srun`` whose environment it strips of every ``SLURM_*`` variable but the job's
        identity, ``SLURM_CONF`` included, so that srun would look for the compiled-in
        /etc/slurm/slurm.conf (a real site's configuration lives there; this one must not)."""
        self.shims.mkdir(parents=True, exist_ok=True)
        shim = self.shims / "srun"
        shim.write_text(f"#!/bin/sh\nSLURM_CONF={self.conf}\nexport SLURM_CONF\nexec {_which('srun')} \"$@\"\n")
        shim.chmod(0o755)

    # --- processes -----------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.folder / f"{name}.stdout", "w")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def start(self) -> "SlurmCluster":
        for sub in ("state", "spool", "munge"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder / "munge", 0o755)  # munged: no other may write here
        key = self.folder / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        os.chmod(key, 0o600)
        self.conf.write_text(self.config_text())
        self._write_srun_shim()
        self._spawn("munged", [_which("munged"), "--foreground", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={key}", f"--pid-file={self.folder / 'munge' / 'munged.pid'}",
                               f"--log-file={self.folder / 'munge' / 'munged.log'}",
                               f"--seed-file={self.folder / 'munge' / 'munged.seed'}"])
        self.wait_for(self.munge_socket.exists, "munged's socket")
        # -D: stay in the foreground (ours to stop); -i: ignore state from an earlier run
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)])
        self.wait_for(lambda: self.node_state() == "idle", f"node {self.node} idle in sinfo")
        return self

    def job_processes(self) -> list[int]:
        """Processes of this cluster's jobs still alive: those whose environment names
        this cluster's configuration and a job id.  proctrack/linuxproc follows a job's
        processes by parentage, so one whose parent exits first (the job's shell, on a
        requeue or a cancel) is reparented to init and escapes SLURM's own clean-up."""
        marker = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                env = (entry / "environ").read_bytes().split(b"\0")
            except OSError:  # gone, or not ours to read
                continue
            if marker in env and any(v.startswith(b"SLURM_JOB_ID=") for v in env):
                found.append(int(entry.name))
        return found

    def stop(self) -> None:
        """Cancel the jobs left (their processes belong to slurmd's job steps), wait until
        none runs, stop slurmd, slurmctld and munged, then any process of a job that
        escaped its step (``job_processes``): what this started, and nothing else."""
        if self.procs.get("slurmctld") is not None and self.procs["slurmctld"].poll() is None:
            self.command(["scancel", "--full", "--partition", self.partition], check=False)
            try:
                self.wait_for(lambda: not self.jobs(states="RUNNING,COMPLETING,PENDING,CONFIGURING"),
                              "no job left", timeout=KILL_WAIT + 60)
            except AssertionError as exc:  # stop the daemons anyway, and say why it was not clean
                print(f"slurm_cluster teardown: {exc}", file=sys.stderr)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        escaped = self.job_processes()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in escaped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while escaped and time.monotonic() < deadline:
                escaped = [pid for pid in escaped if Path(f"/proc/{pid}").exists()
                           and "zombie" not in _state(pid)]
                time.sleep(0.1)
            if not escaped:
                break

    # --- queries ---------------------------------------------------------------------------

    def command(self, argv: list[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster."""
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def node_state(self) -> str:
        out = self.command(["sinfo", "-h", "-N", "-n", self.node, "-o", "%T"], check=False)
        return out.stdout.strip().rstrip("*~#!%$@^-")

    def jobs(self, states: str = "all", name: str | None = None) -> list[dict]:
        """The jobs squeue shows: id, name, state, reason, time limit, CPUs, memory (MB), restarts."""
        argv = ["squeue", "-h", "--states", states, "-o", "%i|%j|%T|%r|%l|%C|%m|%k"]
        if name:
            argv += ["--name", name]
        out = self.command(argv, check=False).stdout
        keys = ("id", "name", "state", "reason", "time_limit", "cpus", "memory", "comment")
        return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]

    def job(self, job_id: str) -> dict:
        """``scontrol show job`` as a dict (Restarts, JobState, TimeLimit, ...)."""
        out = self.command(["scontrol", "-o", "show", "job", str(job_id)]).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def logs(self, lines: int = 30) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munge/munged.log", "slurmctld.stdout", "slurmd.stdout",
                     "munged.stdout"):
            path = self.folder / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def wait_for(self, predicate, what: str, timeout: float = HANG_SECONDS, every: float = 0.2):
        """Poll ``predicate`` until it is true (returns its value); fail naming ``what``
        when a daemon died or after ``timeout`` s (a hang), with the daemons' logs."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise AssertionError(f"waiting for {what}: {', '.join(dead)} exited\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"waiting for {what}: not after {timeout:.0f} s\n{self.logs()}")
            time.sleep(every)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running single-node SLURM (see the module docstring); skips where none can run."""
    why = why_unavailable()
    if why:
        pytest.skip(why)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
