"""What every stage shares: the network an artifact describes, and the provenance each
artifact records."""

from __future__ import annotations

from pathlib import Path

import torch

import prunelib
from prunelib.data import datasets
from prunelib.foundations.artifacts import load_pt
from prunelib.nets import models


def provenance() -> dict:
    """The versions that made an artifact (in every artifact's meta)."""
    return {"prunelib_version": prunelib.__version__, "torch_version": str(torch.__version__)}


def build_model(arch: str, dataset: str, options: dict | None = None) -> torch.nn.Module:
    """``arch`` shaped for ``dataset``; ``options``: ``ModelSettings.options_for(arch)``."""
    d = datasets.info(dataset)
    return models.build(arch, d.num_classes, d.in_channels, d.image_size, **(options or {}))


def load_model(init_path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Network rebuilt from an init (or final) artifact, and the artifact's meta."""
    return model_from(load_pt(init_path))


def model_from(blob: dict) -> tuple[torch.nn.Module, dict]:
    """Network rebuilt from a loaded weights artifact ({state_dict, meta}), and its meta."""
    meta = blob["meta"]
    model = build_model(meta["arch"], meta["dataset"], meta.get("model"))
    if meta.get("eigendamage_spec"):  # a network EigenDamage built (prunelib/methods/eigendamage.py)
        from prunelib.methods import eigendamage

        model = eigendamage.skeleton(model, meta["eigendamage_spec"])
    model.load_state_dict(blob["state_dict"])
    return model, meta


def cpu_state(model: torch.nn.Module) -> dict:
    """A detached CPU copy of the model's weights (what a weights artifact stores)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
