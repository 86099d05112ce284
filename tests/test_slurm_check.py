"""The SLURM run's preflight (prunelib/cli/slurm_check.py) on the text SLURM's commands
print, without a cluster: node sizes, GRES, time limits, what fits where, and the one
line each problem gets.  tests/test_slurm.py runs it against a real cluster."""

from __future__ import annotations

import pytest

from prunelib.cli import slurm_check as sc

SINFO = """\
cpu|c01|32|128000|(null)
cpu|c02|32+|128000|(null)
gpu|g01|64|512000|gpu:a100:4(S:0-1)
gpu|g02|16|256000|gpu:v100:2,nic:1
"""
SCONTROL = """\
PartitionName=cpu AllowGroups=ALL Default=YES MaxTime=2-00:00:00 MaxCPUsPerNode=UNLIMITED MaxMemPerNode=UNLIMITED Nodes=c0[1-2] State=UP
PartitionName=gpu AllowGroups=ALL Default=NO MaxTime=12:00:00 MaxCPUsPerNode=UNLIMITED MaxMemPerNode=200000 Nodes=g0[1-2] State=UP
PartitionName=short Default=NO MaxTime=30 Nodes=c01 State=UP
"""


@pytest.fixture
def cluster():
    return sc.parse_partitions(SCONTROL, sc.parse_sinfo(SINFO))


@pytest.mark.parametrize("text, minutes", [
    ("UNLIMITED", None), ("infinite", None), ("30", 30), ("30:00", 30), ("30:01", 31), ("2:00:00", 120),
    ("1-00:00:00", 1440), ("2-12", 3600), ("1-01:30", 1530)])
def test_slurm_time_limits_in_minutes(text, minutes):
    assert sc.parse_time(text) == minutes


@pytest.mark.parametrize("text, gpus", [
    ("(null)", (0, ())), ("gpu:4", (4, ())), ("gpu:a100:4(S:0-1)", (4, ("a100",))),
    ("gpu:v100:2,nic:1", (2, ("v100",))), ("gpu:a100:2,gpu:h100:2", (4, ("a100", "h100"))), ("gpu", (1, ()))])
def test_gpus_of_a_gres_string(text, gpus):
    assert sc.parse_gres(text) == gpus


def test_partitions_hold_their_nodes_and_limits(cluster):
    assert sorted(cluster) == ["cpu", "gpu", "short"]
    assert cluster["cpu"].default and cluster["cpu"].max_time == 2880
    assert [n.cpus for n in cluster["cpu"].nodes] == [32, 32]
    assert cluster["gpu"].max_mem_per_node == 200000 and cluster["gpu"].max_time == 720
    assert cluster["gpu"].nodes[0] == sc.Node("g01", 64, 512000, 4, ("a100",))
    assert cluster["short"].nodes == ()  # (sinfo listed no node in it)


def _sub(**kw):
    base = dict(label="rule train", partition="gpu", cpus=1, memory_mb=2000, gpus=1, runtime=60)
    return sc.Submission(**{**base, **kw})


def test_what_fits_some_node_passes(cluster):
    assert sc.problems([_sub(), _sub(gpus=4, gpu_model="a100"), _sub(partition=None, gpus=0)], cluster) == []


def test_a_group_too_big_for_every_node_names_the_largest_and_the_key_to_change(cluster):
    group = _sub(label="a 'cell' group submission (30 jobs: eval, mask, train)", gpus=10, cpus=10, memory_mb=20000,
                 jobs=30, rules=("eval", "mask", "train"), one_job=(1, 2000, 1))
    (line,) = sc.problems([group], cluster)
    assert line == ("a 'cell' group submission (30 jobs: eval, mask, train) asks for 10 CPUs, 20000 MB, 10 GPUs, "
                    "more than any node of partition 'gpu' offers (largest: g01, 64 CPUs, 200000 MB, 4 GPUs (a100)); "
                    "it would wait in the queue for ever: set `cores:` in the profile to the config's `threads` "
                    "(Snakemake then runs a group's jobs in turn and asks for one job's CPUs, memory and GPU), or "
                    "lower `group-components`")


def test_a_group_whose_single_job_cannot_fit_is_told_to_change_the_job(cluster):
    (line,) = sc.problems([_sub(label="a 'cell' group submission (3 jobs: mask)", cpus=1, gpus=1, partition="cpu",
                                jobs=3, rules=("mask",), one_job=(1, 2000, 1))], cluster)
    assert line.endswith("lower the rule's resources in the profile's `set-resources`, or choose another "
                         "`slurm_partition`")


def test_partition_memory_limit_counts_not_only_the_node(cluster):
    (line,) = sc.problems([_sub(memory_mb=300000)], cluster)
    assert "300000 MB" in line and "(largest: g01, 64 CPUs, 200000 MB, 4 GPUs (a100))" in line
    assert line.endswith("lower the rule's resources in the profile's `set-resources`, or choose another "
                         "`slurm_partition`")


def test_a_gpu_model_no_node_has(cluster):
    (line,) = sc.problems([_sub(gpu_model="h100")], cluster)
    assert "asks for 1 CPU, 2000 MB, 1 GPU (h100), more than any node of partition 'gpu' offers" in line


def test_gpus_on_a_cpu_partition(cluster):
    (line,) = sc.problems([_sub(partition="cpu")], cluster)
    assert "1 GPU, more than any node of partition 'cpu' offers (largest: c01, 32 CPUs, 128000 MB)" in line


def test_time_limits_beyond_the_partitions(cluster):
    lines = sc.problems([_sub(runtime=721), _sub(label="a 'cell' group submission (3 jobs: mask)", runtime=900,
                                                 jobs=3)], cluster)
    assert lines == [
        "a 'cell' group submission (3 jobs: mask) asks for a time limit of 900 min, more than partition 'gpu' "
        "allows (MaxTime 720 min): lower `group-components` (a group's runtimes add up)",
        "rule train asks for a time limit of 721 min, more than partition 'gpu' allows (MaxTime 720 min): set the "
        "rule's `runtime` in the profile's `set-resources`, or choose another partition"]


def test_unknown_and_empty_partitions(cluster):
    assert sc.problems([_sub(partition="gpus")], cluster) == [
        "rule train: slurm_partition = 'gpus' is not a partition of this cluster; allowed: cpu, gpu, short"]
    assert sc.problems([_sub(partition="short", gpus=0)], cluster) == ["rule train: partition 'short' has no nodes"]


def test_a_thousand_identical_submissions_are_one_line(cluster):
    assert len(sc.problems([_sub(cpus=100)] * 1000, cluster)) == 1


NO_ACCOUNTING = "Slurm accounting storage is disabled"


@pytest.mark.parametrize("command, init, min_age, sacct_error, expected", [
    (None, 40, "300 sec", None, []),                        # accounting: sacct, the default
    ("squeue", 40, "300 sec", NO_ACCOUNTING, []),
    ("squeue", 40, "200 sec", NO_ACCOUNTING, []),
    ("sacct", 40, "300 sec", NO_ACCOUNTING, ["no job accounting"]),
    (None, 40, "300 sec", NO_ACCOUNTING, ["no job accounting"]),
    ("squeue", 40, "100 sec", NO_ACCOUNTING, ["MinJobAge = 100 s: squeue forgets"]),
    ("squeue", 10, "180 sec", NO_ACCOUNTING, ["MinJobAge = 180 s: squeue forgets"]),
    ("squeue", 70, "200 sec", NO_ACCOUNTING, ["MinJobAge = 200 s is less than"]),
])
def test_status_command_against_accounting_and_min_job_age(command, init, min_age, sacct_error, expected):
    out = sc.status_problems(command, init, {"MinJobAge": min_age}, sacct_error)
    assert len(out) == len(expected) and all(e in line for e, line in zip(expected, out))
    if expected == ["MinJobAge = 100 s: squeue forgets"]:
        assert out[0] == ("MinJobAge = 100 s: squeue forgets a finished job after that, and the executor may wait "
                          "up to 180 s between two status checks, so a job could end unseen and the run wait for "
                          "ever; without accounting this needs MinJobAge > 180 s (SLURM's default is 300: ask your "
                          "administrator)")
    if expected == ["MinJobAge = 200 s is less than"]:
        assert out[0] == ("MinJobAge = 200 s is less than 3 x slurm-init-seconds-before-status-checks = 210 s, so "
                          "the executor would query sacct, which this cluster lacks: set "
                          "`slurm-init-seconds-before-status-checks: 66` in the profile (or ask for a longer "
                          "MinJobAge)")


def test_cores_below_the_configs_threads():
    assert sc.threads_problem(4, 1) == ["config threads = 4 but the profile's `cores: 1` caps every job at 1; "
                                        "set `cores: 4` in the profile"]
    assert sc.threads_problem(1, 1) == sc.threads_problem(4, None) == []


def test_only_a_slurm_run_is_checked(monkeypatch):
    class Plugin:
        cli_prefix = "cluster-generic"

    class Workflow:
        executor_plugin = Plugin()

    assert sc.check_run(Workflow(), threads=1) == []
    Workflow.executor_plugin.cli_prefix = "slurm"
    monkeypatch.setenv(sc.ENV_VAR, "off")
    assert sc.check_run(Workflow(), threads=1) == []


def test_a_submit_host_without_slurm_commands_gets_one_line(monkeypatch):
    class Workflow:
        class executor_plugin:
            cli_prefix = "slurm"

        class executor_settings:
            status_command, init_seconds_before_status_checks = "squeue", 40

        global_resources = {"_cores": None}

    def missing(argv):
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    monkeypatch.delenv(sc.ENV_VAR, raising=False)
    monkeypatch.setattr(sc, "_run", missing)
    assert sc.check_run(Workflow(), threads=1) == [
        "cannot query SLURM here ([Errno 2] No such file or directory: 'scontrol'); run from a machine where sinfo, "
        "scontrol and sacct work, or PRUNELIB_SLURM_CHECK=off skips this check"]


def test_the_real_cluster_tests_say_in_one_line_why_they_cannot_run(monkeypatch):
    """tests/slurm_cluster.py's skip reason: root first (slurmd starts jobs as their user),
    then every daemon and client named that is missing."""
    import slurm_cluster

    monkeypatch.setattr(slurm_cluster.sys, "platform", "linux")
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 1000)
    assert slurm_cluster.why_unavailable() == ("real-SLURM tests need root (slurmd starts jobs as their user; run "
                                               "make test as root)")
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 0)
    monkeypatch.setattr(slurm_cluster, "_which", lambda name: None if name in ("slurmd", "sinfo") else "/x/" + name)
    assert slurm_cluster.why_unavailable() == (
        "real-SLURM tests: slurmd sinfo not installed (make setup installs Debian's slurmctld slurmd slurm-client "
        "munge when run as root)")
    monkeypatch.setattr(slurm_cluster, "_which", lambda name: "/x/" + name)
    assert slurm_cluster.why_unavailable() is None
