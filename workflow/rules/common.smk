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
# Train and IMP-round jobs checkpoint every train.checkpoint_minutes (prunelib/resume.py);
# passed in the environment, not as a param, so that changing it reruns no job.
_checkpoint_env = f"export PRUNELIB_CHECKPOINT_MINUTES={SETTINGS.train.checkpoint_minutes:g}; "
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={shlex.quote(workflow.basedir)}"
    f"${{{{PYTHONPATH:+:$PYTHONPATH}}}}; {_venv_path}{_worker_env}{_checkpoint_env}"
)
ENV = "../../envs/prunelib.yaml"
# A cell's folder: r16 for the method itself, r16-<variant> for a sanity-check variant.
CELL = "results/{dataset}/{arch}/seed{seed}/{method}/r{ratio}{variant}"
CELL_LOG = "{dataset}/{arch}/seed{seed}/{method}/r{ratio}{variant}"
# One round of an iterative-magnitude-pruning chain (round 0 = the dense training).
IMP_ROUND = "results/{dataset}/{arch}/seed{seed}/{method}/imp/round{round}"


wildcard_constraints:
    dataset="|".join(plconfig.known("datasets")),
    arch="|".join(plconfig.known("archs")),
    method="|".join(METHODS),
    scheme="[a-z_]+",
    seed=r"\d+",
    ratio=r"[0-9]+(\.[0-9]+)?",
    variant="|".join(plconfig.variant_suffix(v) for v in plconfig.VARIANTS),
    round=r"[0-9]+",


# Resources scale with the network (relative cost; unknown networks count as 4): memory
# in MB and runtime in minutes per job, for cluster schedulers. Locally nothing is
# limited unless you pass --resources. A profile's set-resources overrides them.
NET_COST = {
    "lenet300": 1,
    "lenet5": 1,
    "mlp400x3": 1,
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


def variant_of(w):
    """The cell's variant name (``none`` for the method itself)."""
    return w.variant[1:] if w.variant else "none"


def is_imp(w):
    return w.method in plconfig.IMP_METHODS


def rewinds_weights(w):
    """Whether the IMP method resets survivors to a stored step (else keeps trained weights)."""
    return plconfig.imp_spec(SETTINGS, w.method)["rewind_weights_to"] is not None


def imp_round_of(w):
    return plconfig.imp_round_of(
        SETTINGS.grid.ratios, SETTINGS.iterative.round_factor, float(w.ratio)
    )


def imp_round_dir(w, round_):
    return IMP_ROUND.format(**{**dict(w.items()), "round": round_})


def scores_path(w):
    """The mask stage's ranking input: the method's scores, or for an IMP method the
    mask.pt of the chain round that lands on the cell's ratio."""
    if is_imp(w):
        return f"{imp_round_dir(w, imp_round_of(w))}/mask.pt"
    return f"results/{w.dataset}/{w.arch}/seed{w.seed}/{w.method}/scores.pt"


def scores_arg(w):
    """The mask command's --scores option; the dense control has no scores file."""
    return (
        "" if w.method == plconfig.DENSE else f"--scores {shlex.quote(scores_path(w))}"
    )


def data_path(w):
    return f"results/data/{w.dataset}.pt"


def cell_label(w):
    return f"{w.dataset}/{w.arch}/seed{w.seed}/{w.method}/r{w.ratio}{w.variant}"


def mask_inputs(w):
    if w.method == plconfig.DENSE:
        return {"init": init_path(w)}
    return {"init": init_path(w), "scores": scores_path(w)}


def train_inputs(w):
    """Where a cell's training starts: the init; for an IMP cell, its chain round's
    result (nothing to train) or, for a variant, the weights that round started from."""
    base = {"mask": f"{CELL}/mask.pt".format(**dict(w.items())), "data": data_path(w)}
    if not is_imp(w):
        return {**base, "init": init_path(w)}
    j = imp_round_of(w)
    if variant_of(w) == "none":
        return {
            **base,
            "init": f"{imp_round_dir(w, j)}/weights.pt",
            "reuse_log": f"{imp_round_dir(w, j)}/train_log.parquet",
        }
    if rewinds_weights(w):
        return {**base, "init": f"{imp_round_dir(w, 0)}/rewind.pt"}
    # No rewinding: the round started from round j-1's trained weights, which are zero
    # wherever an earlier round pruned; a mask-level variant starts from the dense trained
    # weights (round 0) instead, so every position it keeps has a real value.
    if variant_of(w) in plconfig.MASK_VARIANTS:
        return {**base, "init": f"{imp_round_dir(w, 0)}/weights.pt"}
    return {**base, "init": f"{imp_round_dir(w, j - 1)}/weights.pt"}


def reuse_arg(w):
    if is_imp(w) and variant_of(w) == "none":
        return f"--reuse-log {shlex.quote(train_inputs(w)['reuse_log'])}"
    return ""


def eval_paths():
    return [f"{CELL}/eval.parquet".format(**c.wildcards()) for c in CELLS]


# IMP chain rounds (workflow/rules/imp.smk)
def imp_round_label(w):
    return f"{w.dataset}/{w.arch}/seed{w.seed}/{w.method}"


def imp_round_inputs(w):
    prev = imp_round_dir(w, int(w.round) - 1)
    out = {
        "prev_weights": f"{prev}/weights.pt",
        "prev_mask": f"{prev}/mask.pt",
        "data": data_path(w),
    }
    if rewinds_weights(w):
        out["rewind"] = f"{imp_round_dir(w, 0)}/rewind.pt"
    return out


def rewind_arg(w, input):
    return f"--rewind {shlex.quote(input.rewind)}" if "rewind" in input.keys() else ""


def imp_chain_weights(w):
    """Every round's weights.pt of one chain, round 0 first."""
    n = len(
        plconfig.imp_densities(SETTINGS.grid.ratios, SETTINGS.iterative.round_factor)
    )
    return [f"{imp_round_dir(w, j)}/weights.pt" for j in range(n + 1)]


def imp_rounds_paths():
    return [
        f"results/{d}/{a}/seed{s}/{m}/imp/rounds.parquet"
        for d, a, s, m, _ in plconfig.imp_chains(SETTINGS)
    ]
