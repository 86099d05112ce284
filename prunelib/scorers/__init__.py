"""Method registry: each pruning method is a scorer plus a ranking scope.

``global`` ranks all prunable weights together; ``layer`` prunes every tensor to the
same density; ``all`` keeps everything (the dense control).  A scorer is built from the
score settings (``config.ScoreSettings``) so method knobs reach it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from prunelib.config import ScoreSettings
from prunelib.scorers.activation import ActivationScorer
from prunelib.scorers.base import Scorer
from prunelib.scorers.gradient import GradientScorer
from prunelib.scorers.grasp import GraspScorer
from prunelib.scorers.lamp import LampScorer
from prunelib.scorers.lap import LapScorer
from prunelib.scorers.magnitude import MagnitudeScorer
from prunelib.scorers.obd import ObdScorer
from prunelib.scorers.random import RandomScorer
from prunelib.scorers.snip import SnipScorer
from prunelib.scorers.synflow import SynflowScorer


@dataclass(frozen=True)
class Method:
    name: str
    build: Callable[[ScoreSettings], Scorer] | None
    scope: str
    paper: str

    def make_scorer(self, settings: ScoreSettings | None = None) -> Scorer:
        return self.build(settings or ScoreSettings())


def _plain(cls):
    return lambda s: cls()


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("dense", None, "all", "dense control (no pruning)"),
    Method("random", _plain(RandomScorer), "global", "random baseline"),
    Method("global_magnitude", _plain(MagnitudeScorer), "global", "Han et al., NeurIPS 2015"),
    Method("layer_magnitude", _plain(MagnitudeScorer), "layer", "Han et al., NeurIPS 2015"),
    Method("global_gradient", _plain(GradientScorer), "global", "James 2022, Eq. 2.2"),
    Method("layer_gradient", _plain(GradientScorer), "layer", "James 2022, Eq. 2.2"),
    Method("global_activation", _plain(ActivationScorer), "global", "James 2022, Eq. 2.3"),
    Method("layer_activation", _plain(ActivationScorer), "layer", "James 2022, Eq. 2.3"),
    Method("global_lap", _plain(LapScorer), "global", "Park et al., ICLR 2020"),
    Method("layer_lap", _plain(LapScorer), "layer", "Park et al., ICLR 2020"),
    Method("lamp", _plain(LampScorer), "global", "Lee et al., ICLR 2021"),
    Method("snip", _plain(SnipScorer), "global", "Lee et al., ICLR 2019"),
    Method("grasp", _plain(GraspScorer), "global", "Wang et al., ICLR 2020"),
    Method("synflow", lambda s: SynflowScorer(rounds=s.synflow_rounds), "global", "Tanaka et al., NeurIPS 2020"),
    Method("obd", lambda s: ObdScorer(estimator=s.obd_estimator, probes=s.obd_probes), "global",
           "LeCun et al., NeurIPS 1989"),
)}


def get(method: str) -> Method:
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}") from None
