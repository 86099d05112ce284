"""WoodFisher's block-diagonal inverse Fisher: the chunked Woodbury recursion of
``prunelib.methods.second_order.fisher_inverse_blocks`` against the one-gradient-at-a-time
Sherman–Morrison recursion it replaced (kept here only, as this benchmark's reference).

Both run in this process on the same gradients: N single-example gradients of the
cross-entropy loss of the network at initialisation (random MNIST-shaped images: timing
does not depend on pixel values), streamed from the model as the pipeline streams them,
blocks of ``--block-size`` weights within each tensor, damping λ (the registry defaults).
Each row times gradients + inverse; the gradients alone are timed too (the same for every
row). ``rel. diff`` is max |F⁻¹_new - F⁻¹_ref| / max |F⁻¹_ref| over all blocks.

    nice -n 5 python benchmarks/woodfisher_inverse.py --num-gradients 100 1000
    nice -n 5 python benchmarks/woodfisher_inverse.py --num-gradients 200 --chunks 8 16 32 64 128 --no-reference
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from prunelib import stages  # noqa: E402
from prunelib.methods import second_order as so  # noqa: E402
from prunelib.nets import models  # noqa: E402


def sherman_morrison_reference(grads, n_grads: int, blocks, damping: float) -> list[torch.Tensor]:
    """The previous ``fisher_inverse_blocks``: one rank-one step per gradient, batched over
    blocks of one size (one [k, s] mat-vec and one [k, s, s] outer-product temporary)."""
    by_size: dict[int, list[int]] = {}
    for i, (a, b) in enumerate(blocks):
        by_size.setdefault(b - a, []).append(i)
    inv = {s: torch.eye(s, dtype=torch.float64).repeat(len(ix), 1, 1) / damping for s, ix in by_size.items()}
    index = {s: torch.stack([torch.arange(blocks[i][0], blocks[i][1]) for i in ix]) for s, ix in by_size.items()}
    seen = 0
    for g in grads:
        seen += 1
        for s in by_size:
            gb = g[index[s]]
            cache = torch.bmm(inv[s], gb.unsqueeze(2)).squeeze(2)
            den = n_grads + (gb * cache).sum(1)
            inv[s] -= cache.unsqueeze(2) * (cache / den.unsqueeze(1)).unsqueeze(1)
    assert seen == n_grads
    out = [None] * len(blocks)
    for s, ix in by_size.items():
        for j, i in enumerate(ix):
            out[i] = inv[s][j]
    return out


def gradient_stream(arch: str, n: int):
    torch.manual_seed(0)
    model = stages.build_model(arch, "mnist")
    named = dict(model.named_parameters())
    params = {p: named[p] for p in models.prunable_names(model)}
    g = torch.Generator().manual_seed(0)
    batches = ((torch.rand(1, 1, 28, 28, generator=g),
                torch.randint(0, 10, (1,), generator=g)) for _ in range(n))
    model.eval()
    sizes = [p.numel() for p in params.values()]
    return so.flat_gradients(model, params, batches), sizes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="lenet300")
    ap.add_argument("--num-gradients", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--chunks", type=int, nargs="+", default=[so.FISHER_CHUNK])
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--damping", type=float, default=1e-5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-reference", action="store_true", help="skip the one-at-a-time recursion")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for n in args.num_gradients:
        grads, sizes = gradient_stream(args.arch, n)
        blocks = so.blocks_of(sizes, args.block_size)
        t = time.perf_counter()
        for _ in grads:
            pass
        t_grad = time.perf_counter() - t
        print(f"{args.arch} N = {n}: {sum(sizes):,} weights, {len(blocks):,} blocks; gradients alone "
              f"{t_grad:.2f} s", flush=True)
        ref = None
        if not args.no_reference:
            grads, _ = gradient_stream(args.arch, n)
            t = time.perf_counter()
            ref = sherman_morrison_reference(grads, n, blocks, args.damping)
            sec = time.perf_counter() - t
            rows.append((n, "Sherman–Morrison, 1 at a time (before)", sec, t_grad, ""))
            print(f"  reference {sec:.2f} s", flush=True)
        for m in args.chunks:
            grads, _ = gradient_stream(args.arch, n)
            t = time.perf_counter()
            new = so.fisher_inverse_blocks(grads, n, blocks, args.damping, chunk=m)
            sec = time.perf_counter() - t
            diff = ""
            if ref is not None:
                num = max(float((a - b).abs().max()) for a, b in zip(new, ref))
                den = max(float(b.abs().max()) for b in ref)
                diff = f"{num / den:.1e}"
            rows.append((n, f"Woodbury, m = {m}", sec, t_grad, diff))
            print(f"  chunk {m}: {sec:.2f} s {diff}", flush=True)
            del new
        del ref

    print(f"\n{args.arch}, blocks of {args.block_size}, λ = {args.damping:g}, {args.threads} thread(s):\n")
    print("| N | recursion | s (gradients + inverse) | s (inverse alone) | rel. diff to before |")
    print("|---:|---|---:|---:|---:|")
    for n, name, sec, t_grad, diff in rows:
        print(f"| {n} | {name} | {sec:.2f} | {sec - t_grad:.2f} | {diff or '—'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
