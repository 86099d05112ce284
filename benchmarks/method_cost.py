"""Cost of each method's scoring and mask selection, in units of one dense forward+backward.

For each network, one unit is the median time of a forward and backward pass of the
cross-entropy loss on one scoring batch (same batch size, same device).  Each method is
then timed end to end as the pipeline runs it: scoring (``compute_scores``) and mask
selection at ratio r (for SynFlow, its 100 rescoring rounds happen at mask time).

    python benchmarks/method_cost.py                         # lenet5 and lenet300, r = 16
    python benchmarks/method_cost.py --archs lenet5 --repeats 3 --ratio 64

Prints a Markdown table (also written to reports/benchmarks/method_cost.md).  All rows of
one table come from one run, so their ratios are comparable even on a noisy machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prunelib import config, datasets, masking, models, scorers, stages  # noqa: E402
from prunelib.config import ScoreSettings  # noqa: E402
from prunelib.training import resolve_device  # noqa: E402


def synthetic_data(dataset: str, n: int = 2000) -> dict:
    """Random uint8 images with the dataset's shape: timing does not depend on pixel values."""
    d = datasets.info(dataset)
    g = torch.Generator().manual_seed(0)
    shape = (n, d.image_size, d.image_size) if d.in_channels == 1 else (n, d.in_channels, d.image_size,
                                                                          d.image_size)
    return {"train_x": torch.randint(0, 256, shape, generator=g, dtype=torch.uint8),
            "train_y": torch.arange(n) % d.num_classes}


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["lenet5", "lenet300"])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--methods", nargs="+", default=config.known("methods"))
    ap.add_argument("--ratio", type=float, default=16.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "reports" / "benchmarks" / "method_cost.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    data = synthetic_data(args.dataset)
    settings = ScoreSettings()
    lines = [f"Scoring + mask selection at r = {config.format_ratio(args.ratio)}, in units of one dense "
             f"forward+backward on the same batch ({dev}, {args.threads} thread(s), median of "
             f"{args.repeats}).", ""]
    header = "| method | " + " | ".join(f"{a} (units) | {a} (s)" for a in args.archs) + " |"
    lines += [header, "|---|" + "---:|---:|" * len(args.archs)]
    results: dict[str, dict[str, tuple[float, float]]] = {m: {} for m in args.methods}
    units = {}
    for arch in args.archs:
        model = stages.build_model(arch, args.dataset).to(dev)
        prunable = models.prunable_names(model)
        bs = settings.batch_size
        x, y = next(datasets.scoring_batches(data, args.dataset, 0, bs, 1))
        x, y = x.to(dev), y.to(dev)

        def unit_pass():
            model.zero_grad()
            F.cross_entropy(model(x), y).backward()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        unit_pass()
        unit = timed(unit_pass, max(5, args.repeats))
        units[arch] = unit
        for method in args.methods:
            m = scorers.get(method)

            def run():
                net = stages.build_model(arch, args.dataset).to(dev)
                scores, _ = stages.compute_scores(net, prunable, method, data, args.dataset, 0, settings, dev)
                scorer = m.make_scorer(settings)
                if scorer.needs_ratio:
                    named = dict(net.named_parameters())
                    scorer.prune(net, {n: named[n] for n in prunable}, args.ratio, m.scope, 0, method)
                else:
                    masking.select_masks(scores, args.ratio, m.scope, 0, method)
                if dev.type == "cuda":
                    torch.cuda.synchronize()

            seconds = timed(run, args.repeats)
            results[method][arch] = (seconds / unit, seconds)
            print(f"{arch:10s} {method:18s} {seconds:8.3f} s  {seconds / unit:8.1f} units", flush=True)
    for method in args.methods:
        cells = " | ".join(f"{results[method][a][0]:.1f} | {results[method][a][1]:.3f}" for a in args.archs)
        lines.append(f"| {method} | {cells} |")
    lines += ["", "One unit: " + ", ".join(f"{a} {1000 * u:.1f} ms" for a, u in units.items()) + "."]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
