"""Masked training and evaluation.

Pruned weights stay exactly zero throughout: they are zeroed once before training, and
after every backward pass their gradients are multiplied by the mask *before* the
optimizer step.  With a zero gradient and a zero weight, SGD's weight decay
(wd * theta = 0), momentum buffer (mu * 0 + 0 = 0) and Nesterov correction all stay
zero, so the update is exactly 0 - lr * 0 = 0; Adam's moments likewise stay zero and
its update is 0 / (sqrt(0) + eps) = 0.  No re-masking of weights is needed.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable

import torch
import torch.nn.functional as F

from prunelib.config import TrainSettings
from prunelib.errors import PrunelibError
from prunelib.datasets import to_float, train_subset_indices
from prunelib.seeding import generator


class TrainingDiverged(PrunelibError, RuntimeError):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device = cuda was requested but no CUDA device is available; use device: auto or cpu")
    return torch.device(name)


def make_optimizer(params, s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, nesterov=s.nesterov and s.momentum > 0,
                               weight_decay=s.weight_decay)
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    raise ValueError(f"unknown optimizer {s.optimizer!r}; allowed: sgd, adam")


def lr_at(epoch: int, s: TrainSettings) -> float:
    """Learning rate for ``epoch`` (0-based)."""
    if s.lr_schedule == "constant":
        return s.lr
    if s.lr_schedule == "step":
        return s.lr * s.gamma ** sum(1 for m in s.milestones if epoch >= m)
    if s.lr_schedule == "cosine":
        return 0.5 * s.lr * (1 + math.cos(math.pi * epoch / s.epochs))
    raise ValueError(f"unknown lr_schedule {s.lr_schedule!r}; allowed: constant, step, cosine")


def apply_masks(model: torch.nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Zero the pruned weights in place; return the masks as float tensors on the model's device."""
    params = dict(model.named_parameters())
    out = {}
    with torch.no_grad():
        for name, m in masks.items():
            p = params[name]
            fm = m.to(device=p.device, dtype=p.dtype)
            p.mul_(fm)
            out[name] = fm
    return out


def train(model: torch.nn.Module, masks: dict[str, torch.Tensor], data: dict, dataset: str,
          s: TrainSettings, seed: int, device: torch.device,
          progress: Callable[[str], None] | None = None) -> list[dict]:
    """Train the masked ``model`` in place; return one log row per epoch."""
    model.to(device)
    fmasks = apply_masks(model, masks)
    params = dict(model.named_parameters())
    masked = [(params[n], m) for n, m in fmasks.items() if not bool(m.all())]
    opt = make_optimizer(model.parameters(), s)
    idx = train_subset_indices(data["train_y"].numel(), s.train_subset, seed)
    x_all = data["train_x"][idx].to(device)
    y_all = data["train_y"][idx].to(device)
    n = y_all.numel()
    rows = []
    for epoch in range(s.epochs):
        lr = lr_at(epoch, s)
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        order = torch.randperm(n, generator=generator(seed, f"shuffle:{epoch}")).to(device)
        start = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for b in range(0, n, s.batch_size):
            sel = order[b:b + s.batch_size]
            x = to_float(x_all[sel], dataset)
            y = y_all[sel]
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            for p, m in masked:
                p.grad.mul_(m)
            opt.step()
            loss_sum += loss.detach().double() * y.numel()
            correct += (out.detach().argmax(1) == y).sum()
        train_loss = float(loss_sum) / n
        seconds = time.perf_counter() - start
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"training loss became {train_loss} in epoch {epoch + 1} (lr {lr})")
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss,
               "train_top1": float(correct) / n, "seconds": seconds}
        rows.append(row)
        if progress:
            progress(f"epoch {epoch + 1}/{s.epochs} lr {lr:.3g} loss {train_loss:.4f} "
                     f"top1 {100 * row['train_top1']:.2f}% {seconds:.1f}s ({n / seconds:.0f} img/s)")
    return rows


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: dict, dataset: str, batch_size: int,
             device: torch.device) -> dict:
    """Top-1, top-5 and mean cross-entropy on the test split, with the final weights."""
    model.to(device).eval()
    x_all, y_all = data["test_x"], data["test_y"]
    n = y_all.numel()
    top1 = top5 = 0
    loss = 0.0
    for b in range(0, n, batch_size):
        x = to_float(x_all[b:b + batch_size].to(device), dataset)
        y = y_all[b:b + batch_size].to(device)
        out = model(x)
        loss += float(F.cross_entropy(out, y, reduction="sum"))
        k = min(5, out.shape[1])
        topk = out.topk(k, dim=1).indices
        hits = topk == y.unsqueeze(1)
        top1 += int(hits[:, 0].sum())
        top5 += int(hits.any(dim=1).sum())
    return {"top1": top1 / n, "top5": top5 / n, "test_loss": loss / n}


def progress_printer(prefix: str) -> Callable[[str], None]:
    def emit(msg: str) -> None:
        print(f"[{prefix}] {msg}", file=sys.stderr, flush=True)

    return emit
