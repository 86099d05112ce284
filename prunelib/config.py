"""Configuration: typed settings, presets, validation and the expanded grid.

Resolution order (later wins): the defaults below, the preset file named by
``preset`` (``workflow/presets/<name>.yaml``), then the user's config
(``config.yaml`` plus any ``--configfile``/``--config`` overrides, which Snakemake
has already merged).  The result is validated against
``workflow/schemas/config.schema.yaml`` (JSON Schema draft 2020-12) and any
violation becomes one line naming the key, the bad value and the allowed values.

This module imports no torch, so the Snakefile can use it at parse time.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from prunelib.errors import PrunelibError

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
PRESET_DIR = REPO_ROOT / "workflow" / "presets"

#: Pseudo-method for the dense control (r = 1, no pruning); every table has it.
DENSE = "dense"


class ConfigError(PrunelibError, ValueError):
    """A configuration problem, already phrased as one line for the user."""


@dataclass(frozen=True)
class InitSettings:
    scheme: str = "pytorch_default"
    per_method: dict = field(default_factory=dict)

    def scheme_for(self, method: str) -> str:
        return self.per_method.get(method, self.scheme)


@dataclass(frozen=True)
class PruneSettings:
    include_bias: bool = False
    include_norm: bool = False


#: Methods whose mask depends on r beyond a threshold (scored again while pruning).
ITERATIVE_METHODS = ("synflow",)

#: Iterative magnitude pruning after training: presets of one generalised method
#: (prunelib/iterative.py).  They have no score stage; a chain of rounds replaces it.
IMP_METHODS = ("imp_finetune", "lth", "lth_rewind", "lrr", "gimp")

#: Sanity-check variants of a method's mask (prunelib/variants.py); ``none`` = the method.
VARIANTS = ("none", "shuffle_layer", "reinit", "shuffle_weights", "invert")
#: The variants that change the mask (the others change the starting weights).
MASK_VARIANTS = ("shuffle_layer", "invert")


@dataclass(frozen=True)
class ScoreSettings:
    """Scoring data and method knobs. ``per_method`` overrides the data keys per method;
    the default follows GraSP's code (10 examples per class, class-balanced)."""

    batch_size: int = 128
    num_batches: int = 1
    class_balanced: bool = False
    per_method: dict = field(default_factory=lambda: {"grasp": {"batch_size": 100, "class_balanced": True}})
    synflow_rounds: int = 100
    obd_estimator: str = "auto"
    obd_probes: int = 64

    def data_for(self, method: str) -> dict:
        base = {"batch_size": self.batch_size, "num_batches": self.num_batches,
                "class_balanced": self.class_balanced}
        return {**base, **self.per_method.get(method, {})}

    def knobs_for(self, method: str) -> dict:
        if method == "synflow":
            return {"rounds": self.synflow_rounds}
        if method == "obd":
            return {"estimator": self.obd_estimator, "probes": self.obd_probes}
        return {}


@dataclass(frozen=True)
class TrainSettings:
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 1
    train_subset: int | None = None
    lr_schedule: str = "constant"
    milestones: tuple = ()
    gamma: float = 0.1
    eval_batch_size: int = 256
    #: Epochs per dataset, overriding ``epochs`` for that dataset (the study: 5 on MNIST,
    #: 25 on CIFAR-10, 50 on CIFAR-100).
    epochs_per_dataset: dict = field(default_factory=dict)
    #: Training augmentation: ``cifar`` (random crop with 4-pixel zero padding, horizontal
    #: flip), ``none``, or ``auto`` = the dataset's default (``cifar`` for the CIFAR sets).
    augment: str = "auto"
    #: ``bf16`` autocast on CUDA (ignored, with a log line, on the CPU).
    amp: str = "none"
    #: Fraction of the training split held out (drawn with the seed) and never trained on;
    #: its accuracy and loss are logged per epoch.
    val_fraction: float = 0.0

    def for_dataset(self, dataset: str) -> "TrainSettings":
        """These settings as they apply to ``dataset``: its epochs, ``auto`` augmentation
        resolved, and no per-dataset mapping left."""
        from prunelib.datasets import info

        augment = info(dataset).augment if self.augment == "auto" else self.augment
        epochs = int(self.epochs_per_dataset.get(dataset, self.epochs))
        return dataclasses.replace(self, epochs=epochs, augment=augment, epochs_per_dataset={})


@dataclass(frozen=True)
class ModelSettings:
    """Network options.  ``shortcut``: the CIFAR ResNets' shortcut, He et al.'s option
    ``A`` (zero-padded identity, no parameters) or ``B`` (1x1 projection where the shape
    changes)."""

    shortcut: str = "A"
    #: BatchNorm momentum and epsilon (PyTorch's defaults); at high sparsity they change
    #: results, so networks with BatchNorm record them in every artifact.
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5

    def options_for(self, arch: str) -> dict:
        """The options ``arch``'s constructor takes (none for the other networks, so their
        init settings, and thus their artifacts, do not depend on these keys)."""
        out = {"shortcut": self.shortcut} if arch.startswith("resnet") else {}
        if arch in ARCHS_WITH_BATCHNORM:
            out.update(bn_momentum=self.bn_momentum, bn_eps=self.bn_eps)
        return out


#: Networks with BatchNorm layers (tests/test_models.py checks this list).
ARCHS_WITH_BATCHNORM = ("vgg16", "resnet20", "resnet32", "resnet56", "resnet110")


@dataclass(frozen=True)
class IterativeSettings:
    """Generalised iterative magnitude pruning (``iterative:``; prunelib/iterative.py).

    ``train_steps`` T: optimizer steps of the first, dense training (null = train.epochs
    epochs).  Each round keeps a fraction ``round_factor`` K of the remaining weights by
    ``criterion`` (global or layer-wise magnitude); the rounds land exactly on every
    ratio of the grid.  ``rewind_fraction`` is lth_rewind's rewind step and
    ``gimp_fraction`` gimp's, as fractions of T.  ``per_method`` overrides the general
    parameters of a named method: ``rewind_weights_to`` (a step, or null = keep the
    trained weights), ``rewind_lr`` (restart the schedule each round) and
    ``retrain_steps`` (steps per round).
    """

    round_factor: float = 0.8
    criterion: str = "global"
    train_steps: int | None = None
    rewind_fraction: float = 0.05
    gimp_fraction: float = 0.75
    per_method: dict = field(default_factory=dict)


#: Smallest input side each network accepts: LeNet-5's two 5x5 valid convolutions and two
#: 2x2 pools leave nothing below 16 pixels; VGG-16's five 2x2 pools nothing below 32.  The
#: MLP and the ResNets (stride-2 convolutions with padding, global pooling) take any size.
#: Every network takes any channel count.  tests/test_models.py checks these bounds.
ARCH_MIN_IMAGE_SIZE = {"lenet300": 1, "lenet5": 16, "mlp400x3": 1, "vgg16": 32, "resnet20": 1, "resnet32": 1,
                       "resnet56": 1, "resnet110": 1}


@dataclass(frozen=True)
class GridSettings:
    archs: tuple = ("lenet300",)
    datasets: tuple = ("mnist",)
    #: The default grid: every foresight method (the iterative ones train ~15x longer).
    methods: tuple = ("random", "global_magnitude", "layer_magnitude", "global_gradient", "layer_gradient",
                      "global_activation", "layer_activation", "global_lap", "layer_lap", "lamp", "snip",
                      "grasp", "synflow", "obd")
    ratios: tuple = (1, 4, 16, 64)
    seeds: tuple = (0, 1, 2)
    #: Sanity-check variants of every pruned cell (``none`` = the method itself).
    variants: tuple = ("none",)
    #: [arch, dataset] pairs to run instead of the archs x datasets cross product.
    pairs: tuple | None = None

    def arch_dataset_pairs(self) -> list[tuple[str, str]]:
        if self.pairs is not None:
            return [(str(a), str(d)) for a, d in self.pairs]
        return [(a, d) for d in self.datasets for a in self.archs]


@dataclass(frozen=True)
class ReportSettings:
    """What the aggregate stage's figures and study tables show (``report:`` section).

    ``None`` picks a default from the grid: ``heatmap_ratio`` and ``curves.ratio`` the
    largest pruned ratio; ``curves.method`` snip when in the grid, else the first method;
    ``table_ratios`` r = 32 and 64 when present, else the two largest ratios.
    """

    heatmap_ratio: float | None = None
    curves: dict = field(default_factory=lambda: {"method": None, "ratio": None})
    table_ratios: tuple | None = None


@dataclass(frozen=True)
class Settings:
    """The whole resolved configuration."""

    preset: str | None = None
    data_dir: str = "data"
    device: str = "auto"
    threads: int = 1
    worker: bool = True
    grid: GridSettings = field(default_factory=GridSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    init: InitSettings = field(default_factory=InitSettings)
    prune: PruneSettings = field(default_factory=PruneSettings)
    score: ScoreSettings = field(default_factory=ScoreSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    iterative: IterativeSettings = field(default_factory=IterativeSettings)
    report: ReportSettings = field(default_factory=ReportSettings)


_SECTIONS = {
    "grid": GridSettings,
    "model": ModelSettings,
    "init": InitSettings,
    "prune": PruneSettings,
    "score": ScoreSettings,
    "train": TrainSettings,
    "iterative": IterativeSettings,
    "report": ReportSettings,
}


def defaults_dict() -> dict:
    return _jsonable(dataclasses.asdict(Settings()))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def deep_merge(base: dict, over: dict) -> dict:
    """Recursive dict merge; lists and scalars in ``over`` replace those in ``base``."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def known(key: str) -> list[str]:
    """Allowed values of a grid list (``archs``, ``datasets``, ``methods``), in schema order."""
    return list(_load_schema()["properties"]["grid"]["properties"][key]["items"]["enum"])


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _load_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise ConfigError(f"config error: {path}: no such config file")
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:  # one line, with where the syntax broke
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"config error: {path}: not valid YAML{where}: "
                          f"{getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config error: {path} must hold a mapping of settings, not {type(data).__name__}")
    return data


def _load_schema() -> dict:
    return _load_yaml(SCHEMA_PATH)


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<config>"


def _allowed(error) -> str:
    v, val = error.validator, error.validator_value
    schema = error.schema
    if v == "enum":
        return ", ".join(str(x) for x in val)
    if v == "additionalProperties":
        return "keys " + ", ".join(sorted(schema.get("properties", {})))
    if v == "propertyNames":
        return ", ".join(str(x) for x in val.get("enum", []))
    kind = schema.get("type", "value")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    kind = {"integer": "integers", "number": "numbers", "array": "lists", "string": "strings",
            "boolean": "true or false", "object": "mappings"}.get(kind, kind)
    if v == "minimum":
        return f"{kind} >= {val}"
    if v == "exclusiveMinimum":
        return f"{kind} > {val}"
    if v == "maximum":
        lo = f">= {schema['minimum']} and " if "minimum" in schema else ""
        return f"{kind} {lo}<= {val}"
    if v == "exclusiveMaximum":
        lo = (f">= {schema['minimum']} and " if "minimum" in schema else
              f"> {schema['exclusiveMinimum']} and " if "exclusiveMinimum" in schema else "")
        return f"{kind} {lo}< {val}"
    if v == "minItems":
        return "a non-empty list"
    if v == "uniqueItems":
        return "a list without repeated entries"
    if v == "required":
        return "a mapping with keys " + ", ".join(val)
    if v == "type":
        bounds = [f">= {schema['minimum']}" if "minimum" in schema else "",
                  f"> {schema['exclusiveMinimum']}" if "exclusiveMinimum" in schema else ""]
        bound = " ".join(b for b in bounds if b)
        return f"{kind} {bound}".strip()
    return error.message


def _format_error(error, config: dict) -> str:
    if error.validator == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - known)
        key = _key_path(list(error.path) + [extra[0]]) if extra else _key_path(error.path)
        return f"config error: unknown key {key}; allowed {_allowed(error)}"
    if error.validator == "propertyNames":
        return (f"config error: {_key_path(error.path)} has key {error.instance!r}; "
                f"allowed: {_allowed(error)}")
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return (f"config error: {_key_path(list(error.path) + missing[:1])} is missing; "
                f"allowed: {_allowed(error)}")
    return (f"config error: {_key_path(error.path)} = {json.dumps(error.instance)} is not allowed; "
            f"allowed: {_allowed(error)}")


def validate(config: dict) -> None:
    """Raise ConfigError (one line) for the first problem found, in a stable order."""
    import jsonschema

    schema = _load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.path)), e.validator))
    if errors:
        # The deepest error is the most specific (e.g. the bad list item, not the list).
        best = max(errors, key=lambda e: len(e.path))
        raise ConfigError(_format_error(best, config))
    for r in config["grid"]["ratios"]:
        if not math.isfinite(r):
            raise ConfigError(f"config error: grid.ratios = {r} is not allowed; allowed: finite numbers >= 1")
    _check_fit(config["grid"])
    _check_iterative(config["iterative"])


def _check_iterative(it: dict) -> None:
    """With an explicit ``train_steps``, reject rewind steps and retraining lengths the
    schedule cannot hold (with ``train_steps: null`` the train stage checks them)."""
    t = it.get("train_steps")
    if t is None:
        return
    for method, over in sorted(it.get("per_method", {}).items()):
        spec = {**IMP_PRESETS[method], **over}
        key = f"iterative.per_method.{method}"
        rewind = over.get("rewind_weights_to")
        # rewinding to T and replaying "after_rewind" (T - k steps) would leave nothing to train
        top = t - 1 if spec["retrain_steps"] == "after_rewind" and "retrain_steps" not in over else t
        if rewind is not None and rewind > top:
            raise ConfigError(f"config error: {key}.rewind_weights_to = {rewind} is not allowed; "
                              f"allowed: steps 0..{top} (iterative.train_steps)")
        retrain = over.get("retrain_steps")
        if retrain is not None and spec["rewind_lr"] and retrain > t:
            raise ConfigError(f"config error: {key}.retrain_steps = {retrain} is not allowed; allowed: steps "
                              f"1..{t} (iterative.train_steps, as the round replays the schedule's last "
                              "retrain_steps)")


def _check_fit(grid: dict) -> None:
    """Reject an [arch, dataset] pair whose images are too small for the network."""
    from prunelib.datasets import DATASETS

    pairs = grid.get("pairs")
    listed = pairs if pairs is not None else [[a, d] for d in grid["datasets"] for a in grid["archs"]]
    for i, (arch, dataset) in enumerate(listed):
        need, side = ARCH_MIN_IMAGE_SIZE[arch], DATASETS[dataset].image_size
        if side >= need:
            continue
        fits = ", ".join(d for d, info in DATASETS.items() if info.image_size >= need)
        where = (f"grid.pairs[{i}] = {json.dumps([arch, dataset])}" if pairs is not None
                 else f"grid.archs x grid.datasets includes {json.dumps([arch, dataset])}, which")
        raise ConfigError(f"config error: {where} is not allowed: {arch} needs images of at least "
                          f"{need}x{need} pixels and {dataset} has {side}x{side}; allowed datasets for "
                          f"{arch}: {fits}" + ("" if pairs is not None else " (list the pairs to run in grid.pairs)"))


def resolve(user_config: dict) -> dict:
    """Defaults < preset < user config; validated. Returns a plain dict."""
    user_config = dict(user_config or {})
    preset = user_config.get("preset")
    merged = defaults_dict()
    if preset is not None:
        presets = available_presets()
        if preset not in presets:
            raise ConfigError(
                f"config error: preset = {json.dumps(preset)} is not allowed; allowed: {', '.join(presets)}"
            )
        merged = deep_merge(merged, _load_yaml(PRESET_DIR / f"{preset}.yaml"))
    merged = deep_merge(merged, user_config)
    validate(merged)
    return merged


def to_settings(config: dict) -> Settings:
    """Typed view of a resolved config dict."""
    kwargs = {k: v for k, v in config.items() if k not in _SECTIONS}
    for name, cls in _SECTIONS.items():
        section = dict(config.get(name, {}))
        for key, value in section.items():
            if isinstance(value, list):  # (grid.pairs: a tuple of tuples)
                section[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[name] = cls(**section)
    return Settings(**kwargs)


def load(path: str | Path, overrides: dict | None = None) -> Settings:
    """Load, resolve and validate a config file outside Snakemake."""
    user = _load_yaml(Path(path))
    if overrides:
        user = deep_merge(user, overrides)
    return to_settings(resolve(user))


def format_ratio(r: float) -> str:
    """Ratio as it appears in paths and tables: 16 -> '16', 2.5 -> '2.5'."""
    r = float(r)
    return str(int(r)) if r.is_integer() else repr(r)


def settings_hash(obj: Any) -> str:
    """First 12 hex digits of the SHA-256 of canonical JSON."""
    blob = json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# --- per-stage settings: what each stage's output depends on (besides its inputs) ---
# Each dict is passed to its stage as JSON and is a Snakemake `params:` value, so a
# change reruns exactly that stage and everything downstream of it.

def init_settings(s: Settings, arch: str, dataset: str, seed: int, scheme: str) -> dict:
    out = {"arch": arch, "dataset": dataset, "seed": int(seed), "init_scheme": scheme,
           "prune": dataclasses.asdict(s.prune)}
    if s.model.options_for(arch):  # only networks with options carry them (others' hashes unchanged)
        out["model"] = s.model.options_for(arch)
    return out


#: The named iterative methods as presets of generalised IMP.  ``rewind_weights_to``: a
#: step, ``None`` (keep the trained weights) or the name of an ``iterative`` fraction
#: of T; ``retrain_steps``: ``"train_steps"`` (T) or ``"after_rewind"`` (T minus the
#: rewind step).  prunelib/iterative.py resolves them against T.
IMP_PRESETS = {
    "imp_finetune": {"rewind_weights_to": None, "rewind_lr": False, "retrain_steps": "train_steps",
                     "paper": "Han et al., NeurIPS 2015 (prune, fine-tune at the final learning rate)"},
    "lth": {"rewind_weights_to": 0, "rewind_lr": True, "retrain_steps": "train_steps",
            "paper": "Frankle & Carbin, ICLR 2019 (lottery ticket: rewind to initialisation)"},
    "lth_rewind": {"rewind_weights_to": "rewind_fraction", "rewind_lr": True, "retrain_steps": "after_rewind",
                   "paper": "Frankle et al., ICML 2020 (rewind to an early step k, train k..T)"},
    "lrr": {"rewind_weights_to": None, "rewind_lr": True, "retrain_steps": "train_steps",
            "paper": "Renda et al., ICLR 2020 (learning-rate rewinding: keep weights, restart the schedule)"},
    "gimp": {"rewind_weights_to": "gimp_fraction", "rewind_lr": True, "retrain_steps": "train_steps",
             "paper": "rewind weights to a late step (gimp_fraction of T), restart the full schedule"},
}


def imp_spec(s: Settings, method: str) -> dict:
    """The generalised-IMP parameters of ``method`` (preset < ``iterative.per_method``),
    with fractions still unresolved (T depends on the data; see iterative.resolve_plan)."""
    it = s.iterative
    spec = {k: v for k, v in IMP_PRESETS[method].items() if k != "paper"}
    spec.update(it.per_method.get(method, {}))
    rewind = spec["rewind_weights_to"]
    if isinstance(rewind, str):
        spec["rewind_weights_to"] = {"fraction": getattr(it, rewind)}
    return {"round_factor": it.round_factor, "criterion": it.criterion, "train_steps": it.train_steps, **spec}


def imp_densities(ratios, round_factor: float) -> list[Fraction]:
    """Kept fraction of the prunable weights after each round 1..n of an IMP chain.

    Each round keeps ``round_factor`` K of the remaining weights (d_j = K d_{j-1},
    exactly, as a rational), except that the chain lands exactly on every requested
    ratio: the round that would pass density 1/r keeps 1/r instead (its factor adjusted,
    between K and 1), and the chain goes on from 1/r.  So one chain to the largest r
    serves every smaller r of the grid without retraining; with K = 0.8 and no ratio on
    the way, d_j = 0.8^j.  A landing round can prune little (0.4096 -> 0.4 for r = 2.5);
    it is kept rather than merged so that every round keeps at least K.
    """
    k = Fraction(str(round_factor))
    out, d = [], Fraction(1)
    for r in sorted({float(r) for r in ratios if float(r) > 1.0}):
        target = 1 / Fraction(r)
        while d * k > target:
            d *= k
            out.append(d)
        d = target
        out.append(d)
    return out


def imp_round_of(ratios, round_factor: float, ratio: float) -> int:
    """The round (1-based) of the chain whose mask has density exactly 1/``ratio``."""
    return imp_densities(ratios, round_factor).index(1 / Fraction(float(ratio))) + 1


def imp_round_settings(s: Settings, method: str, seed: int, dataset: str, round_: int) -> dict:
    """What round ``round_`` of ``method``'s chain depends on besides its inputs (round 0
    is the dense training; round j >= 1 prunes to ``density`` and retrains)."""
    out = {"method": method, "seed": int(seed), "round": int(round_), "imp": imp_spec(s, method),
           "train": train_settings(s, seed, dataset)["train"], "device": s.device}
    if round_ > 0:
        d = imp_densities(s.grid.ratios, s.iterative.round_factor)[round_ - 1]
        out["density"] = f"{d.numerator}/{d.denominator}"
    return out


def variant_settings(variant: str, seed: int) -> dict | None:
    """The sanity-check transformation of a cell (None for ``none``)."""
    return None if variant == "none" else {"variant": variant, "seed": int(seed)}


def score_settings(s: Settings, method: str, seed: int) -> dict:
    """Only what this method's scores depend on, so other methods' knobs never rerun it."""
    return {"method": method, "seed": int(seed), "data": s.score.data_for(method),
            "knobs": s.score.knobs_for(method), "device": s.device}


def mask_settings(s: Settings, method: str, ratio: float, seed: int, variant: str = "none") -> dict:
    out = {"method": method, "ratio": float(ratio), "seed": int(seed)}
    if method in ITERATIVE_METHODS:  # these re-score while pruning
        out.update({"knobs": s.score.knobs_for(method), "device": s.device})
    if method in IMP_METHODS:  # the mask is a round of the chain
        out.update({"imp_round": imp_round_of(s.grid.ratios, s.iterative.round_factor, ratio),
                    "criterion": s.iterative.criterion})
    if variant != "none":
        out["variant"] = variant_settings(variant, seed)
    return out


def train_settings(s: Settings, seed: int, dataset: str | None = None) -> dict:
    """With ``dataset``: the train settings as they apply to it (its ``epochs_per_dataset``
    entry as ``epochs``, ``augment: auto`` resolved), so changing one dataset's epochs
    reruns only that dataset's train jobs.  Without it, the whole mapping (the train
    stage resolves it; any change then reruns every train job)."""
    train = s.train.for_dataset(dataset) if dataset is not None else s.train
    out = _jsonable(dataclasses.asdict(train))
    if not out["epochs_per_dataset"]:
        del out["epochs_per_dataset"]
    return {"seed": int(seed), "train": out, "device": s.device}


def cell_train_settings(s: Settings, method: str, ratio: float, seed: int, dataset: str,
                        variant: str = "none") -> dict:
    """The train stage's settings for one cell: plain training for foresight methods and
    the dense control; for an IMP method, its chain round's result (variant none) or a
    retraining of the variant with the round's schedule."""
    out = train_settings(s, seed, dataset)
    if method in IMP_METHODS:
        j = imp_round_of(s.grid.ratios, s.iterative.round_factor, ratio)
        out["imp"] = imp_round_settings(s, method, seed, dataset, j)
        out["mode"] = "imp_result" if variant == "none" else "imp_retrain"
    if variant != "none":
        out["variant"] = variant_settings(variant, seed)
    return out


def eval_settings(s: Settings, arch: str, dataset: str, method: str, ratio: float, seed: int,
                  variant: str = "none") -> dict:
    """Eval settings carry the hash of everything upstream (the cell's provenance)."""
    upstream = {
        "init": init_settings(s, arch, dataset, seed, s.init.scheme_for(method)),
        "score": score_settings(s, method, seed) if method not in (DENSE, *IMP_METHODS) else None,
        "mask": mask_settings(s, method, ratio, seed, variant),
        "train": cell_train_settings(s, method, ratio, seed, dataset, variant),
    }
    if method in IMP_METHODS:  # every round of the chain up to this cell's
        j = imp_round_of(s.grid.ratios, s.iterative.round_factor, ratio)
        upstream["chain"] = [imp_round_settings(s, method, seed, dataset, i) for i in range(j + 1)]
    out = {"method": method, "ratio": float(ratio), "seed": int(seed),
           "eval_batch_size": s.train.eval_batch_size, "device": s.device,
           "cell_hash": settings_hash(upstream)}
    if variant != "none":
        out["variant"] = variant
    return out


def variant_suffix(variant: str) -> str:
    """How a variant appears in a cell's folder name: ``r16`` (none), ``r16-invert``."""
    return "" if variant == "none" else f"-{variant}"


@dataclass(frozen=True)
class Cell:
    dataset: str
    arch: str
    seed: int
    method: str
    ratio: str  # formatted, as in paths
    variant: str = "none"

    def wildcards(self) -> dict:
        """The values of the cell path's wildcards (``variant`` as its folder suffix)."""
        return {**vars(self), "variant": variant_suffix(self.variant)}


def cells(s: Settings) -> list[Cell]:
    """Every (dataset, arch, seed, method, ratio, variant) of the grid; r = 1 maps to the
    dense control, which has no variants."""
    out = []
    pruned_ratios = [format_ratio(r) for r in s.grid.ratios if float(r) != 1.0]
    for arch, dataset in s.grid.arch_dataset_pairs():  # grid.pairs, else archs x datasets
        for seed in s.grid.seeds:
            out.append(Cell(dataset, arch, int(seed), DENSE, "1"))
            for method in s.grid.methods:
                for r in pruned_ratios:
                    for variant in s.grid.variants:
                        out.append(Cell(dataset, arch, int(seed), method, r, variant))
    return out


def imp_chains(s: Settings) -> list[tuple[str, str, int, str, int]]:
    """(dataset, arch, seed, method, rounds) of every IMP chain the grid needs."""
    n = len(imp_densities(s.grid.ratios, s.iterative.round_factor))
    if n == 0:  # no pruned ratio: no chain (a dense training nobody uses)
        return []
    return [(d, a, int(seed), m, n) for a, d in s.grid.arch_dataset_pairs() for seed in s.grid.seeds
            for m in s.grid.methods if m in IMP_METHODS]
