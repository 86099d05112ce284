"""prunelib: the PyTorch core of the pruning reproducibility pipeline.

Importing the package is cheap (no torch); each submodule imports what it needs.  The
public API for plugins (docs/plugins.md) is importable from here: ``Scorer`` (which
imports torch on first use), ``Setting``, ``register_method``, ``register_arch``,
``register_dataset`` and ``register_init``.
"""

__version__ = "0.1.0"

from prunelib.catalogue.registry import (  # noqa: E402,F401
    Setting, register_allocation, register_arch, register_dataset, register_init, register_method)

__all__ = ["Scorer", "Setting", "register_allocation", "register_arch", "register_dataset", "register_init", "register_method"]


def __getattr__(name: str):
    if name == "Scorer":
        from prunelib.methods.scorers.base import Scorer

        return Scorer
    raise AttributeError(f"module 'prunelib' has no attribute {name!r}")
