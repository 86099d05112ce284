"""Training throughput: our masked step vs a plain dense step vs torch.nn.utils.prune.

For each network, the same synthetic batch (input and labels on the device), the same
optimizer (SGD, momentum 0.9, Nesterov, weight decay 5e-4), three training steps:

* dense   : forward, cross-entropy, backward, optimizer step;
* masked  : prunelib's step (prunelib.train.loop): the dense step plus ``grad *= mask``
            for each pruned tensor between backward and step (pruned weights are zeroed
            once beforehand, so no weight re-masking is needed);
* tv_prune: torch.nn.utils.prune.custom_from_mask, which recomputes ``weight =
            weight_orig * mask`` in a forward pre-hook at every step.

The masks keep 1/8 of the prunable weights (global magnitude).  Steps alternate between
the three variants in rounds, so slow drift of the machine (other jobs, clocks) hits
them equally; images/s is the batch size over the median step time.  Prints a Markdown
table with the ratios masked/dense and tv_prune/dense.

    python benchmarks/train_throughput.py --device cpu --steps 10 --batch 32
    python benchmarks/train_throughput.py --device cuda --steps 100 --batch 128
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.nn.utils.prune  # noqa: E402,F401  (a submodule, not imported by torch)

from prunelib.nets import models  # noqa: E402
from prunelib.methods.masking import select_masks  # noqa: E402
from prunelib.train.loop import apply_masks  # noqa: E402

SHAPES = {"lenet5": (1, 28), "resnet20": (3, 32), "vgg16": (3, 32)}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _opt(model):
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)


def _plain_step(model):
    """A plain PyTorch training step of ``model`` (SGD, same settings as ours)."""
    opt = _opt(model)

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    return step


def make_steps(arch: str, device: torch.device, ratio: float = 8.0):
    channels, side = SHAPES[arch]
    torch.manual_seed(0)
    base = models.build(arch, 10, channels, side)
    names = models.prunable_names(base)
    params = dict(base.named_parameters())
    masks, _ = select_masks({n: params[n].detach().abs() for n in names}, ratio, "global", 0)

    dense_step = _plain_step(copy.deepcopy(base).to(device).train())

    ours = copy.deepcopy(base).to(device).train()
    fmasks = apply_masks(ours, masks)
    named = dict(ours.named_parameters())
    masked = [(named[n], m) for n, m in fmasks.items() if not bool(m.all())]
    ours_opt = _opt(ours)

    def masked_step(x, y):  # the loop body of prunelib.train.loop._train
        loss = F.cross_entropy(ours(x), y)
        ours_opt.zero_grad(set_to_none=False)
        loss.backward()
        for p, m in masked:
            p.grad.mul_(m)
        ours_opt.step()

    tv = copy.deepcopy(base).to(device).train()
    modules = dict(tv.named_modules())
    for n, m in masks.items():
        mod_name, _, pname = n.rpartition(".")
        torch.nn.utils.prune.custom_from_mask(modules[mod_name], pname, m.to(device))
    tv_step = _plain_step(tv)  # torch.nn.utils.prune masks in the forward pass itself

    return {"dense": dense_step, "masked": masked_step, "tv_prune": tv_step}, (channels, side)


def measure(arch: str, device: torch.device, batch: int, steps: int, warmup: int) -> dict:
    steps_fns, (channels, side) = make_steps(arch, device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, side, side, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    for _ in range(warmup):
        for fn in steps_fns.values():
            fn(x, y)
    _sync(device)
    times = {k: [] for k in steps_fns}
    for _ in range(steps):
        for name, fn in steps_fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn(x, y)
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: batch / statistics.median(v) for k, v in times.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--archs", nargs="+", default=["lenet5", "resnet20", "vgg16"], choices=sorted(SHAPES))
    ap.add_argument("--batch", type=int, default=128, help="batch size (all networks)")
    ap.add_argument("--vgg-batch", type=int, default=None, help="batch size for vgg16 (default: --batch)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {a.steps} timed steps after {a.warmup} warm-up, "
          "median; masks keep 1/8 of the prunable weights\n")
    print("| network | batch | dense img/s | masked (ours) img/s | torch prune img/s | masked/dense | "
          "torch prune/dense |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for arch in a.archs:
        batch = a.vgg_batch if (arch == "vgg16" and a.vgg_batch) else a.batch
        r = measure(arch, device, batch, a.steps, a.warmup)
        print(f"| {arch} | {batch} | {r['dense']:.0f} | {r['masked']:.0f} | {r['tv_prune']:.0f} | "
              f"{r['masked'] / r['dense']:.3f} | {r['tv_prune'] / r['dense']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
