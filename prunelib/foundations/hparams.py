"""Typed, hashable settings: the base of every stage contract (as OpenLTH's ``hparams``).

A ``Hparams`` subclass is a frozen dataclass.  Its dict form, which is what crosses the
process boundary as JSON and what its hash covers, holds

* every field without a default (what the thing *is*: a method, a seed, ...);
* a field with a default only when its value differs from that default, so that adding a
  field with a default changes no existing hash and reruns no job;
* a field declared with ``always(default)`` always: the fields that were in the hashes
  before this rule existed (2026-12) keep their place, so results made then keep their
  hashes.  New fields never use it;
* never a field declared with ``unhashed(default)`` (no result depends on it).

``to_dict``/``from_dict`` are the two directions of the boundary (``to_json`` /
``from_json`` for the command line); nested ``Hparams`` fields are encoded and decoded
recursively, tuples as lists.  No torch import.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any

_ALWAYS = "always"
_UNHASHED = "unhashed"


def always(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING):
    """A field that appears in the dict form even at its default (hashes made before
    default-omission existed include it)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_ALWAYS: True})


def unhashed(default: Any):
    """A field no result depends on: never in the dict form nor the hash."""
    return dataclasses.field(default=default, metadata={_UNHASHED: True})


def jsonable(obj: Any) -> Any:
    """Tuples as lists and ``Hparams`` as their dict form, recursively (what JSON holds)."""
    if isinstance(obj, Hparams):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def settings_hash(obj: Any) -> str:
    """First 12 hex digits of the SHA-256 of canonical JSON (sorted keys, no spaces)."""
    blob = json.dumps(jsonable(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _tupled(value: Any) -> Any:
    """JSON lists back to the tuples a frozen dataclass holds (recursively)."""
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


@dataclasses.dataclass(frozen=True)
class Hparams:
    """Base of the typed settings (see the module docstring)."""

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            if f.metadata.get(_UNHASHED):
                continue
            value = getattr(self, f.name)
            if not f.metadata.get(_ALWAYS) and value == _default(f):
                continue
            out[f.name] = jsonable(value)
        return out

    @classmethod
    def from_dict(cls, data: dict):
        """The inverse of ``to_dict`` (absent fields take their defaults)."""
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(names))}")
        kwargs = {}
        for name, value in data.items():
            nested = _hparams_type(hints.get(name))
            if nested is not None and isinstance(value, dict):
                kwargs[name] = nested.from_dict(value)
            elif isinstance(value, list) and not _is_list_of_records(value):
                kwargs[name] = _tupled(value)
            elif isinstance(value, list):
                kwargs[name] = tuple(value)
            else:
                kwargs[name] = value
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def hash(self) -> str:
        return settings_hash(self.to_dict())


def _is_list_of_records(value: list) -> bool:
    return bool(value) and all(isinstance(v, dict) for v in value)


def _hparams_type(hint: Any) -> type | None:
    """The ``Hparams`` class a field holds (``X`` or ``X | None``), else None."""
    if isinstance(hint, type) and issubclass(hint, Hparams):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if isinstance(arg, type) and issubclass(arg, Hparams):
                return arg
    return None
