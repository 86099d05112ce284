"""Plugins: a researcher's own methods, networks and datasets, without forking prunelib.

``plugins:`` in the config lists Python files (paths relative to the working
directory) or importable module names.  Each is imported once, before the config is
validated, and registers entries with the same public decorators the built-ins use
(``prunelib.register_method``, ``register_arch``, ``register_dataset``,
``register_init``).  Its entries then appear in the grid, every stage, the tables and
``prunelib audit`` like the built-ins.

Each entry records its plugin and the SHA-256 of the plugin's source; the settings of
every job that uses the entry carry both (prunelib/config/contracts.py), so the job imports the
plugin before it runs, and editing the plugin reruns exactly the jobs that use it.  A
job whose plugin changed since the workflow was planned stops with one line.

A plugin that fails to import, registers a name twice or shadows a built-in stops the
workflow before any job starts, with one line naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

from prunelib.catalogue import registry
from prunelib.foundations.errors import PrunelibError


class PluginError(PrunelibError, ImportError):
    """A plugin that cannot be loaded; phrased as one line."""


#: Plugins imported in this process: name -> source SHA-256.
_LOADED: dict[str, str] = {}


def _is_file(name: str) -> bool:
    return name.endswith(".py") or "/" in name or "\\" in name


def source_of(name: str) -> Path:
    """The source file of a plugin (a path, or the file of an importable module)."""
    if _is_file(name):
        path = Path(name)
        if not path.is_file():
            raise PluginError(f"plugin error: {name}: no such file (plugins are paths relative to the working "
                              f"directory {Path.cwd()}, or importable module names)")
        return path
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        raise PluginError(f"plugin error: {name}: no such module (not importable from sys.path)")
    return Path(spec.origin)


def sha256_of(name: str) -> str:
    return hashlib.sha256(source_of(name).read_bytes()).hexdigest()


def _import(name: str, path: Path) -> None:
    if _is_file(name):
        module_name = "prunelib_plugin_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    else:
        importlib.import_module(name)


def load(names) -> None:
    """Import each plugin once per process (idempotent), registering its entries."""
    for name in names:
        name = str(name)
        if name in _LOADED:
            continue
        path = source_of(name)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            with registry.registering_from(registry.Origin(name, digest)):
                _import(name, path)
        except registry.RegistryError as exc:
            raise PluginError(f"plugin error: {name}: {exc}") from None
        except PrunelibError:
            raise
        except Exception as exc:  # the plugin's own bug: name it, in one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise PluginError(f"plugin error: {name} failed to import: {type(exc).__name__}: {first}") from None
        _LOADED[name] = digest


def load_records(records) -> None:
    """Import the plugins a job's settings name (``registry.plugin_records``), checking
    that each is still the source the workflow planned with."""
    for rec in records or ():
        name, want = rec["plugin"], rec["sha256"]
        got = _LOADED.get(name) or sha256_of(name)
        if got != want:
            raise PluginError(f"plugin error: {name} changed since the workflow was planned (sha256 {got[:12]}, "
                              f"planned {want[:12]}); run snakemake again so that the jobs that use it rerun")
        load([name])
