"""Scorers: one module per method, each a small ``Scorer`` subclass (``base.py``).

Which scorer a method uses, its scope, paper and settings are facts of its entry in
``prunelib.catalogue.registry``; this package only holds the code.  ``get`` is kept as the
lookup the stages use.
"""

from __future__ import annotations

from prunelib.catalogue.registry import METHODS, MethodEntry, method

__all__ = ["METHODS", "MethodEntry", "get"]


def get(name: str) -> MethodEntry:
    """The registry entry of method ``name`` (one line naming the allowed ones if unknown)."""
    return method(name)
