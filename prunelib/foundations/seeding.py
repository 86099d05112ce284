"""Named random streams derived from one seed, and what CUDA needs to repeat itself.

Each consumer (model init, scoring batch, training subset, shuffling, tie-breaking,
random scores) draws from its own generator, so adding a draw in one place never
shifts the numbers another place sees.

On the CPU the same config and seed give bit-identical artifacts as they are.  On CUDA
they do only with ``deterministic_cuda`` in force (every stage calls it when it picks a
CUDA device, through ``prunelib.train.loop.resolve_device``): cuBLAS's fixed workspace,
cuDNN's deterministic algorithms and no autotuning, and PyTorch's deterministic mode.
An operation that has no deterministic CUDA implementation warns rather than stops the
job (``warn_only``): ``benchmarks/gpu_check.py`` collects those warnings and compares two
runs' artifacts, which says whether a given GPU and PyTorch repeat themselves.
"""

from __future__ import annotations

import hashlib


def stream_seed(seed: int, stream: str) -> int:
    digest = hashlib.sha256(f"{int(seed)}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, stream: str, device="cpu"):
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(stream_seed(seed, stream))
    return g


def seed_everything(seed: int, stream: str = "global") -> None:
    """Seed torch's global RNG (used by layer constructors) for ``stream``."""
    import torch

    torch.manual_seed(stream_seed(seed, stream))


#: cuBLAS's workspace for reproducible results (CUDA >= 10.2): 8 buffers of 4 MiB.  It
#: must be in the environment before the process's first cuBLAS call.
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


def deterministic_cuda() -> dict:
    """Put CUDA in its reproducible mode (see the module docstring); returns what was
    set, and under ``"late"`` a note when cuBLAS had already started with another
    workspace setting (its results may then vary from run to run)."""
    import os

    import torch

    out: dict = {}
    before = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if before is None:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE_CONFIG
        # (cuBLAS reads it when its first handle is made: a process that used CUDA before
        # this call keeps the workspace it started with)
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["late"] = "CUDA was initialised before CUBLAS_WORKSPACE_CONFIG was set"
    elif before not in (":4096:8", ":16:8"):
        out["late"] = f"CUBLAS_WORKSPACE_CONFIG = {before!r} is not one of cuBLAS's reproducible settings"
    out["CUBLAS_WORKSPACE_CONFIG"] = os.environ["CUBLAS_WORKSPACE_CONFIG"]
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    out.update(cudnn_deterministic=True, cudnn_benchmark=False, deterministic_algorithms="warn_only")
    return out
