"""What top-1 hides: per-class recall, balanced accuracy, calibration and likelihood.

From the test-set logits z (N x C) and labels y, with p = softmax(z), the prediction
argmax_c z_c and its confidence max_c p_c:

* recall of class c = #(pred = c and y = c) / #(y = c); ``min_class_recall`` is the
  smallest over the classes present in the test set, ``min_recall_class`` the class
  that has it (the lowest index among ties);
* ``balanced_accuracy`` = mean of the recalls over the classes present;
* ``ece``, expected calibration error (Guo et al., ICML 2017, Eq. 3) with 15
  equal-width confidence bins B_m = ((m-1)/15, m/15] (the first also holds 0):
  ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|;
* ``nll`` = -1/N sum_i log p_{y_i}, in float64 (the mean cross-entropy).

``calibration_bins`` keeps, per bin, [count, sum of confidences, number correct], so
that reliability diagrams can pool seeds exactly.  Pruning can keep top-1 while hurting
the rarest classes or calibration; these columns make that visible in every eval row.
"""

from __future__ import annotations

import json

import torch

N_BINS = 15


def calibration_bins(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = N_BINS) -> list[list]:
    """Per equal-width bin ((m-1)/n, m/n]: [count, sum of confidences, number correct]."""
    conf = confidence.to(torch.float64)
    index = (torch.ceil(conf * n_bins).long() - 1).clamp_(0, n_bins - 1)
    count = torch.bincount(index, minlength=n_bins)
    conf_sum = torch.bincount(index, weights=conf, minlength=n_bins)
    hits = torch.bincount(index, weights=correct.to(torch.float64), minlength=n_bins)
    return [[int(c), float(s), int(h)] for c, s, h in zip(count, conf_sum, hits)]


def ece_from_bins(bins: list[list]) -> float:
    n = sum(b[0] for b in bins)
    return sum(abs(h - s) for c, s, h in bins if c) / n if n else float("nan")


def class_recalls(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Recall of each class (NaN where the class has no test example)."""
    support = torch.bincount(y, minlength=num_classes).to(torch.float64)
    hits = torch.bincount(y[pred == y], minlength=num_classes).to(torch.float64)
    return torch.where(support > 0, hits / support.clamp(min=1), torch.full_like(support, float("nan")))


def beyond_top1(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict:
    """The eval row's columns beyond top-1 (see the module docstring)."""
    logits, y = logits.to(torch.float64), y.long()
    log_p = torch.log_softmax(logits, dim=1)
    confidence, pred = log_p.exp().max(dim=1)
    recalls = class_recalls(pred, y, num_classes)
    present = ~torch.isnan(recalls)
    low = torch.where(present, recalls, torch.full_like(recalls, float("inf")))
    worst = int(torch.argmin(low))  # argmin returns the first of tied minima
    bins = calibration_bins(confidence, pred == y)
    return {"balanced_accuracy": float(recalls[present].mean()), "min_class_recall": float(recalls[worst]),
            "min_recall_class": worst, "ece": ece_from_bins(bins),
            "nll": float(-log_p.gather(1, y.unsqueeze(1)).mean()), "calibration_bins": json.dumps(bins)}


