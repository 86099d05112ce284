"""CIFAR code paths without CIFAR: the synthetic stand-in, augmentation, held-out
validation, out-of-memory messages, model options through the stages, Fashion-MNIST."""

import dataclasses
from pathlib import Path

import pytest
import torch

from prunelib import stages

from prunelib.data import datasets

from prunelib.nets import models
from prunelib.config import TrainSettings, contracts
from prunelib.foundations.errors import PrunelibError
from prunelib.methods.masking import select_masks
from prunelib.train.loop import crop_flip, crop_flip_params, split_indices, train

from cells import settings
from conftest import tensor_dict_digest

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "synthetic_cifar10.pt"
    datasets.prepare("synthetic_cifar10", tmp_path_factory.mktemp("root"), out)
    return datasets.load_prepared(out)


def test_synthetic_cifar10_is_deterministic_and_shaped_like_cifar(synth):
    assert synth["train_x"].shape == (5000, 3, 32, 32) and synth["train_x"].dtype == torch.uint8
    assert synth["test_x"].shape == (1000, 3, 32, 32) and synth["test_y"].dtype == torch.int64
    assert synth["train_y"].bincount().tolist() == [500] * 10
    again = datasets.synthetic_cifar10()
    assert tensor_dict_digest(again) == tensor_dict_digest({k: synth[k] for k in again})
    d = datasets.info("synthetic_cifar10")
    assert synth["meta"]["mean"] == d.mean and synth["meta"]["std"] == d.std   # recorded = registry
    assert synth["meta"]["source"].startswith("generated")


def _reference_crop_flip(x, params, pad=4):
    """Per image, the obvious way."""
    out = []
    for img, (dy, dx, flip) in zip(x, params.tolist()):
        p = torch.nn.functional.pad(img, (pad, pad, pad, pad))[:, dy:dy + x.shape[2], dx:dx + x.shape[3]]
        out.append(p.flip(-1) if flip else p)
    return torch.stack(out)


def test_crop_flip_matches_a_per_image_reference_and_is_seeded():
    x = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)
    params = crop_flip_params(64, seed=5, epoch=0)
    assert params[:, :2].min() >= 0 and params[:, :2].max() <= 8 and set(params[:, 2].tolist()) == {0, 1}
    assert torch.equal(crop_flip(x, params), _reference_crop_flip(x, params))
    assert torch.equal(params, crop_flip_params(64, seed=5, epoch=0))
    assert not torch.equal(params, crop_flip_params(64, seed=5, epoch=1))
    # zero padding: a crop shifted by 4 has 4 black rows
    shifted = crop_flip(x, torch.tensor([[0, 4, 0]] * 64))
    assert not shifted[:, :, :4].any() and torch.equal(shifted[:, :, 4:], x[:, :, :28])


def _masked(arch, seed=0, ratio=8):
    torch.manual_seed(seed)
    model = models.build(arch, 10, 3, 32)
    params = dict(model.named_parameters())
    masks, _ = select_masks({n: params[n].detach().abs() for n in models.prunable_names(model)}, ratio,
                            "global", seed)
    return model, masks


def test_resnet_training_with_augmentation_keeps_pruned_weights_zero_and_is_bit_identical(synth):
    s = TrainSettings(lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=64, epochs=1, train_subset=192)
    digests = []
    for _ in range(2):
        model, masks = _masked("resnet20")
        train(model, masks, synth, "synthetic_cifar10", s, seed=1, device=CPU)
        params = dict(model.named_parameters())
        for name, m in masks.items():
            assert int(torch.count_nonzero(params[name][~m])) == 0, name
        digests.append(tensor_dict_digest(model.state_dict()))
    assert digests[0] == digests[1]
    # augment: none trains differently (auto means cifar on synthetic_cifar10)
    model, masks = _masked("resnet20")
    train(model, masks, synth, "synthetic_cifar10", dataclasses.replace(s, augment="none"), seed=1, device=CPU)
    assert tensor_dict_digest(model.state_dict()) != digests[0]


def test_synthetic_cifar10_is_learnable(synth):
    torch.manual_seed(0)
    model = models.build("lenet5", 10, 3, 32)
    s = TrainSettings(lr=0.02, momentum=0.9, batch_size=64, epochs=2, train_subset=2000)
    rows = train(model, {}, synth, "synthetic_cifar10", s, seed=0, device=CPU)
    from prunelib.train.loop import evaluate

    assert evaluate(model, synth, "synthetic_cifar10", 500, CPU)["top1"] > 0.5   # chance is 0.1
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_val_fraction_is_really_held_out(synth):
    s = TrainSettings(val_fraction=0.1, train_subset=None)
    tr, val = split_indices(5000, s, seed=3)
    assert val.numel() == 500 and tr.numel() == 4500
    assert not set(tr.tolist()) & set(val.tolist())
    tr2, _ = split_indices(5000, dataclasses.replace(s, train_subset=100), seed=3)
    assert tr2.numel() == 100 and not set(tr2.tolist()) & set(val.tolist())
    assert torch.equal(split_indices(5000, TrainSettings(), 3)[0], torch.arange(5000))   # default: nothing held out
    model, masks = _masked("lenet5")
    rows = train(model, masks, synth, "synthetic_cifar10",
                 TrainSettings(epochs=1, batch_size=100, train_subset=200, val_fraction=0.02), 0, CPU)
    assert {"val_top1", "val_loss"} <= set(rows[0])


def test_epochs_per_dataset_and_amp_on_cpu(synth):
    model, masks = _masked("lenet5")
    lines = []
    s = TrainSettings(epochs=3, epochs_per_dataset={"synthetic_cifar10": 1}, amp="bf16", train_subset=64)
    rows = train(model, masks, synth, "synthetic_cifar10", s, 0, CPU, progress=lines.append)
    assert len(rows) == 1
    assert any("amp = bf16 ignored on cpu" in ln for ln in lines)


def test_out_of_memory_names_label_batch_size_and_device(synth, monkeypatch):
    model, masks = _masked("lenet5")

    def boom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model, "forward", boom)
    with pytest.raises(PrunelibError) as err:
        train(model, masks, synth, "synthetic_cifar10", TrainSettings(batch_size=96, train_subset=96), 0, CPU,
              label="synthetic_cifar10/lenet5/seed0/snip/r8")
    msg = str(err.value)
    assert "synthetic_cifar10/lenet5/seed0/snip/r8" in msg and "train.batch_size = 96" in msg and "cpu" in msg
    from prunelib.train.loop import evaluate

    with pytest.raises(PrunelibError, match="train.eval_batch_size = 250"):
        evaluate(model, synth, "synthetic_cifar10", 250, CPU, label="x")


def test_shortcut_setting_reaches_the_network_through_the_stages(tmp_path):
    s = settings(model={"shortcut": "B"})
    contract = contracts.init_contract(s, "resnet20", "synthetic_cifar10", 0, "pytorch_default")
    stages.run_init(contract, tmp_path / "init.pt", tmp_path / "init.parquet")
    model, meta = stages.load_model(tmp_path / "init.pt")
    assert meta["model"] == {"shortcut": "B", "bn_momentum": 0.1, "bn_eps": 1e-5}
    assert sum(p.numel() for p in model.parameters()) == 272_282


def test_missing_cifar_is_one_error_saying_where_to_put_it(tmp_path, monkeypatch):
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")   # no network, whatever the machine has
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(datasets.DataUnavailable) as err:
        datasets.prepare("cifar10", tmp_path, tmp_path / "cifar10.pt")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("CIFAR-10 is unavailable; tried local folder:")
    assert "torchvision download:" in msg and f"extract it in {tmp_path}/" in msg
    assert not (tmp_path / "cifar10.pt").exists()


@pytest.mark.skipif(not all((datasets.FASHION_DEBIAN_DIR / f"{n}.gz").exists() for n in datasets.FASHION_FILES),
                    reason="Fashion-MNIST files absent: apt-get install -y dataset-fashion-mnist")
def test_fashion_mnist_from_the_debian_package(tmp_path, monkeypatch):
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")   # exercise the offline source
    data = datasets.prepare("fashion_mnist", tmp_path, tmp_path / "fm.pt")
    assert data["meta"]["source"].startswith("Debian package")
    assert data["train_x"].shape == (60000, 28, 28) and data["test_x"].shape == (10000, 28, 28)
    assert data["train_y"].bincount().tolist() == [6000] * 10   # the published class balance
    d = datasets.info("fashion_mnist")
    assert data["meta"]["mean"] == d.mean and data["meta"]["std"] == d.std
    assert Path(tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").exists()
