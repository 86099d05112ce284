"""Checks a SLURM run makes before it submits anything (the workflow's ``onstart``).

Two ways a run on a real cluster goes wrong without a word, both met on first contact:

* **No accounting.**  Without slurmdbd, ``sacct`` answers "accounting storage is
  disabled"; the executor plugin, asking sacct how its jobs are doing, then drops them from
  its watch list and the run waits for ever.  ``squeue`` works instead, but only sees a
  finished job for ``MinJobAge`` seconds, which must outlast the plugin's longest wait
  between two status checks (180 s), and the plugin itself goes back to sacct when
  MinJobAge is under 3 x its first status interval.
* **A submission bigger than any node.**  SLURM queues it (``PENDING``,
  ``Reason=PartitionConfig``) and it never starts.  A group submission is the easy way in:
  Snakemake adds up the CPUs, memory and GPUs of the group's jobs that could run side by
  side, although the job step inside the submission runs them one at a time.

So before the first ``sbatch``, ``problems`` compares every submission the run will make
(its CPUs, memory, GPUs, GPU model and time limit, as Snakemake computes them for
``sbatch``) with the nodes and limits of the partition it goes to (``sinfo``,
``scontrol show partition``), and ``status_problems`` the status command with the
cluster's accounting and MinJobAge; the workflow stops with one line per problem, naming
the key to change.  ``PRUNELIB_SLURM_CHECK=off`` skips it (a site whose ``sinfo`` does not
show the partitions a job may use).

The parsing is plain functions of the commands' text, so they are tested without a
cluster; ``submissions`` reads Snakemake's own DAG objects, so it sees exactly the groups
and resources Snakemake will submit.  No torch import.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field

ENV_VAR = "PRUNELIB_SLURM_CHECK"
#: The executor plugin's first status interval (``slurm-init-seconds-before-status-checks``)
#: times this must not exceed MinJobAge, or it queries sacct after all (plugin 2.x).
STATUS_MARGIN = 3
#: The plugin's longest wait between two status checks (s; it adds 10 s per check in
#: which nothing finished, up to this): a job squeue forgets sooner can end unseen.
MAX_STATUS_INTERVAL = 180


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    memory_mb: int
    gpus: int = 0
    gpu_models: tuple = ()


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: tuple = ()
    #: Minutes; None = no limit.
    max_time: int | None = None
    max_cpus_per_node: int | None = None
    max_mem_per_node: int | None = None
    default: bool = False


@dataclass(frozen=True)
class Submission:
    """What one ``sbatch`` asks for."""

    label: str
    partition: str | None
    cpus: int
    memory_mb: int | None
    gpus: int = 0
    gpu_model: str | None = None
    runtime: int | None = None
    jobs: int = 1
    rules: tuple = field(default=())
    #: The largest CPUs, memory and GPUs of any one of a group's jobs (None: not a group),
    #: which tells whether its size is the group's doing or a single job's.
    one_job: tuple | None = None


# --- reading the cluster ---------------------------------------------------------------

def parse_time(text: str) -> int | None:
    """A SLURM time limit in minutes (``UNLIMITED``/``infinite`` -> None):
    ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``."""
    text = text.strip()
    if text.lower() in ("unlimited", "infinite", "none", "n/a", ""):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:
        hours, minutes, seconds = (parts + [0, 0, 0])[:3]
    elif len(parts) == 1:
        hours, minutes, seconds = 0, parts[0], 0
    elif len(parts) == 2:
        hours, minutes, seconds = 0, parts[0], parts[1]
    else:
        hours, minutes, seconds = parts[:3]
    total = (int(days or 0) * 24 + hours) * 60 + minutes
    return total + (1 if seconds else 0)


def parse_gres(text: str) -> tuple[int, tuple]:
    """(GPUs, their models) of a node's GRES string: ``gpu:a100:4(S:0-1),gpu:2,nic:1``."""
    count, models = 0, []
    for item in text.split(","):
        item = re.sub(r"\(.*?\)", "", item.strip())
        parts = item.split(":")
        if not parts or parts[0] != "gpu":
            continue
        number = parts[-1] if len(parts) > 1 and parts[-1].isdigit() else "1"
        count += int(number)
        if len(parts) == 3 or (len(parts) == 2 and not parts[1].isdigit()):
            models.append(parts[1])
    return count, tuple(models)


def parse_sinfo(text: str) -> dict[str, list[Node]]:
    """Nodes per partition from ``sinfo -h -N -o '%R|%N|%c|%m|%G'``."""
    out: dict[str, list[Node]] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 5:
            continue
        partition, name, cpus, memory, gres = fields
        gpus, models = parse_gres(gres)
        out.setdefault(partition, []).append(Node(name, int(cpus.rstrip("+")), int(memory.rstrip("+")), gpus,
                                                  models))
    return out


def _limit(value: str | None) -> int | None:
    if value is None or value.upper() in ("UNLIMITED", "INFINITE", "0"):
        return None
    return int(value) if value.isdigit() else None


def parse_partitions(scontrol: str, nodes: dict[str, list[Node]]) -> dict[str, Partition]:
    """Partitions from ``scontrol -o show partition`` (one line each) and their nodes."""
    out = {}
    for line in scontrol.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        name = fields.get("PartitionName")
        if not name:
            continue
        out[name] = Partition(name, tuple(nodes.get(name, ())), parse_time(fields.get("MaxTime", "UNLIMITED")),
                              _limit(fields.get("MaxCPUsPerNode")), _limit(fields.get("MaxMemPerNode")),
                              fields.get("Default") == "YES")
    return out


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def read_cluster(run=None) -> dict[str, Partition]:
    run = run or _run
    sinfo = run(["sinfo", "-h", "-N", "-o", "%R|%N|%c|%m|%G"])
    parts = run(["scontrol", "-o", "show", "partition"])
    if sinfo.returncode != 0 or parts.returncode != 0:
        raise RuntimeError((sinfo.stderr or parts.stderr).strip() or "sinfo/scontrol failed")
    return parse_partitions(parts.stdout, parse_sinfo(sinfo.stdout))


def read_config(run=None) -> dict[str, str]:
    """``scontrol show config`` as name -> value."""
    out = (run or _run)(["scontrol", "show", "config"])
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^(\w+)\s*=\s*(.*)$", out.stdout, re.M)}


# --- the checks --------------------------------------------------------------------------

def _fits(s: Submission, n: Node, p: Partition) -> bool:
    cpus = min(n.cpus, p.max_cpus_per_node or n.cpus)
    memory = min(n.memory_mb, p.max_mem_per_node or n.memory_mb)
    return (s.cpus <= cpus and (s.memory_mb or 0) <= memory and s.gpus <= n.gpus
            and (s.gpu_model is None or s.gpu_model in n.gpu_models))


def _ask(s: Submission) -> str:
    parts = [f"{s.cpus} CPU{'s' if s.cpus != 1 else ''}"]
    if s.memory_mb:
        parts.append(f"{s.memory_mb} MB")
    if s.gpus:
        parts.append(f"{s.gpus} GPU{'s' if s.gpus != 1 else ''}" + (f" ({s.gpu_model})" if s.gpu_model else ""))
    return ", ".join(parts)


def _offer(n: Node, p: Partition) -> str:
    cpus = min(n.cpus, p.max_cpus_per_node or n.cpus)
    memory = min(n.memory_mb, p.max_mem_per_node or n.memory_mb)
    gpus = f", {n.gpus} GPU{'s' if n.gpus != 1 else ''}" + (f" ({'/'.join(n.gpu_models)})" if n.gpu_models else "")
    return f"{cpus} CPU{'s' if cpus != 1 else ''}, {memory} MB" + (gpus if n.gpus else "")


def _advice(s: Submission, p: Partition) -> str:
    if s.one_job is not None and any(
            _fits(Submission(s.label, s.partition, s.one_job[0], s.one_job[1], s.one_job[2], s.gpu_model), n, p)
            for n in p.nodes):
        return ("set `cores:` in the profile to the config's `threads` (Snakemake then runs a group's jobs in "
                "turn and asks for one job's CPUs, memory and GPU), or lower `group-components`")
    return "lower the rule's resources in the profile's `set-resources`, or choose another `slurm_partition`"


def problems(submissions: list[Submission], partitions: dict[str, Partition]) -> list[str]:
    """One line per distinct submission that no node of its partition can ever run, or
    whose time limit its partition does not allow."""
    default = next((p.name for p in partitions.values() if p.default), None)
    lines: list[str] = []
    seen: set[str] = set()
    for s in submissions:
        name = s.partition or default
        if name is None:
            continue  # no partition named and none is the default: sbatch says so itself
        p = partitions.get(name)
        if p is None:
            msg = (f"{s.label}: slurm_partition = {name!r} is not a partition of this cluster; "
                   f"allowed: {', '.join(sorted(partitions))}")
        elif not p.nodes:
            msg = f"{s.label}: partition {name!r} has no nodes"
        elif not any(_fits(s, n, p) for n in p.nodes):
            best = max(p.nodes, key=lambda n: (n.gpus, n.cpus, n.memory_mb))
            msg = (f"{s.label} asks for {_ask(s)}, more than any node of partition {name!r} offers "
                   f"(largest: {best.name}, {_offer(best, p)}); it would wait in the queue for ever: "
                   + _advice(s, p))
        elif s.runtime is not None and p.max_time is not None and s.runtime > p.max_time:
            msg = (f"{s.label} asks for a time limit of {s.runtime} min, more than partition {name!r} allows "
                   f"(MaxTime {p.max_time} min): "
                   + ("lower `group-components` (a group's runtimes add up)" if s.jobs > 1 else
                      "set the rule's `runtime` in the profile's `set-resources`, or choose another partition"))
        else:
            continue
        if msg not in seen:  # (a thousand identical groups are one problem)
            seen.add(msg)
            lines.append(msg)
    return sorted(lines)


def status_problems(status_command: str | None, init_seconds: int, config: dict[str, str],
                    sacct_error: str | None) -> list[str]:
    """Whether the executor can learn how its jobs ended: ``sacct_error`` is sacct's
    complaint (None when it works), ``config`` is ``scontrol show config``."""
    min_age_text = config.get("MinJobAge", "")
    match = re.match(r"(\d+)", min_age_text)
    min_age = int(match.group(1)) if match else None
    out = []
    if sacct_error is not None and (status_command or "sacct") == "sacct":
        out.append(f"this cluster keeps no job accounting (sacct: {sacct_error}), so the executor cannot see "
                   "jobs finish and the run would wait for ever: set `slurm-status-command: squeue` (and "
                   "`slurm-no-account: true`) in the profile, see workflow/profiles/slurm/config.yaml")
    elif sacct_error is not None and min_age is not None and min_age <= MAX_STATUS_INTERVAL:
        out.append(f"MinJobAge = {min_age} s: squeue forgets a finished job after that, and the executor may wait "
                   f"up to {MAX_STATUS_INTERVAL} s between two status checks, so a job could end unseen and the run "
                   f"wait for ever; without accounting this needs MinJobAge > {MAX_STATUS_INTERVAL} s (SLURM's "
                   "default is 300: ask your administrator)")
    elif sacct_error is not None and min_age is not None and min_age < STATUS_MARGIN * init_seconds:
        out.append(f"MinJobAge = {min_age} s is less than {STATUS_MARGIN} x slurm-init-seconds-before-status-checks "
                   f"= {STATUS_MARGIN * init_seconds} s, so the executor would query sacct, which this cluster "
                   f"lacks: set `slurm-init-seconds-before-status-checks: {max(1, min_age // STATUS_MARGIN)}` "
                   "in the profile (or ask for a longer MinJobAge)")
    return out


def threads_problem(threads: int, cores: int | None) -> list[str]:
    """Snakemake caps every job's threads at ``--cores``: a profile's ``cores`` below the
    config's ``threads`` would quietly run every stage on fewer threads."""
    if cores is not None and threads > cores:
        return [f"config threads = {threads} but the profile's `cores: {cores}` caps every job at {cores}; "
                f"set `cores: {threads}` in the profile"]
    return []


# --- the workflow's side ---------------------------------------------------------------------

def _size(res, threads) -> tuple[int, int | None, int]:
    """(CPUs, memory MB, GPUs) that ``sbatch`` gets for these resources (the plugin's
    --cpus-per-task, --mem or --mem-per-cpu, --gpus)."""
    cpus = int(res.get("cpus_per_task") or threads)
    memory = res.get("mem_mb")
    if res.get("mem_mb_per_cpu"):
        memory = res.get("mem_mb_per_cpu") * cpus
    gpus = res.get("gpu") or 0
    return (cpus, int(memory) if isinstance(memory, (int, float)) else None,
            int(gpus) if str(gpus).isdigit() else 0)


def submissions(workflow) -> tuple[list[Submission], list[str]]:
    """Every submission the run will make, from Snakemake's DAG (``workflow.dag``): each
    group job once (with the resources Snakemake computes for its ``sbatch``), each job
    outside a group on its own; local rules are not submitted.  Also the problems
    Snakemake itself finds while sizing a group (one line each)."""
    dag = workflow.dag
    out: list[Submission] = []
    errors: list[str] = []
    seen: set[int] = set()
    for job in dag.needrun_jobs():
        if job.is_local:
            continue
        group = dag.get_job_group(job)
        unit = group if group is not None else job
        if id(unit) in seen:
            continue
        seen.add(id(unit))
        rules = tuple(sorted({j.rule.name for j in group.jobs})) if group is not None else (job.rule.name,)
        jobs = len(group.jobs) if group is not None else 1
        label = (f"a '{group.groupid}' group submission ({jobs} jobs: {', '.join(rules)})" if group is not None
                 else f"rule {job.rule.name}")
        try:
            res = unit.resources
        except Exception as exc:  # noqa: BLE001 - Snakemake's own complaint, e.g. grouped jobs disagreeing
            line = f"{label}: {' '.join(str(exc).split())}"  # on a string resource such as gpu_model
            if line not in errors:
                errors.append(line)
            continue
        one_job = None
        if group is not None:
            each = [_size(j.resources, j.threads) for j in group.jobs]
            one_job = tuple(max(dim) for dim in zip(*each))
        out.append(Submission(label, res.get("slurm_partition"), *_size(res, unit.threads), res.get("gpu_model"),
                              res.get("runtime") if isinstance(res.get("runtime"), int) else None, jobs, rules,
                              one_job))
    return out, errors


def _sacct_error(run=None) -> str | None:
    proc = (run or _run)(["sacct", "--noheader", "-X", "--format=JobIdRaw", "-j", "1"])
    if proc.returncode == 0:
        return None
    return (proc.stderr or proc.stdout).strip().splitlines()[-1] if (proc.stderr or proc.stdout).strip() else \
        f"exit status {proc.returncode}"


def check_run(workflow, threads: int) -> list[str]:
    """The problems of this run if it submits to SLURM (``executor: slurm``), else none."""
    plugin = getattr(workflow, "executor_plugin", None)
    if plugin is None or getattr(plugin, "cli_prefix", None) != "slurm":
        return []
    if os.environ.get(ENV_VAR, "").strip().lower() in ("off", "0", "no", "false"):
        return []
    settings = workflow.executor_settings
    cores = workflow.global_resources.get("_cores")
    out = threads_problem(threads, getattr(cores, "value", cores))
    try:
        out += status_problems(getattr(settings, "status_command", None),
                               int(getattr(settings, "init_seconds_before_status_checks", 40) or 40),
                               read_config(), _sacct_error())
        cluster = read_cluster()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return out + [f"cannot query SLURM here ({' '.join(str(exc).split())}); run from a machine where sinfo, "
                      f"scontrol and sacct work, or {ENV_VAR}=off skips this check"]
    planned, errors = submissions(workflow)
    return out + errors + problems(planned, cluster)
