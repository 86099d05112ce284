"""L-OBS per layer, before and after its OBC loop was made cheaper, side by side in one run.

Before: the plain loop of commit 427ddfd (tests/obc_reference.py, kept there as the
tests' reference): every OBC step reads and writes each row's full H⁻¹ [cols, cols], and
the updated rows come from a second pass that replays each row's removals.  After:
``second_order.lobs_layer`` (each row's H⁻¹ compacted to its alive columns, the updated
rows in closed form).  Both prune one layer to round(n / r) with its update, as the mask
job does (``lobs_layer``: the damped H, the removal order and ΔL, the selection, the
update); H = 2XXᵀ/N comes from the layer's inputs over lobs's scoring batch (random uint8
images with the dataset's shape, as benchmarks/method_cost.py: timing does not depend on
pixel values), W is the network's initial weight (seed 0).

``--rows N`` times both on the layer's first N rows only (the plain loop on LeNet-300-100's
fc1 takes over a quarter of an hour; its cost is linear in the rows, in chunks of 64), and
the after version once more on the whole layer.  Each measurement runs in a fresh process
(peak extra memory: its peak resident set minus the one before the call); repeats are
interleaved.  The two versions' masks must be equal and their weights equal to rounding:
the table says so.

    python benchmarks/obc_rows_cost.py --layers lenet300:fc1.weight lenet5:conv2.weight --rows 64

Prints a Markdown table (also written to reports/benchmarks/obc_rows_cost.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from method_cost import CIFAR_ARCHS, _rss_bytes  # noqa: E402 (this folder is the script's sys.path[0])

REPO = Path(__file__).resolve().parents[1]


def _layer(arch: str, param: str):
    """(W [rows, ...] float64, H [cols, cols]) of one prunable layer of a fresh network."""
    import torch

    from prunelib import stages
    from prunelib.config import ScoreSettings
    from prunelib.data import datasets
    from prunelib.methods import second_order as so
    from prunelib.methods.scorers.obs import LobsScorer

    dataset = "cifar10" if arch in CIFAR_ARCHS else "mnist"
    d = datasets.info(dataset)
    g = torch.Generator().manual_seed(0)
    n = 2000
    shape = (n, d.image_size, d.image_size) if d.in_channels == 1 else (n, d.in_channels, d.image_size, d.image_size)
    data = {"train_x": torch.randint(0, 256, shape, generator=g, dtype=torch.uint8),
            "train_y": torch.arange(n) % d.num_classes}
    s = ScoreSettings().data_for("lobs")
    batches = list(datasets.scoring_batches(data, dataset, 0, s["batch_size"], s["num_batches"], s["class_balanced"]))
    torch.manual_seed(0)  # (the same initial weights in every process)
    model = stages.build_model(arch, dataset)
    named = dict(model.named_parameters())
    if param not in named:
        raise SystemExit(f"--layers {arch}:{param}: no such parameter; allowed: {', '.join(named)}")
    module = LobsScorer._modules(model, {param: named[param]})
    model.eval()
    h = so.layer_inputs(model, module, batches)[param]
    return named[param].detach().double(), h


def child(args) -> dict:
    import torch

    sys.path.insert(0, str(REPO))
    from prunelib.methods import masking
    from prunelib.methods import second_order as so
    from tests import obc_reference

    torch.set_num_threads(args.threads)
    arch, param = args.layer.split(":")
    w, h = _layer(arch, param)
    w = w[:args.rows] if args.rows else w
    keep = masking.kept_count(w.numel(), args.ratio)
    fn = obc_reference.lobs_layer if args.version == "before" else so.lobs_layer
    before = _rss_bytes()
    t = time.perf_counter()
    mask, new, _, _ = fn(w, h, keep, 0, f"lobs:{param}", 0.01)  # (lobs's default damping)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    torch.save({"mask": mask, "weight": new}, args.save)
    return {"seconds": seconds, "peak_extra_bytes": max(0, peak - before), "rows": w.shape[0],
            "cols": w[0].numel()}


def run_child(layer: str, version: str, rows: int, args, save: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", "--layer", layer, "--version", version, "--rows", str(rows),
           "--ratio", str(args.ratio), "--threads", str(args.threads), "--save", str(save)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if res.returncode:
        raise SystemExit(f"measurement {layer} {version} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", nargs="+", default=["lenet300:fc1.weight", "lenet5:conv2.weight"],
                    help="arch:parameter of each layer")
    ap.add_argument("--rows", type=int, default=64, help="rows both versions prune (0: all)")
    ap.add_argument("--ratio", type=float, default=16.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "reports" / "benchmarks" / "obc_rows_cost.md"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--layer", help=argparse.SUPPRESS)
    ap.add_argument("--version", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    import torch

    samples: dict = {}
    same: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for layer in args.layers:
                for version, rows in (("before", args.rows), ("after", args.rows), ("after", 0)):
                    save = Path(tmp) / f"{version}-{rows}.pt"
                    r = run_child(layer, version, rows, args, save)
                    samples.setdefault((layer, version, rows), []).append(r)
                    print(f"repeat {rep + 1} {layer:24s} {version:6s} {r['rows']:4d} x {r['cols']:4d} "
                          f"{r['seconds']:8.2f} s  +{r['peak_extra_bytes'] / 2**20:6.0f} MiB", flush=True)
                a, b = (torch.load(Path(tmp) / f"{v}-{args.rows}.pt") for v in ("before", "after"))
                scale = float(a["weight"].abs().max())
                same[layer] = (torch.equal(a["mask"], b["mask"]),
                               float((a["weight"].masked_fill(~a["mask"], 0) - b["weight"]).abs().max()) / scale)

    def med(layer, version, rows, key):
        return statistics.median(s[key] for s in samples[(layer, version, rows)])

    lines = [f"L-OBS on one layer at r = {args.ratio:g} (cpu, {args.threads} thread(s), medians of "
             f"{args.repeats} interleaved repeat(s), each in a fresh process; peak extra memory over the "
             "loaded layer): before = the plain two-pass loop (tests/obc_reference.py), after = "
             "second_order.lobs_layer.", "",
             "| layer | rows x cols | before s | before MiB | after s | after MiB | before / after | "
             "masks equal | max abs weight difference / max abs weight | whole layer | after s | after MiB |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|"]
    for layer in args.layers:
        sub, full = samples[(layer, "before", args.rows)][0], samples[(layer, "after", 0)][0]
        b, a = med(layer, "before", args.rows, "seconds"), med(layer, "after", args.rows, "seconds")
        lines.append(
            f"| {layer} | {sub['rows']} x {sub['cols']} | {b:.2f} | "
            f"{med(layer, 'before', args.rows, 'peak_extra_bytes') / 2**20:.0f} | {a:.2f} | "
            f"{med(layer, 'after', args.rows, 'peak_extra_bytes') / 2**20:.0f} | {b / a:.1f} | "
            f"{'yes' if same[layer][0] else 'NO'} | {same[layer][1]:.1e} | {full['rows']} x {full['cols']} | "
            f"{med(layer, 'after', 0, 'seconds'):.2f} | {med(layer, 'after', 0, 'peak_extra_bytes') / 2**20:.0f} |")
    text = "\n".join(lines)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
    return 0 if all(s[0] for s in same.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
