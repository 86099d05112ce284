"""Validation of a merged config, with one-line messages: key, value, what is allowed.

The schema (``workflow/schemas/config.schema.yaml``, JSON Schema draft 2020-12) names
no method, network or dataset: every ``x-registry: <table>`` node is filled in from
``prunelib.catalogue.registry`` (the iterative criteria from ``settings.IMP_CRITERIA``, the report
metrics from ``prunelib/foundations/eval_row.py``) when the schema is loaded, and
``score.per_method`` gets one property per scoring method with its own settings'
schemas.  So a plugin's entries are validated exactly like the built-ins, and the schema
cannot drift from the code.

Values from ``snakemake --config`` nested under a section arrive as strings
(``train={"epochs": 2}`` gives ``"2"``); ``coerce`` turns numeric, boolean and null
strings into the type the schema asks for before validation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from prunelib.catalogue import registry
from prunelib.foundations.errors import PrunelibError
from prunelib.foundations.eval_row import METRICS
from prunelib.config.settings import DATA_KEYS, IMP_CRITERIA, SCORE_LABELS


class ConfigError(PrunelibError, ValueError):
    """A configuration problem, already phrased as one line for the user."""


def workflow_dir() -> Path:
    """The folder holding ``schemas/`` and ``presets/``: the repository's ``workflow/``
    (source checkout or editable install), else the copy shipped inside the package."""
    here = Path(__file__).resolve().parents[2] / "workflow"  # (prunelib/config/ -> the checkout)
    if (here / "schemas").is_dir():
        return here
    from importlib.resources import files

    return Path(str(files("prunelib") / "workflow"))


def schema_path() -> Path:
    return workflow_dir() / "schemas" / "config.schema.yaml"


def load_yaml(path: Path) -> dict:
    import yaml

    if not Path(path).is_file():
        raise ConfigError(f"config error: {path}: no such config file")
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:  # one line, with where the syntax broke
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config error: {path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config error: {path} must hold a mapping of settings, not {type(data).__name__}")
    return data


def _registry_node(table: str) -> dict:
    if table == "score_per_method":
        props = {}
        for name in registry.scoring_methods():
            entry = registry.method(name)
            data = {"batch_size": {"type": "integer", "minimum": 1}, "num_batches": {"type": "integer", "minimum": 1},
                    "class_balanced": {"type": "boolean"}}
            assert set(data) == set(DATA_KEYS)
            props[name] = {"type": "object", "additionalProperties": False,
                           "properties": {**data, **{k: dict(s.schema) for k, s in entry.settings.items()}}}
        return {"type": "object", "additionalProperties": False, "properties": props}
    names = {
        "archs": list(registry.ARCHS),
        "datasets": list(registry.DATASETS),
        "methods": [m for m, e in registry.METHODS.items() if e.pruning.pruned],
        "iterative_methods": registry.chain_methods(),
        "inits": list(registry.INITS),
        "variants": list(registry.VARIANTS),
        "metrics": list(METRICS),
        "iterative_criteria": list(IMP_CRITERIA),
        "score_labels": list(SCORE_LABELS),
        "allocations": [None, *registry.ALLOCATIONS],
    }[table]
    return {"enum": names}


def _fill(node):
    if isinstance(node, dict):
        if "x-registry" in node:
            rest = {k: v for k, v in node.items() if k != "x-registry"}
            return {**_fill(rest), **_registry_node(node["x-registry"])}
        return {k: _fill(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v) for v in node]
    return node


def load_schema() -> dict:
    """The config schema with the registry's names and method settings filled in."""
    return _fill(load_yaml(schema_path()))


def allowed_names(key: str) -> list[str]:
    """Allowed values of a grid list (``archs``, ``datasets``, ``methods``, ``variants``)."""
    return list(load_schema()["properties"]["grid"]["properties"][key]["items"]["enum"])


# --- coercion of command-line strings ---------------------------------------------------

def _types(schema: dict) -> list[str]:
    t = schema.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def _coerce_value(value, schema: dict):
    if not isinstance(value, str):
        return value
    types = _types(schema)
    if "string" in types or "enum" in schema and value in schema["enum"]:
        return value
    text = value.strip()
    if "null" in types and text.lower() in ("null", "none", "~"):
        return None
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            pass
        try:  # a number, but not a whole one: validation then says integers (not "it is text")
            number = float(text)
        except ValueError:
            pass
        else:
            if "number" not in types and number == number:
                return int(number) if number.is_integer() else number
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    return value


def coerce(config, schema: dict):
    """``config`` with strings turned into the numbers, booleans and nulls the schema asks
    for, wherever they parse cleanly (Snakemake passes nested ``--config`` values as
    strings); anything that does not parse is left for validation to report."""
    if isinstance(config, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out = {}
        for k, v in config.items():
            sub = props.get(k, extra if isinstance(extra, dict) else {})
            out[k] = coerce(v, sub)
        return out
    if isinstance(config, list):
        prefix = schema.get("prefixItems", [])
        items = schema.get("items", {}) if isinstance(schema.get("items"), dict) else {}
        return [coerce(v, prefix[i] if i < len(prefix) else items) for i, v in enumerate(config)]
    return _coerce_value(config, schema)


# --- messages ------------------------------------------------------------------------------

def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<config>"


_KIND = {"integer": "integers", "number": "numbers", "array": "lists", "string": "strings",
         "boolean": "true or false", "object": "mappings", "null": "null"}


def _kind(schema: dict) -> str:
    types = [t for t in _types(schema)] or ["value"]
    return " or ".join(_KIND.get(t, t) for t in types)


def _range(schema: dict) -> str:
    """Every bound of a numeric schema, e.g. '> 0 and < 1' (so the violated one is shown)."""
    lo = (f">= {schema['minimum']}" if "minimum" in schema else
          f"> {schema['exclusiveMinimum']}" if "exclusiveMinimum" in schema else "")
    hi = (f"<= {schema['maximum']}" if "maximum" in schema else
          f"< {schema['exclusiveMaximum']}" if "exclusiveMaximum" in schema else "")
    return " and ".join(b for b in (lo, hi) if b)


def _allowed(error) -> str:
    v, val, schema = error.validator, error.validator_value, error.schema
    if v == "enum":
        return ", ".join("null" if x is None else str(x) for x in val)
    if v == "additionalProperties":
        return "keys " + ", ".join(sorted(schema.get("properties", {})))
    if v == "propertyNames":
        return ", ".join(str(x) for x in val.get("enum", []))
    if v in ("minItems", "maxItems"):
        lo, hi = schema.get("minItems"), schema.get("maxItems")
        if lo is not None and lo == hi:
            return f"a list of exactly {lo} items"
        if lo == 1 and hi is None:
            return "a non-empty list"
        return "a list of " + " and ".join(x for x in (f"at least {lo}" if lo else "",
                                                      f"at most {hi}" if hi is not None else "") if x) + " items"
    if v in ("minLength", "maxLength"):
        lo, hi = schema.get("minLength"), schema.get("maxLength")
        return "strings of " + " and ".join(x for x in (f"at least {lo}" if lo else "",
                                                        f"at most {hi}" if hi is not None else "") if x) + " characters"
    if v == "pattern":
        return f"strings matching {val}"
    if v == "uniqueItems":
        return "a list without repeated entries"
    if v == "required":
        return "a mapping with keys " + ", ".join(val)
    if v == "const":
        return json.dumps(val)
    return f"{_kind(schema)} {_range(schema)}".strip()


def _format_error(error) -> str:
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
    msg = (f"config error: {_key_path(error.path)} = {json.dumps(error.instance)} is not allowed; "
           f"allowed: {_allowed(error)}")
    if error.validator == "type" and isinstance(error.instance, str):
        msg += (" (it arrived as a string: `snakemake --config` passes nested values as text, and YAML reads "
                "e.g. 1e12 as text; write it in a YAML file, e.g. 1.0e+12, and pass it with --configfile)")
    return msg


def validate(config: dict) -> None:
    """Raise ConfigError (one line) for the first problem found, in a stable order."""
    import jsonschema

    schema = load_schema()
    arms = check_arms(config)
    if arms:  # the grid's <method>@<arm> names are methods of this config's grid
        schema["properties"]["grid"]["properties"]["methods"]["items"]["enum"] += arms
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.path)), e.validator))
    if errors:
        # The deepest error is the most specific (e.g. the bad list item, not the list).
        best = max(errors, key=lambda e: len(e.path))
        raise ConfigError(_format_error(best))
    for i, r in enumerate(config["grid"]["ratios"]):
        if not math.isfinite(r):
            raise ConfigError(f"config error: grid.ratios[{i}] = {r} is not allowed; allowed: finite numbers >= 1")
    check_fit(config["grid"])
    check_iterative(config["iterative"])
    check_allocation(config)
    check_network_variants(config)


def check_network_variants(config: dict) -> None:
    """A method that rebuilds the network (EigenDamage) has no mask over the original
    weights for a sanity-check variant to shuffle or invert: only ``none`` is allowed."""
    grid = config["grid"]
    other = [v for v in grid.get("variants") or [] if v != "none"]
    built = [m for m in grid["methods"] if registry.method(m).pruning.name == "eigenbasis"]
    if other and built:
        raise ConfigError(f"config error: grid.variants = {json.dumps(other)} is not allowed with "
                          f"{', '.join(built)} (it rebuilds the network); allowed: [\"none\"] (or drop "
                          f"{', '.join(built)} from grid.methods)")


def check_arms(config: dict) -> list[str]:
    """The grid's init-arm methods (``<method>@<arm>``, ``init.arms``), each checked: a
    single-pass pruning method and an arm the config declares.  One line otherwise."""
    grid, init = config.get("grid"), config.get("init")
    methods = grid.get("methods") if isinstance(grid, dict) else None
    declared = init.get("arms") if isinstance(init, dict) else None
    declared = declared if isinstance(declared, dict) else {}
    out = []
    for i, name in enumerate(methods if isinstance(methods, list) else []):
        if not isinstance(name, str) or registry.ARM_SEP not in name:
            continue
        base, _, arm = name.partition(registry.ARM_SEP)
        singles = [m for m, e in registry.METHODS.items() if e.pruning.pruned and e.pruning.trains_from == "init"]
        arms = ", ".join(sorted(declared)) or "none declared"
        if base not in singles or arm not in declared:
            raise ConfigError(f"config error: grid.methods[{i}] = {json.dumps(name)} is not allowed; allowed: "
                              f"<method>@<arm> with a single-pass pruning method ({', '.join(singles)}) "
                              f"and an arm of init.arms ({arms})")
        out.append(name)
    return out


def check_allocation(config: dict) -> None:
    """A density allocation fixes per-tensor counts before the scores pick: it applies to
    methods scored once, not to those that re-score per ratio, prune filters or are IMP
    chains (their own rounds and groups decide the counts)."""
    allocation = (config.get("prune") or {}).get("allocation")
    if allocation is None:
        return
    why = {"rescored": "re-scores per ratio", "structured": "prunes whole filters", "chain": "is an IMP chain",
           "eigenbasis": "rebuilds the network", "structured_updating": "prunes whole filters"}
    bad = [f"{m} {why[registry.method(m).pruning.name]}" for m in config["grid"]["methods"]
           if registry.method(m).pruning.name in why]
    if bad:
        raise ConfigError(f"config error: prune.allocation = {json.dumps(allocation)} is not allowed with "
                          f"{'; '.join(bad)}; allowed: methods scored once (drop those from grid.methods, or set "
                          "prune.allocation: null)")


def check_iterative(it: dict) -> None:
    """With an explicit ``train_steps``, reject rewind steps and retraining lengths the
    schedule cannot hold (with ``train_steps: null`` the train stage checks them)."""
    t = it.get("train_steps")
    if t is None:
        return
    for method, over in sorted(it.get("per_method", {}).items()):
        spec = {**registry.method(method).imp, **over}
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


def check_precision(explicit_train: dict) -> None:
    """``train.amp`` is the older name of ``train.precision: bf16``: both written, and
    disagreeing (amp: bf16 beside precision: fp32), is refused rather than one silently
    winning.  ``explicit_train``: the train section as the preset and the user wrote it."""
    amp, precision = explicit_train.get("amp"), explicit_train.get("precision")
    if amp == "bf16" and precision == "fp32":
        raise ConfigError("config error: train.amp = bf16 and train.precision = fp32 disagree; train.amp: bf16 is "
                          "the older name of train.precision: bf16; allowed: set train.precision alone "
                          "(fp32 or bf16)")


def check_fit(grid: dict) -> None:
    """Reject an [arch, dataset] pair whose images are too small for the network."""
    pairs = grid.get("pairs")
    listed = pairs if pairs is not None else [[a, d] for d in grid["datasets"] for a in grid["archs"]]
    for i, (arch, dataset) in enumerate(listed):
        need, side = registry.arch(arch).min_image_size, registry.dataset(dataset).image_size
        if side >= need:
            continue
        fits = ", ".join(d for d, e in registry.DATASETS.items() if e.image_size >= need)
        where = (f"grid.pairs[{i}] = {json.dumps([arch, dataset])}" if pairs is not None
                 else f"grid.archs x grid.datasets includes {json.dumps([arch, dataset])}, which")
        raise ConfigError(f"config error: {where} is not allowed: {arch} needs images of at least "
                          f"{need}x{need} pixels and {dataset} has {side}x{side}; allowed datasets for "
                          f"{arch}: {fits}" + ("" if pairs is not None else " (list the pairs to run in grid.pairs)"))

