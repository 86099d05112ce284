"""Magnitude: s = |theta| (Han et al., 2015; the study's Eq. 2.1)."""

from __future__ import annotations


from prunelib.methods.scorers.base import Scorer


class MagnitudeScorer(Scorer):
    def score(self, model, params, batches, seed):
        return {name: p.detach().abs() for name, p in params.items()}  # abs() is already a new tensor
