"""Shared fixtures: real MNIST (fetched once into the repo's data/ folder) and small helpers."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("PRUNELIB_TEST_DATA", REPO / "data"))
PYTHON = sys.executable
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def _tree_state(folder: Path) -> dict:
    """Every file under ``folder``: (size, mtime in ns), by relative path."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def checkout_results_untouched():
    """Tests never write (nor need) the checkout's own results/ or reports/ (a user's
    ``make run`` fills them): every test works in a temporary folder of its own.  This
    holds the suite to that: the two folders are the same after it as before."""
    before = {name: _tree_state(REPO / name) for name in ("results", "reports")}
    yield
    after = {name: _tree_state(REPO / name) for name in ("results", "reports")}
    for name in before:
        changed = sorted(set(before[name].items()) ^ set(after[name].items()))
        assert not changed, f"the test suite changed the checkout's {name}/: {changed[:5]}"


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    from prunelib.data.datasets import fetch_mnist

    fetch_mnist(DATA_ROOT)
    return DATA_ROOT


@pytest.fixture(scope="session")
def mnist_pt(mnist_root, tmp_path_factory) -> Path:
    from prunelib.data.datasets import prepare

    out = tmp_path_factory.mktemp("prepared") / "mnist.pt"
    prepare("mnist", mnist_root, out)
    return out


@pytest.fixture(scope="session")
def mnist(mnist_pt) -> dict:
    from prunelib.data.datasets import load_prepared

    return load_prepared(mnist_pt)


#: The upper bound of every wait on an event: generous, so that it fires only on a real
#: hang, never on a loaded machine (the suite passes with two busy processes per core).
HANG_SECONDS = 600.0


def wait_until(event, what: str, timeout: float = HANG_SECONDS, interval: float = 0.02):
    """Poll ``event()`` until it returns something truthy, and return that; fail naming
    ``what`` only after ``timeout`` seconds (a hang, not a slow machine)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = event()
        if value:
            return value
        assert time.monotonic() < deadline, f"waited {timeout:g} s for {what}: it never happened"
        time.sleep(interval)


def tensor_dict_digest(tensors: dict) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes: equal iff bit-identical."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def run(cmd, cwd=None, check=True, env=None, timeout=900) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture
def snakemake_bin() -> str:
    if not Path(SNAKEMAKE).exists():
        found = shutil.which("snakemake")
        if found is None:
            pytest.fail("snakemake is not installed in this environment")
        return found
    return SNAKEMAKE


def grasp_long_way(net, params, parts, temperature):
    """GraSP's theta * Hg the long way, by double backward: g = sum over ``parts`` (batches
    or halves) of the gradient of each part's mean cross-entropy of logits / T, then
    Hg = sum over parts of d(grad L_part . g)/dtheta.  In the mode ``net`` is in."""
    import torch
    import torch.nn.functional as F

    w = list(params.values())
    g = [torch.zeros_like(p) for p in w]
    for x, y in parts:
        for acc, gi in zip(g, torch.autograd.grad(F.cross_entropy(net(x) / temperature, y), w)):
            acc += gi
    hg = [torch.zeros_like(p) for p in w]
    for x, y in parts:
        gb = torch.autograd.grad(F.cross_entropy(net(x) / temperature, y), w, create_graph=True)
        for acc, h in zip(hg, torch.autograd.grad(sum((a * b).sum() for a, b in zip(gb, g)), w)):
            acc += h
    return {n: p.detach() * h for (n, p), h in zip(params.items(), hg)}
