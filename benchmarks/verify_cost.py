"""What verified reads cost each stage: load time of every artifact a stage reads, with
and without the SHA-256 check against its sidecar (``prunelib.foundations.artifacts.load_pt``).

The files have the real shapes and sizes: a network's init/final weights ({state_dict,
meta}), its scores (float32 per prunable weight), its mask (bool), and the prepared
dataset (uint8 images; MNIST 55 MB, CIFAR-10 184 MB).  The page cache is warm (each
file is read once first), as for a job reading what the job before it just wrote, so
the difference is the hashing itself.

    python benchmarks/verify_cost.py                     # lenet300/mnist and vgg16/cifar10
    python benchmarks/verify_cost.py --repeats 9 --threads 1

Prints one Markdown table per network: per file, then per stage (the files it reads),
and what one resumable-training checkpoint costs (prunelib.train.resume: weights, SGD momentum,
RNG states; written every ``train.checkpoint_minutes``, default 5).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from prunelib.data import datasets  # noqa: E402

from prunelib.nets import models
from prunelib.train import resume  # noqa: E402
from prunelib.foundations.artifacts import load_pt, save_pt  # noqa: E402
from prunelib.train.loop import _rng_states  # noqa: E402

#: The artifacts each stage reads (IMP rounds read like train: weights, mask, data).
STAGE_READS = {"score": ("init", "data"), "mask": ("init", "scores"), "train": ("init", "mask", "data"),
               "eval": ("final", "mask", "data")}
SPLITS = {"mnist": (60_000, 10_000), "cifar10": (50_000, 10_000)}


def write_artifacts(folder: Path, arch: str, dataset: str) -> dict[str, Path]:
    d = datasets.info(dataset)
    model = models.build(arch, d.num_classes, d.in_channels, d.image_size)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    prunable = [n for n, p in model.named_parameters() if p.dim() > 1]
    shape = (d.image_size, d.image_size) if d.in_channels == 1 else (d.in_channels, d.image_size, d.image_size)
    n_train, n_test = SPLITS[dataset]
    g = torch.Generator().manual_seed(0)
    blobs = {
        "init": {"state_dict": state, "meta": {"arch": arch}},
        "final": {"state_dict": state, "meta": {"arch": arch}},
        "scores": {"scores": {n: torch.rand(state[n].shape, generator=g) for n in prunable}, "meta": {}},
        "mask": {"masks": {n: torch.rand(state[n].shape, generator=g) < 0.25 for n in prunable}, "meta": {}},
        "data": {"train_x": torch.randint(0, 256, (n_train, *shape), dtype=torch.uint8, generator=g),
                 "train_y": torch.randint(0, 10, (n_train,), generator=g),
                 "test_x": torch.randint(0, 256, (n_test, *shape), dtype=torch.uint8, generator=g),
                 "test_y": torch.randint(0, 10, (n_test,), generator=g), "meta": {}},
    }
    paths = {}
    for name, blob in blobs.items():
        paths[name] = folder / f"{arch}_{name}.pt"
        save_pt(blob, paths[name])
    return paths


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm the page cache
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", nargs="+", default=["lenet300:mnist", "vgg16:cifar10"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for pair in a.pairs:
            arch, dataset = pair.split(":")
            paths = write_artifacts(Path(tmp), arch, dataset)
            cost = {}
            print(f"\n{arch} / {dataset} (median of {a.repeats}, {a.threads} thread(s))\n")
            print("| artifact | MB | load (s) | verified load (s) | hashing (s) |\n|---|---|---|---|---|")
            for name, path in paths.items():
                plain = median_seconds(lambda: load_pt(path, verify=False), a.repeats)
                checked = median_seconds(lambda: load_pt(path), a.repeats)
                cost[name] = checked - plain
                print(f"| {name} | {path.stat().st_size / 1e6:.1f} | {plain:.4f} | {checked:.4f} | {cost[name]:.4f} |")
            print("\n| stage | reads | hashing per job (s) |\n|---|---|---|")
            for stage, reads in STAGE_READS.items():
                print(f"| {stage} | {', '.join(reads)} | {sum(cost[r] for r in reads):.4f} |")
            print("\n" + checkpoint_cost(Path(tmp), arch, dataset, a.repeats))


def checkpoint_cost(folder: Path, arch: str, dataset: str, repeats: int) -> str:
    d = datasets.info(dataset)
    model = models.build(arch, d.num_classes, d.in_channels, d.image_size)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, d.in_channels, d.image_size, d.image_size)).sum().backward()
    opt.step()  # momentum buffers exist, as in any checkpoint after step 0
    ck = resume.Checkpointer(folder / f"{arch}_final.pt", {"bench": arch}, 5.0)
    state = {"position": 1, "rows": [], "model": model.state_dict(), "optimizer": opt.state_dict(),
             "rng": _rng_states(), "snapshots": {}, "partial": None}
    save = median_seconds(lambda: ck.save(state), repeats)
    load = median_seconds(ck.load, repeats)
    return (f"checkpoint: {ck.path.stat().st_size / 1e6:.1f} MB, save {save:.3f} s, verified load {load:.3f} s "
            f"({100 * save / 300:.2f}% of a 5-minute interval)")


if __name__ == "__main__":
    main()
