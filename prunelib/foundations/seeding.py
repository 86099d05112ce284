"""Named random streams derived from one seed.

Each consumer (model init, scoring batch, training subset, shuffling, tie-breaking,
random scores) draws from its own generator, so adding a draw in one place never
shifts the numbers another place sees.
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
