"""Configuration: from the user's YAML to what each job depends on; the one import for
the Snakefile.

Owns: the typed config sections and their defaults (``settings``), the schema and its
one-line messages (``validation``), the expanded grid of cells and IMP chains
(``grid``), the stage contracts built from the resolved settings (``contracts``), and,
here, resolution and loading.  Add a stage option here: a field of its section or
contract, its entry in workflow/schemas/config.schema.yaml, and its use in the stage.

Resolution order (later wins): the defaults (``settings``), the preset file named by
``preset`` (``workflow/presets/<name>.yaml``), then the user's config (``config.yaml``
plus any ``--configfile``/``--config`` overrides, which Snakemake has already merged).
The plugins named by ``plugins:`` are imported next, so that their entries are known;
then strings from the command line are coerced and the result is validated (one line
naming the key, the value and what is allowed).

May import: ``foundations``, ``catalogue``, ``data`` (a dataset's defaults).  No torch.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from prunelib.catalogue import plugins as _plugins
from prunelib.catalogue import registry
from prunelib.config.grid import DENSE, Cell, cells, imp_chains, imp_densities, imp_round_of  # noqa: F401
from prunelib.foundations.paths import variant_suffix  # noqa: F401
from prunelib.config.settings import (  # noqa: F401
    DATA_KEYS, GridSettings, InitSettings, IterativeSettings, ModelSettings, PruneSettings, ReportSettings,
    ScoreSettings, Settings, TrainSettings, defaults_dict, format_ratio, jsonable, to_settings)
from prunelib.config import contracts  # noqa: F401
from prunelib.config.contracts import imp_spec, settings_hash  # noqa: F401
from prunelib.config.validation import (ConfigError, allowed_names, check_precision, coerce, load_schema,  # noqa: F401
                                       load_yaml, validate, workflow_dir)

known = allowed_names


def __getattr__(name: str):
    """Lists derived from the registry on each access (plugins may have added entries)."""
    derived = {
        "IMP_METHODS": lambda: tuple(registry.chain_methods()),
        "VARIANTS": lambda: tuple(registry.VARIANTS),
        "MASK_VARIANTS": lambda: tuple(registry.mask_variants()),
    }
    if name in derived:
        return derived[name]()
    raise AttributeError(f"module 'prunelib.config' has no attribute {name!r}")


def preset_dir() -> Path:
    return workflow_dir() / "presets"


def available_presets() -> list[str]:
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def deep_merge(base: dict, over: dict) -> dict:
    """Recursive dict merge; lists and scalars in ``over`` replace those in ``base``."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_plugins(merged: dict) -> None:
    names = merged.get("plugins") or []
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"config error: plugins = {json.dumps(names)} is not allowed; allowed: a list of "
                          "Python file paths or module names")
    _plugins.load(names)


def resolve(user_config: dict) -> dict:
    """Defaults < preset < user config; plugins imported; coerced and validated.
    Returns a plain dict."""
    user_config = dict(user_config or {})
    preset = user_config.get("preset")
    merged = defaults_dict()
    written = {}  # what the preset and the user wrote, without the defaults
    if preset is not None:
        presets = available_presets()
        if preset not in presets:
            hint = ""
            if isinstance(preset, str) and ("/" in preset or preset.endswith((".yaml", ".yml"))):
                hint = (" (a preset is a name, not a file: pass a file of settings with "
                        f"snakemake --configfile {preset})")
            raise ConfigError(
                f"config error: preset = {json.dumps(preset)} is not allowed; allowed: {', '.join(presets)}{hint}"
            )
        written = load_yaml(preset_dir() / f"{preset}.yaml")
    written = deep_merge(written, user_config)
    merged = deep_merge(merged, written)
    _load_plugins(merged)
    merged = coerce(merged, load_schema())
    validate(merged)
    train = written.get("train")
    check_precision(train if isinstance(train, dict) else {})
    return merged


def load(path: str | Path, overrides: dict | None = None) -> Settings:
    """Load, resolve and validate a config file outside Snakemake."""
    user = load_yaml(Path(path))
    if overrides:
        user = deep_merge(user, overrides)
    return to_settings(resolve(user))
