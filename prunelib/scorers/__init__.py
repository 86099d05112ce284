"""Method registry: each pruning method is a scorer plus a ranking scope.

``global`` ranks all prunable weights together; ``layer`` prunes every tensor to the
same density; ``all`` keeps everything (the dense control).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from prunelib.scorers.base import Scorer
from prunelib.scorers.magnitude import MagnitudeScorer
from prunelib.scorers.random import RandomScorer
from prunelib.scorers.snip import SnipScorer


@dataclass(frozen=True)
class Method:
    name: str
    make_scorer: Callable[[], Scorer] | None
    scope: str
    paper: str


METHODS: dict[str, Method] = {
    "dense": Method("dense", None, "all", "dense control (no pruning)"),
    "random": Method("random", RandomScorer, "global", "random baseline"),
    "global_magnitude": Method("global_magnitude", MagnitudeScorer, "global", "Han et al., NeurIPS 2015"),
    "layer_magnitude": Method("layer_magnitude", MagnitudeScorer, "layer", "Han et al., NeurIPS 2015"),
    "snip": Method("snip", SnipScorer, "global", "Lee et al., ICLR 2019"),
}


def get(method: str) -> Method:
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}") from None
