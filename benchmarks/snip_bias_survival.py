"""How many biases SNIP keeps when the biases are drawn before pruning, as the SNIP code's
first release drew them (init scheme ``variance_scaling_with_biases``; since commit
f028496 their code draws zero biases, and every bias is pruned).

    python benchmarks/snip_bias_survival.py [--data results/data/mnist.pt] [--seeds 0 1 2]

One scoring batch of 100 training images (the ``snip`` preset's), biases ranked with the
weights (``prune.include_bias``), the kept count round((weights + biases) / r); prints
kept / total per bias tensor for the ``snip`` preset's networks and ratios.  The draw
uses ``torch.manual_seed(seed)``, not the workflow's seeded streams: it shows the
mechanism, not the masks of the runs.
"""

from __future__ import annotations

import argparse

import torch

from prunelib import config, stages
from prunelib.catalogue import registry
from prunelib.data.datasets import load_prepared
from prunelib.methods import masking
from prunelib.nets import init_schemes, models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="results/data/mnist.pt")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    data = load_prepared(args.data)
    preset = config.resolve({"preset": "snip"})  # its networks, ratios and scoring: not retyped here
    scoring = {k: preset["score"][k] for k in ("batch_size", "num_batches", "class_balanced")}
    ratios = [r for r in preset["grid"]["ratios"] if r != 1]
    for arch in preset["grid"]["archs"]:
        for seed in args.seeds:
            torch.manual_seed(seed)
            net = init_schemes.apply(models.build(arch, 10, 1, 28), "variance_scaling_with_biases")
            prunable = models.prunable_names(net, include_bias=True)
            scores, _ = stages.compute_scores(net, prunable, registry.method("snip").make_scorer({}), data, "mnist",
                                              seed, scoring, torch.device("cpu"))
            for r in ratios:
                masks, _ = masking.select_masks(scores, r, "global", seed, method="snip")
                kept = ", ".join(f"{k} {int(m.sum())}/{m.numel()}" for k, m in masks.items() if k.endswith("bias"))
                print(f"{arch} seed {seed} r = {r}: {kept}", flush=True)


if __name__ == "__main__":
    main()
