"""The papers' numbers: ``paper_values.yaml`` beside this module, the one place they are
typed (each with its quote and source, or why it is missing).  Read by the reproduction
table (``reproductions.py``) and the study section (``study.py``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

PAPER_VALUES = Path(__file__).with_name("paper_values.yaml")


def paper_values(path: str | Path = PAPER_VALUES) -> dict:
    """paper_values.yaml as a dict (``sources``, ``values``, ``study``); read once per path."""
    return _read(str(path))


@lru_cache(maxsize=None)
def _read(path: str) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text())
