"""Cost of each method's scoring and mask selection: time in units of one dense
forward+backward, and peak extra memory.

For each network, one unit is the median time of a forward and backward pass of the
cross-entropy loss on one scoring batch (same batch size, same device, 3 passes).  Each
method is timed end to end as the pipeline runs it: scoring (``compute_scores``) and mask
selection at ratio r (for SynFlow, its rescoring rounds happen at mask time; the removal
ranking is not built, as in a cell without the ``invert`` variant).

Every measurement runs in a fresh process, so its peak memory is its own: peak extra
memory is the process's peak resident set (``ru_maxrss``; on CUDA, the peak allocated
device memory) minus its resident set with the model and data loaded, just before the
method starts.  Repeats are interleaved (repeat 1 of every cell, then repeat 2, ...), so
a slow spell of a shared machine hits all cells alike; the table gives medians.

With ``--baseline DIR`` (a checkout of another version of prunelib, e.g.
``git archive e68aa8b | tar -x -C /tmp/before``), every cell is also measured with that
version's code, interleaved with this one, and the table shows both: before and after
from one run.

    python benchmarks/method_cost.py                         # lenet5 and lenet300, r = 16
    python benchmarks/method_cost.py --archs vgg16 resnet20 --methods synflow grasp \\
        --repeats 3 --baseline /tmp/before
    python benchmarks/method_cost.py --archs lenet300 lenet5 resnet20 vgg16 \
        --methods kron_obd kron_obs eigendamage --ratio 4 --repeats 1

Filter methods (``structured``) are timed with their filter selection; ``eigendamage`` (not a
scorer) end to end: K-FAC factors, eigendecompositions, selection and the built network.

Prints a Markdown table (also written to reports/benchmarks/method_cost.md).
"""

from __future__ import annotations

import argparse
import inspect
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CIFAR_ARCHS = ("vgg16", "resnet20", "resnet32", "resnet56", "resnet110")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def child(args) -> dict:
    """One measurement in this (fresh) process: ``method`` = "unit" times the unit."""
    sys.path.insert(0, args.code)
    import torch
    import torch.nn.functional as F

    from prunelib import stages
    from prunelib.config import ScoreSettings

    try:  # the subpackage layout
        from prunelib.data import datasets
        from prunelib.methods import masking, scorers
        from prunelib.nets import models
        from prunelib.train.loop import resolve_device
    except ImportError:  # a --baseline snapshot from before it (one flat package)
        from prunelib import datasets, masking, models, scorers
        from prunelib.training import resolve_device

    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    d = datasets.info(args.dataset)
    g = torch.Generator().manual_seed(0)
    n = 2000  # random uint8 images with the dataset's shape: timing does not depend on pixel values
    shape = (n, d.image_size, d.image_size) if d.in_channels == 1 else (n, d.in_channels, d.image_size, d.image_size)
    data = {"train_x": torch.randint(0, 256, shape, generator=g, dtype=torch.uint8),
            "train_y": torch.arange(n) % d.num_classes}
    settings = ScoreSettings()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model = stages.build_model(args.arch, args.dataset).to(dev)
    prunable = models.prunable_names(model)
    if args.method == "unit":
        x, y = next(datasets.scoring_batches(data, args.dataset, 0, settings.batch_size, 1))
        x, y = x.to(dev), y.to(dev)
        times = []
        for i in range(4):
            t = time.perf_counter()
            model.zero_grad()
            F.cross_entropy(model(x), y).backward()
            sync()
            if i:  # the first pass warms up
                times.append(time.perf_counter() - t)
        return {"seconds": statistics.median(times)}
    if args.method == "eigendamage":  # not a scorer: factors, rotation, selection and the built network
        return _eigendamage(args, data, settings, dev, sync, model, prunable)
    m = scorers.get(args.method)
    del model
    cost = _Cost(dev, sync)
    net = stages.build_model(args.arch, args.dataset).to(dev)
    params = inspect.signature(stages.compute_scores).parameters
    if "scorer" in params:  # the stage contracts' API: one scorer per job
        data_s, knobs = settings.data_for(args.method), settings.knobs_for(args.method)
        if getattr(args, "num_gradients", None) and hasattr(m.scorer_class(), "_inverses"):
            data_s = {**data_s, "num_batches": args.num_gradients}  # (second-order: fewer Fisher gradients)
        if getattr(args, "block_size", None) and "block_size" in knobs:
            knobs = {**knobs, "block_size": args.block_size}  # (woodfisher: smaller blocks, less memory)
        scorer = m.make_scorer(knobs)
        if getattr(scorer, "updates_weights", False):
            scores = None  # (the score stage's one-shot saliencies are not on the pipeline's critical path
            # twice: the mask stage recomputes its Hessian; timed there, below)
        else:
            scores, _ = stages.compute_scores(net, prunable, scorer, data, args.dataset, 0, data_s, dev)
    elif "knobs" in params:  # a --baseline snapshot from the registry's API
        data_s, knobs = settings.data_for(args.method), settings.knobs_for(args.method)
        scores, _ = stages.compute_scores(net, prunable, args.method, data, args.dataset, 0, data_s, knobs, dev)
        scorer = m.make_scorer(knobs)
    else:  # a --baseline snapshot from before it
        scores, _ = stages.compute_scores(net, prunable, args.method, data, args.dataset, 0, settings, dev)
        scorer = m.make_scorer(settings)
    if getattr(scorer, "updates_weights", False):  # OBS, WoodFisher, L-OBS: pruned with their update
        named = dict(net.named_parameters())
        batches = [(x.to(dev), y.to(dev)) for x, y in
                   datasets.scoring_batches(data, args.dataset, 0, data_s["batch_size"], data_s["num_batches"],
                                            data_s["class_balanced"])]
        scorer.prune_update(net, {p: named[p] for p in prunable}, batches, args.ratio, m.scope, 0, args.method)
    elif getattr(m, "structured", False):  # filter methods: whole filters, as the mask stage selects them
        from prunelib.methods import structured
        structured.select_filters(net, scores, prunable, args.ratio, m.scope, 0)
    elif scorer.needs_ratio:
        named = dict(net.named_parameters())
        kw = {"ranking": False} if "ranking" in inspect.signature(scorer.prune).parameters else {}
        scorer.prune(net, {p: named[p] for p in prunable}, args.ratio, m.scope, 0, args.method, **kw)
    else:
        masking.select_masks(scores, args.ratio, m.scope, 0, args.method)
    return cost.done()


def _eigendamage(args, data, settings, dev, sync, model, prunable) -> dict:
    """EigenDamage end to end (prunelib/methods/eigendamage.py): K-FAC factors on the scoring
    batches (128 x ``score.num_batches``), eigendecompositions, selection at r, the built network."""
    from prunelib.data import datasets
    from prunelib.methods import eigendamage

    del model
    cost = _Cost(dev, sync)
    from prunelib import stages

    net = stages.build_model(args.arch, args.dataset).to(dev)
    batches = [(x.to(dev), y.to(dev)) for x, y in
               datasets.scoring_batches(data, args.dataset, 0, settings.batch_size, settings.num_batches)]
    eigendamage.prune(net, prunable, batches, args.ratio, 0)
    return cost.done()


class _Cost:
    """Seconds and peak extra memory (host RSS; device allocations on CUDA) from its
    creation to ``done()``: what one method's scoring and selection cost."""

    def __init__(self, dev, sync):
        import torch

        self.dev, self.sync, self.before = dev, sync, _rss_bytes()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.dev_before = torch.cuda.memory_allocated()
        self.t = time.perf_counter()

    def done(self) -> dict:
        import torch

        self.sync()
        seconds = time.perf_counter() - self.t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out = {"seconds": seconds, "peak_extra_bytes": max(0, peak - self.before)}
        if self.dev.type == "cuda":
            out["device_peak_extra_bytes"] = torch.cuda.max_memory_allocated() - self.dev_before
        return out


def run_child(code: str, arch: str, dataset: str, method: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", "--code", code, "--archs", arch, "--dataset", dataset,
           "--methods", method, "--ratio", str(args.ratio), "--device", args.device, "--threads", str(args.threads)]
    if args.num_gradients:
        cmd += ["--num-gradients", str(args.num_gradients)]
    if args.block_size:
        cmd += ["--block-size", str(args.block_size)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"measurement {code} {arch} {method} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def write_table(samples: dict, args, versions: dict, repeats_done: int) -> str:
    def med(arch, version, method, key):
        return statistics.median(s[key] for s in samples[(arch, version, method)])

    mem_key = "device_peak_extra_bytes" if args.device.startswith("cuda") else "peak_extra_bytes"
    lines = [f"Scoring + mask selection at r = {args.ratio:g}, in units of one dense forward+backward on the "
             f"same batch ({args.device}, {args.threads} thread(s)); medians of {repeats_done} interleaved "
             f"repeats, each in a fresh process; peak extra memory over the loaded model and data.", "",
             "| network | method | " + " | ".join(f"{v} units | {v} s | {v} peak extra MiB" for v in versions)
             + (" | after / before (units) |" if len(versions) > 1 else " |"),
             "|---|---|" + "---:|---:|---:|" * len(versions) + ("---:|" if len(versions) > 1 else "")]
    for arch in args.archs:
        for method in args.methods:
            cells = " | ".join(f"{med(arch, v, method, 'units'):.2f} | {med(arch, v, method, 'seconds'):.2f} | "
                               f"{med(arch, v, method, mem_key) / 2**20:.0f}" for v in versions)
            ratio = ""
            if len(versions) > 1:
                ratio = f" | {med(arch, 'after', method, 'units') / med(arch, 'before', method, 'units'):.2f}"
            lines.append(f"| {arch} | {method} | {cells}{ratio} |")
    lines += ["", "One unit: " + ", ".join(f"{a} ({v}) {1000 * med(a, v, 'unit', 'seconds'):.0f} ms"
                                           for a in args.archs for v in versions) + "."]
    text = "\n".join(lines)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["lenet5", "lenet300"])
    ap.add_argument("--dataset", default="auto", help="auto: cifar10 for VGG/ResNets, mnist otherwise")
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--ratio", type=float, default=16.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--num-gradients", type=int, default=None,
                    help="obs/woodfisher: the Fisher's gradients instead of their default")
    ap.add_argument("--block-size", type=int, default=None,
                    help="woodfisher: weights per diagonal block instead of its default 128 (memory: n x block "
                         "float64 for the inverses)")
    ap.add_argument("--baseline", default=None, help="a checkout of another prunelib version to compare with")
    ap.add_argument("--out", default=str(REPO / "reports" / "benchmarks" / "method_cost.md"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--code", default=str(REPO), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(argparse.Namespace(**{**vars(args), "arch": args.archs[0],
                                                     "method": args.methods[0]}))))
        return 0
    if args.methods is None:
        sys.path.insert(0, str(REPO))
        from prunelib import config
        args.methods = config.known("methods")
    versions = {"after": str(REPO)} if args.baseline is None else {"before": args.baseline, "after": str(REPO)}
    ds = {a: (args.dataset if args.dataset != "auto" else ("cifar10" if a in CIFAR_ARCHS else "mnist"))
          for a in args.archs}
    samples: dict = {}
    for rep in range(args.repeats):
        for arch in args.archs:
            for version, code in versions.items():
                for method in ["unit"] + args.methods:
                    r = run_child(code, arch, ds[arch], method, args)
                    samples.setdefault((arch, version, method), []).append(r)
                    if method != "unit":
                        unit = samples[(arch, version, "unit")][-1]["seconds"]
                        r["units"] = r["seconds"] / unit
                        print(f"repeat {rep + 1} {arch:9s} {version:6s} {method:18s} {r['seconds']:8.2f} s "
                              f"{r['units']:7.2f} units  +{r['peak_extra_bytes'] / 2**20:7.0f} MiB", flush=True)
        text = write_table(samples, args, versions, rep + 1)  # after every repeat: a partial run still reports
    print(text)

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
