"""The per-cell stages, one module each: ``init``, ``score``, ``mask``, ``train``,
``imp`` (a round of an iterative chain), ``eval`` and ``measure`` (every cell's speed-ups,
after the grid); ``common`` holds what they share.

Each stage function takes its contract (prunelib/config/contracts.py) and explicit
input and output paths, reads its inputs from disk (each read verified against the
digest its lineage records, prunelib/foundations/artifacts.py) and writes its artifacts
atomically.  Every artifact carries a ``meta`` dict with the contract's hash and, under
``inputs``, the path and SHA-256 of every artifact it was made from.  The Snakemake
rules call them through ``python -m prunelib <stage>``; from Python::

    from prunelib import stages
    stages.run_init(contracts.init_contract(settings, "lenet300", "mnist", 0, "pytorch_default"), ...)

May import: everything below it (foundations, catalogue, config, data, nets, train,
methods); nothing here is imported by those.  Importing this package is cheap: the
stage modules (and torch) load on first use of a name.
"""

from __future__ import annotations

import importlib

#: Where each public name lives.
_NAMES = {
    "run_init": "init", "run_score": "score", "compute_scores": "score", "run_mask": "mask",
    "run_train": "train", "fresh_init_state": "train", "redrawn_state": "train",
    "run_imp_round": "imp", "run_imp_rounds": "imp", "run_eval": "eval",
    "run_measure": "measure",
    "build_model": "common", "load_model": "common", "model_from": "common",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"prunelib.stages.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'prunelib.stages' has no attribute {name!r}")
