"""Masked training and evaluation.

Pruned weights stay exactly zero throughout: they are zeroed once before training, and
after every backward pass their gradients are multiplied by the mask *before* the
optimizer step.  With a zero gradient and a zero weight, SGD's weight decay
(wd * theta = 0), momentum buffer (mu * 0 + 0 = 0) and Nesterov correction all stay
zero, so the update is exactly 0 - lr * 0 = 0; Adam's moments likewise stay zero and
its update is 0 / (sqrt(0) + eps) = 0.  No re-masking of weights is needed.

The whole (uint8) training split lives on the device; each batch is gathered, augmented
and normalised there, with no per-image Python work:

* ``augment: cifar`` is the standard CIFAR augmentation (He et al., CVPR 2016, Sec. 4.2):
  pad 4 pixels of zeros on each side, take a random 32x32 crop, flip horizontally with
  probability 1/2.  The offsets and flips of an epoch are drawn at once on the CPU from
  the run's seed (stream ``augment:<epoch>``), so they are the same on every device, and
  applied to the whole batch as one gather.
* ``precision: bf16`` (or its older name ``amp: bf16``) runs forward and loss under
  ``torch.autocast`` in bfloat16 on CUDA (weights, gradients and optimizer state stay
  float32, so masking is unaffected).
* ``channels_last`` keeps the network and each batch of images in channels-last (NHWC)
  memory format, which tensor-core convolutions prefer; masks and the optimizer follow
  the weights' layout, and checkpoints and final weights hold the same values.
* ``val_fraction`` holds out that fraction of the training split (stream ``val-split``)
  before ``train_subset`` is drawn from the rest; it is never trained on.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from typing import Callable

import torch
import torch.nn.functional as F

from prunelib.config.settings import TrainSettings
from prunelib.foundations.errors import PrunelibError
from prunelib.data.datasets import to_float, train_subset_indices
from prunelib.foundations.seeding import deterministic_cuda, generator

log = logging.getLogger("prunelib.train")

#: Zero padding of the CIFAR random crop, in pixels per side.
CROP_PADDING = 4


class TrainingDiverged(PrunelibError, RuntimeError):
    """The loss became NaN or infinite; ``rows`` holds the log of the epochs before."""

    def __init__(self, message: str, rows: list | None = None):
        super().__init__(message)
        self.rows = rows or []


class DeviceOutOfMemory(PrunelibError, RuntimeError):
    pass


def _oom(what: str, label: str, batch_size: int, key: str, device: torch.device) -> DeviceOutOfMemory:
    return DeviceOutOfMemory(f"{label or what}: out of memory on {device} while {what} with {key} = "
                             f"{batch_size}; lower {key} or use a device with more memory")


def resolve_device(name: str) -> torch.device:
    """The device ``name`` (``auto``, ``cpu``, ``cuda``) names here; a CUDA device is put in
    its reproducible mode first (``foundations.seeding.deterministic_cuda``), before any
    work reaches it."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device = cuda was requested but no CUDA device is available; use device: auto or cpu")
    device = torch.device(name)
    if device.type == "cuda":
        deterministic_cuda()
    return device


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


def lr_at_step(p: int, steps_per_epoch: int, s: TrainSettings) -> float:
    """Learning rate of optimizer step p (0-based): the epoch schedule ``lr_at``, or with
    ``milestone_unit: steps`` a step schedule whose lr drops once m steps are done."""
    if s.lr_schedule == "step" and s.milestone_unit == "steps":
        return s.lr * s.gamma ** sum(1 for m in s.milestones if p >= m)
    return lr_at(p // steps_per_epoch, s)


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


def split_indices(n: int, s: TrainSettings, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, held-out validation indices) of a training split of ``n``.

    round(n * val_fraction) examples are held out, drawn with the seed; ``train_subset``
    is then drawn from the rest.  With val_fraction = 0 this is exactly the old subset.
    """
    n_val = int(round(n * s.val_fraction))
    if n_val == 0:
        return train_subset_indices(n, s.train_subset, seed), torch.zeros(0, dtype=torch.int64)
    if n_val >= n:
        raise ValueError(f"train.val_fraction = {s.val_fraction} leaves no training examples of {n}")
    perm = torch.randperm(n, generator=generator(seed, "val-split"))
    val, pool = perm[:n_val].sort().values, perm[n_val:].sort().values
    return pool[train_subset_indices(pool.numel(), s.train_subset, seed)], val


def crop_flip_params(n: int, seed: int, epoch: int, padding: int = CROP_PADDING) -> torch.Tensor:
    """[n, 3] int64 (row offset, column offset, flip) for one epoch, drawn on the CPU."""
    g = generator(seed, f"augment:{epoch}")
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=g)
    flips = torch.randint(0, 2, (n, 1), generator=g)
    return torch.cat([offsets, flips], 1)


def crop_flip(x: torch.Tensor, params: torch.Tensor, padding: int = CROP_PADDING) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip of a whole batch, as one gather.

    x: [B, C, H, W] (uint8 or float; zeros pad the raw image, as torchvision's
    RandomCrop(32, padding=4) pads the PIL image before normalisation); params from
    ``crop_flip_params`` on x's device.  Output pixel (i, j) of image b is padded pixel
    (dy_b + i, dx_b + j), or (dy_b + i, dx_b + W - 1 - j) when flipped.
    """
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding)).permute(0, 2, 3, 1)  # [B, H+2p, W+2p, C]
    ar_h = torch.arange(h, device=x.device)
    ar_w = torch.arange(w, device=x.device)
    rows = params[:, 0, None] + ar_h  # [B, H]
    cols = params[:, 1, None] + torch.where(params[:, 2, None].bool(), w - 1 - ar_w, ar_w)  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def _autocast(s: TrainSettings, device: torch.device):
    import contextlib

    if s.autocast_dtype is not None and device.type == "cuda":
        return torch.autocast("cuda", dtype=getattr(torch, s.autocast_dtype))
    return contextlib.nullcontext()


def train(model: torch.nn.Module, masks: dict[str, torch.Tensor], data: dict, dataset: str,
          s: TrainSettings, seed: int, device: torch.device,
          progress: Callable[[str], None] | None = None, label: str = "", resume=None,
          checkpoints: dict | None = None) -> list[dict]:
    """Train the masked ``model`` in place; return one log row per epoch.

    ``s`` is first resolved for ``dataset`` (``epochs_per_dataset``, ``augment: auto``).
    The run is ``s.total_steps`` optimizer steps; ``checkpoints`` as in ``run_steps``
    ({step: None}, filled with the weights after that many steps).  Running out of
    device memory raises DeviceOutOfMemory naming ``label``, the batch size and the
    device.
    """
    s = s.for_dataset(dataset)
    if s.autocast_dtype is not None and device.type != "cuda":
        key = "precision" if s.precision == "bf16" else "amp"  # (the key the config set)
        msg = f"train.{key} = bf16 ignored on {device} (autocast is used on CUDA only)"
        log.info(msg)
        if progress:
            progress(msg)
    try:
        return _train(model, masks, data, dataset, s, seed, device, progress, resume, checkpoints)
    except torch.OutOfMemoryError:
        raise _oom("training", label, s.batch_size, "train.batch_size", device) from None


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one pass over ``n_train`` examples (the last batch may be short)."""
    return -(-n_train // batch_size)


def training_examples(data: dict, s: TrainSettings, seed: int) -> int:
    """How many examples one epoch trains on (after ``val_fraction`` and ``train_subset``)."""
    return split_indices(data["train_y"].numel(), s, seed)[0].numel()


def _train(model, masks, data, dataset, s: TrainSettings, seed, device, progress, resume=None,
           checkpoints=None) -> list[dict]:
    spe = steps_per_epoch(training_examples(data, s, seed), s.batch_size)
    total = s.total_steps(spe)
    sched = s if s.steps is None else dataclasses.replace(s, epochs=total / spe)  # (a cosine spans the steps)
    return run_steps(model, masks, data, dataset, s, seed, device, range(0, total),
                     lambda p: lr_at_step(p, spe, sched), progress, checkpoints=checkpoints, resume=resume)


def run_steps(model, masks, data, dataset, s: TrainSettings, seed, device, positions: range,
              lr_of: Callable[[int], float], progress=None, checkpoints: dict | None = None,
              resume=None) -> list[dict]:
    """Masked training over the schedule ``positions`` (optimizer steps, 0-based).

    Position p is batch p mod S of epoch p div S (S = steps per epoch), so the data a
    step sees depends only on its position and the seed: training that resumes at
    position k (a rewound lottery ticket) sees exactly what the first run saw from k on.
    ``lr_of(p)`` is the learning rate of step p.  A fresh optimizer is built here (its
    state is not rewound with the weights).  ``checkpoints``: {position: None}, filled in
    place with copies of the weights *before* the step at that position (the end of
    ``positions`` = the final weights).  One log row per epoch (or part of one).
    ``resume``: a ``prunelib.train.resume.Checkpointer``; the loop starts from its checkpoint
    when it has one for this job and writes one between steps when due (and, when the
    caller holds it as a context manager, on SIGTERM/SIGUSR1, then stops), so a killed
    job rerun finishes bit-identical on the CPU to an uninterrupted one.
    """
    model.to(device)
    if s.channels_last:
        model.to(memory_format=torch.channels_last)
    fmasks = apply_masks(model, masks)
    params = dict(model.named_parameters())
    masked = [(params[n], m) for n, m in fmasks.items() if not bool(m.all())]
    opt = make_optimizer(model.parameters(), s)
    idx, val_idx = split_indices(data["train_y"].numel(), s, seed)
    x_all = data["train_x"][idx].to(device)
    y_all = data["train_y"][idx].to(device)
    val = ({"test_x": data["train_x"][val_idx], "test_y": data["train_y"][val_idx]}
           if val_idx.numel() else None)
    n = y_all.numel()
    spe = steps_per_epoch(n, s.batch_size)
    checkpoints = {} if checkpoints is None else checkpoints

    def snapshot(p):
        if p in checkpoints:
            checkpoints[p] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    rows = []
    epoch = order = aug = None
    first, partial = positions.start, None
    loss_sum = correct = seen = lr_first = seg_start = None  # an epoch's running sums, set on entering it
    if resume is not None:
        resume.bind(positions)
        state = resume.load()
        if state is not None:
            first, rows, partial = state["position"], list(state["rows"]), state["partial"]
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            _set_rng_states(state["rng"])
            checkpoints.update(state["snapshots"])
    for p in range(first, positions.stop):
        if resume is not None and resume.due():
            resume.save({"position": p, "rows": rows, "model": model.state_dict(),
                         "optimizer": opt.state_dict(), "rng": _rng_states(),
                         "snapshots": {k: v for k, v in checkpoints.items() if v is not None},
                         "partial": None if epoch is None else
                         {"epoch": epoch, "loss_sum": float(loss_sum), "correct": int(correct), "seen": seen,
                          "lr_first": lr_first, "seconds": time.perf_counter() - seg_start}})
            resume.stop_if_signalled(p, positions)
        snapshot(p)
        if p // spe != epoch:  # entering an epoch (or starting mid-epoch)
            epoch = p // spe
            order = torch.randperm(n, generator=generator(seed, f"shuffle:{epoch}")).to(device)
            aug = crop_flip_params(n, seed, epoch).to(device) if s.augment == "cifar" else None
            seg_start, lr_first = time.perf_counter(), lr_of(p)
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            seen = 0
            if partial is not None and partial["epoch"] == epoch:  # resumed mid-epoch: its sums so far
                seg_start, lr_first = time.perf_counter() - partial["seconds"], partial["lr_first"]
                loss_sum.fill_(partial["loss_sum"])
                correct.fill_(partial["correct"])
                seen = partial["seen"]
            partial = None
            model.train()
        lr = lr_of(p)
        for group in opt.param_groups:
            group["lr"] = lr
        b = (p % spe) * s.batch_size
        sel = order[b:b + s.batch_size]
        x = x_all[sel]
        if aug is not None:  # augmentation drawn per position in the epoch's order
            x = crop_flip(x if x.dim() == 4 else x.unsqueeze(1), aug[b:b + s.batch_size])
        x = to_float(x, dataset)
        if s.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y_all[sel]
        with _autocast(s, device):
            out = model(x)
            loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        for prm, m in masked:
            prm.grad.mul_(m)
        opt.step()
        loss_sum += loss.detach().double() * y.numel()
        correct += (out.detach().argmax(1) == y).sum()
        seen += y.numel()
        if (p + 1) % spe == 0 or p + 1 == positions.stop:
            rows.append(_log_row(model, rows, epoch, p, lr_first, loss_sum, correct, seen, seg_start, val,
                                 dataset, s, device, progress, positions))
    snapshot(positions.stop)
    return rows


def _log_row(model, rows, epoch, p, lr, loss_sum, correct, seen, seg_start, val, dataset, s, device,
             progress, positions) -> dict:
    train_loss = float(loss_sum) / seen
    seconds = time.perf_counter() - seg_start
    row = {"epoch": epoch + 1, "step": p + 1, "lr": lr, "train_loss": train_loss,
           "train_top1": float(correct) / seen, "seconds": seconds}
    if not math.isfinite(train_loss):
        raise TrainingDiverged(f"training loss became {train_loss} in epoch {epoch + 1} (lr {lr})",
                               rows + [row])
    if val is not None:
        m = _evaluate(model, val, dataset, s.eval_batch_size, device)
        row.update(val_top1=m["top1"], val_loss=m["test_loss"])
    if progress:
        done, total = p + 1 - positions.start, len(positions)
        progress(f"epoch {epoch + 1} step {done}/{total} lr {lr:.3g} loss {train_loss:.4f} "
                 f"top1 {100 * row['train_top1']:.2f}% {seconds:.1f}s ({seen / seconds:.0f} img/s)"
                 + (f" val top1 {100 * row['val_top1']:.2f}%" if val is not None else ""))
    return row


def evaluate(model: torch.nn.Module, data: dict, dataset: str, batch_size: int,
             device: torch.device, label: str = "", logits: list | None = None) -> dict:
    """Top-1, top-5 and mean cross-entropy on the test split, with the final weights.
    With ``logits`` (a list), each batch's logits are appended to it, on the CPU."""
    try:
        return _evaluate(model, data, dataset, batch_size, device, logits)
    except torch.OutOfMemoryError:
        raise _oom("evaluating", label, batch_size, "train.eval_batch_size", device) from None


@torch.no_grad()
def _evaluate(model: torch.nn.Module, data: dict, dataset: str, batch_size: int,
              device: torch.device, logits: list | None = None) -> dict:
    was_training = model.training
    model.to(device).eval()
    x_all, y_all = data["test_x"], data["test_y"]
    n = y_all.numel()
    top1 = top5 = 0
    loss = 0.0
    for b in range(0, n, batch_size):
        x = to_float(x_all[b:b + batch_size].to(device), dataset)
        y = y_all[b:b + batch_size].to(device)
        out = model(x)
        if logits is not None:
            logits.append(out.detach().cpu())
        loss += float(F.cross_entropy(out, y, reduction="sum"))
        k = min(5, out.shape[1])
        topk = out.topk(k, dim=1).indices
        hits = topk == y.unsqueeze(1)
        top1 += int(hits[:, 0].sum())
        top5 += int(hits.any(dim=1).sum())
    model.train(was_training)
    return {"top1": top1 / n, "top5": top5 / n, "test_loss": loss / n}


def _rng_states() -> dict:
    """The global torch generators (dropout and anything else not drawn from a named stream)."""
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["cpu"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def progress_printer(prefix: str) -> Callable[[str], None]:
    def emit(msg: str) -> None:
        try:
            print(f"[{prefix}] {msg}", file=sys.stderr, flush=True)
        except OSError:  # the log pipe is gone (`tee` stopped with the job): still checkpoint and stop
            pass

    return emit
