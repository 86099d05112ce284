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


@dataclass(frozen=True)
class GridSettings:
    archs: tuple = ("lenet300",)
    datasets: tuple = ("mnist",)
    methods: tuple = ("random", "global_magnitude", "layer_magnitude", "global_gradient", "layer_gradient",
                      "global_activation", "layer_activation", "global_lap", "layer_lap", "lamp", "snip",
                      "grasp", "synflow", "obd")
    ratios: tuple = (1, 4, 16, 64)
    seeds: tuple = (0, 1, 2)


@dataclass(frozen=True)
class Settings:
    """The whole resolved configuration."""

    preset: str | None = None
    data_dir: str = "data"
    device: str = "auto"
    threads: int = 1
    worker: bool = True
    grid: GridSettings = field(default_factory=GridSettings)
    init: InitSettings = field(default_factory=InitSettings)
    prune: PruneSettings = field(default_factory=PruneSettings)
    score: ScoreSettings = field(default_factory=ScoreSettings)
    train: TrainSettings = field(default_factory=TrainSettings)


_SECTIONS = {
    "grid": GridSettings,
    "init": InitSettings,
    "prune": PruneSettings,
    "score": ScoreSettings,
    "train": TrainSettings,
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

    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
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
            if isinstance(value, list):
                section[key] = tuple(value)
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
    return {"arch": arch, "dataset": dataset, "seed": int(seed), "init_scheme": scheme,
            "prune": dataclasses.asdict(s.prune)}


def score_settings(s: Settings, method: str, seed: int) -> dict:
    """Only what this method's scores depend on, so other methods' knobs never rerun it."""
    return {"method": method, "seed": int(seed), "data": s.score.data_for(method),
            "knobs": s.score.knobs_for(method), "device": s.device}


def mask_settings(s: Settings, method: str, ratio: float, seed: int) -> dict:
    out = {"method": method, "ratio": float(ratio), "seed": int(seed)}
    if method in ITERATIVE_METHODS:  # these re-score while pruning
        out.update({"knobs": s.score.knobs_for(method), "device": s.device})
    return out


def train_settings(s: Settings, seed: int) -> dict:
    return {"seed": int(seed), "train": _jsonable(dataclasses.asdict(s.train)), "device": s.device}


def eval_settings(s: Settings, arch: str, dataset: str, method: str, ratio: float, seed: int) -> dict:
    """Eval settings carry the hash of everything upstream (the cell's provenance)."""
    upstream = {
        "init": init_settings(s, arch, dataset, seed, s.init.scheme_for(method)),
        "score": score_settings(s, method, seed) if method != DENSE else None,
        "mask": mask_settings(s, method, ratio, seed),
        "train": train_settings(s, seed),
    }
    return {"method": method, "ratio": float(ratio), "seed": int(seed),
            "eval_batch_size": s.train.eval_batch_size, "device": s.device,
            "cell_hash": settings_hash(upstream)}


@dataclass(frozen=True)
class Cell:
    dataset: str
    arch: str
    seed: int
    method: str
    ratio: str  # formatted, as in paths


def cells(s: Settings) -> list[Cell]:
    """Every (dataset, arch, seed, method, ratio) of the grid; r = 1 maps to the dense control."""
    out = []
    pruned_ratios = [format_ratio(r) for r in s.grid.ratios if float(r) != 1.0]
    for dataset in s.grid.datasets:
        for arch in s.grid.archs:
            for seed in s.grid.seeds:
                out.append(Cell(dataset, arch, int(seed), DENSE, "1"))
                for method in s.grid.methods:
                    for r in pruned_ratios:
                        out.append(Cell(dataset, arch, int(seed), method, r))
    return out
