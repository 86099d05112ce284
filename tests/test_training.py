import dataclasses

import pytest
import torch

from prunelib.nets import models
from prunelib.config import TrainSettings
from prunelib.methods.masking import select_masks
from prunelib.train.loop import lr_at, train


def _masked_lenet(seed=0, ratio=8):
    torch.manual_seed(seed)
    model = models.build("lenet5", 10, 1, 28)
    names = models.prunable_names(model)
    params = dict(model.named_parameters())
    masks, _ = select_masks({n: params[n].detach().abs() for n in names}, ratio, "global", seed)
    return model, masks


@pytest.mark.parametrize("opt, extra", [
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}),
    ("sgd", {"momentum": 0.9, "nesterov": False, "weight_decay": 1e-3}),
    ("adam", {"weight_decay": 1e-4}),
])
def test_pruned_weights_stay_exactly_zero_through_training(mnist, opt, extra):
    model, masks = _masked_lenet()
    s = TrainSettings(optimizer=opt, lr=0.05 if opt == "sgd" else 1e-3, epochs=2, batch_size=64,
                      train_subset=640, **extra)
    rows = train(model, masks, mnist, "mnist", s, seed=0, device=torch.device("cpu"))
    assert [r["epoch"] for r in rows] == [1, 2]
    params = dict(model.named_parameters())
    for name, m in masks.items():
        p = params[name]
        assert int(torch.count_nonzero(p[~m])) == 0, name     # pruned: exactly zero
        assert int(torch.count_nonzero(p[m])) == int(m.sum()), name  # kept: still alive
    # and the kept weights did move
    torch.manual_seed(0)
    fresh = models.build("lenet5", 10, 1, 28)
    assert not torch.equal(fresh.fc1.weight * masks["fc1.weight"], params["fc1.weight"])


def test_training_is_bit_identical_for_the_same_seed(mnist):
    s = TrainSettings(epochs=1, batch_size=50, train_subset=500)
    finals = []
    for _ in range(2):
        model, masks = _masked_lenet(seed=3)
        train(model, masks, mnist, "mnist", s, seed=3, device=torch.device("cpu"))
        finals.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_log_rows_have_the_documented_columns(mnist):
    model, masks = _masked_lenet()
    rows = train(model, masks, mnist, "mnist", TrainSettings(epochs=1, train_subset=256), 0,
                 torch.device("cpu"))
    assert set(rows[0]) == {"epoch", "step", "lr", "train_loss", "train_top1", "seconds"}
    assert 0 <= rows[0]["train_top1"] <= 1 and rows[0]["seconds"] > 0


def test_lr_schedules():
    base = TrainSettings(lr=0.1, epochs=4)
    assert [lr_at(e, base) for e in range(4)] == [0.1] * 4
    step = dataclasses.replace(base, lr_schedule="step", milestones=(2, 3), gamma=0.1)
    assert [round(lr_at(e, step), 12) for e in range(4)] == [0.1, 0.1, 0.01, 0.001]
    cos = dataclasses.replace(base, lr_schedule="cosine")
    assert lr_at(0, cos) == 0.1 and abs(lr_at(2, cos) - 0.05) < 1e-12
