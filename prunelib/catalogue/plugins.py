"""Plugins: a researcher's own methods, networks and datasets, without forking prunelib.

``plugins:`` in the config lists Python files (paths relative to the working
directory) or importable module names.  Each is imported once, before the config is
validated, and registers entries with the same public decorators the built-ins use
(``prunelib.register_method``, ``register_arch``, ``register_dataset``,
``register_init``).  Its entries then appear in the grid, every stage, the tables and
``prunelib audit`` like the built-ins.

Each entry records its plugin and a SHA-256 of its own source: the plugin file without
the other entries' definitions (their decorated classes or functions).  The contract of
every job that uses the entry carries both (prunelib/config/contracts.py), so the job
imports the plugin before it runs, and

* editing one entry's definition reruns the jobs that use that entry, and only those;
* editing what the entries share (imports, helpers, module-level code) reruns the jobs
  of every entry of the file;
* an entry registered other than by a decorator on a top-level class or function (in a
  loop, say) cannot be told apart: it takes the whole file's digest.

A job whose entry changed since the workflow was planned stops with one line.

A plugin that fails to import, registers a name twice or shadows a built-in stops the
workflow before any job starts, with one line naming the file and the problem.
"""

from __future__ import annotations

import ast
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


#: The public decorators, and the registry table each fills.
REGISTERERS = {"register_method": "method", "register_arch": "arch", "register_dataset": "dataset",
               "register_init": "init scheme", "register_allocation": "allocation"}


def entry_spans(source: str) -> dict[tuple[str, str], tuple[int, int]]:
    """{(table, name): (first line, last line)} of every top-level class or function that a
    ``register_*("name", ...)`` decorator registers (lines 1-based, decorators included)."""
    spans = {}
    for node in ast.parse(source).body:
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for dec in node.decorator_list:
            func = dec.func if isinstance(dec, ast.Call) else None
            fname = getattr(func, "id", None) or getattr(func, "attr", None)
            if fname in REGISTERERS and dec.args and isinstance(dec.args[0], ast.Constant) \
                    and isinstance(dec.args[0].value, str):
                start = min(d.lineno for d in node.decorator_list)
                spans[(REGISTERERS[fname], dec.args[0].value)] = (start, node.end_lineno)
    return spans


def entry_digest(source: str, spans: dict, key: tuple[str, str]) -> str:
    """SHA-256 of ``source`` without the other entries' definitions."""
    mine = spans[key]
    drop = set()
    for other, (a, b) in spans.items():
        if other != key and (a, b) != mine:
            drop.update(range(a - 1, b))
    kept = "".join(line for i, line in enumerate(source.splitlines(keepends=True)) if i not in drop)
    return hashlib.sha256(kept.encode()).hexdigest()


def _split_origins(name: str, path: Path) -> None:
    """Give each entry the plugin registered its own digest (``entry_digest``)."""
    try:
        source = path.read_text()
        spans = entry_spans(source)
    except (OSError, SyntaxError, UnicodeDecodeError):
        return
    for table, entry in registry.entries_from(name):
        key = (table, entry.name)
        if key in spans:
            registry.set_origin(table, entry.name, registry.Origin(name, entry_digest(source, spans, key),
                                                                   f"{table}:{entry.name}"))


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
        _split_origins(name, path)
        _LOADED[name] = digest


def load_records(records) -> None:
    """Import the plugins a job's settings name (``registry.plugin_records``), checking
    that each is still the source the workflow planned with."""
    for rec in records or ():
        name, want, entry = rec["plugin"], rec["sha256"], rec.get("entry", "")
        if not entry:  # the whole file's digest
            got = _LOADED.get(name) or sha256_of(name)
        else:
            load([name])
            table, _, entry_name = entry.partition(":")
            current = registry._TABLES[table].get(entry_name)
            got = current.origin.sha256 if current is not None else "(no such entry)"
        if got != want:
            what = f"{name} ({entry.replace(':', ' ')})" if entry else name
            raise PluginError(f"plugin error: {what} changed since the workflow was planned (sha256 {got[:12]}, "
                              f"planned {want[:12]}); run snakemake again so that the jobs that use it rerun")
        load([name])
