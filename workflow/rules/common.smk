# Shared helpers: the resolved settings, paths of every artifact, and the stage command.
import json
import os
from pathlib import Path
import shlex
import sys

sys.path.insert(0, workflow.basedir)  # prunelib is importable without installation
from prunelib import config as plconfig
from prunelib import worker as plworker

try:
    SETTINGS = plconfig.to_settings(plconfig.resolve(config))
except plconfig.ConfigError as exc:
    sys.exit(str(exc))

CELLS = plconfig.cells(SETTINGS)
METHODS = [plconfig.DENSE, *plconfig.known("methods")]


def _uses_conda():
    methods = getattr(workflow.deployment_settings, "deployment_method", ())
    return any(getattr(m, "name", str(m)).upper() == "CONDA" for m in methods)


# Every job runs `python -m prunelib ...`: under --use-conda the env's python; otherwise
# the interpreter that runs Snakemake (e.g. .venv/bin/python), even when its folder is
# not on PATH. prunelib is found from the workflow folder, installed or not.
# (Snakemake formats the prefix like a shell command, hence the doubled braces.)
_venv_path = (
    ""
    if _uses_conda()
    else f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; "
)
# Outside conda, jobs hand their stage to a pre-imported worker (prunelib/worker.py),
# saving ~2 s of `import torch` per job; without a worker they run the stage themselves.
USE_WORKER = SETTINGS.worker and not _uses_conda()
WORKER_SOCKET = str(Path(".snakemake") / f"prunelib-worker-{os.getpid()}.sock")
_worker_env = (
    f"export PRUNELIB_WORKER={shlex.quote(str(Path(WORKER_SOCKET).resolve()))}; "
    if USE_WORKER
    else ""
)
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={shlex.quote(workflow.basedir)}"
    f"${{{{PYTHONPATH:+:$PYTHONPATH}}}}; {_venv_path}{_worker_env}"
)
ENV = "../../envs/prunelib.yaml"
CELL = "results/{dataset}/{arch}/seed{seed}/{method}/r{ratio}"


wildcard_constraints:
    dataset="|".join(plconfig.known("datasets")),
    arch="|".join(plconfig.known("archs")),
    method="|".join(METHODS),
    scheme="[a-z_]+",
    seed=r"\d+",
    ratio=r"[0-9]+(\.[0-9]+)?",


# Resources scale with the network (relative cost; unknown networks count as 4): memory
# in MB and runtime in minutes per job, for cluster schedulers. Locally nothing is
# limited unless you pass --resources. A profile's set-resources overrides them.
NET_COST = {
    "lenet300": 1,
    "lenet5": 1,
    "resnet20": 4,
    "resnet32": 6,
    "resnet56": 10,
    "vgg16": 16,
}


def _cost(w):
    return NET_COST.get(w.arch, 4)


def mem_mb(w):
    return 2000 * _cost(w)


def train_runtime(w):
    epochs = SETTINGS.train.epochs_per_dataset.get(w.dataset, SETTINGS.train.epochs)
    return 15 * _cost(w) * epochs


def stage_runtime(w):
    return 10 * _cost(w)


def as_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def init_path(w, ext="pt"):
    scheme = SETTINGS.init.scheme_for(w.method)
    return f"results/{w.dataset}/{w.arch}/seed{w.seed}/init_{scheme}.{ext}"


def scores_path(w):
    return f"results/{w.dataset}/{w.arch}/seed{w.seed}/{w.method}/scores.pt"


def scores_arg(w):
    """The mask command's --scores option; the dense control has no scores file."""
    return (
        "" if w.method == plconfig.DENSE else f"--scores {shlex.quote(scores_path(w))}"
    )


def data_path(w):
    return f"results/data/{w.dataset}.pt"


def cell_label(w):
    return f"{w.dataset}/{w.arch}/seed{w.seed}/{w.method}/r{w.ratio}"


def mask_inputs(w):
    if w.method == plconfig.DENSE:
        return {"init": init_path(w)}
    return {"init": init_path(w), "scores": scores_path(w)}


def eval_paths():
    return [f"{CELL}/eval.parquet".format(**vars(c)) for c in CELLS]
