"""Deterministic seeds derived from the config seed and names.

A job's random draws depend only on (base seed, names), never on job order, sharding or
which other images share a batch. Every torch draw comes from ``seeded_generator`` (a CPU
generator, so a draw is the same on every device), never from torch's global generator.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily: the data stage derives seeds without loading torch
    import torch


def derive_seed(base: int, *names: object) -> int:
    """Return a 63-bit seed from ``base`` and any names (strings, numbers).

    The same arguments always give the same seed, on every platform and Python version
    (it hashes their text with SHA-256, not with Python's salted ``hash``).
    """
    text = "\x1f".join([str(int(base)), *(str(name) for name in names)])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (usually a ``derive_seed`` value)."""
    import torch

    return torch.Generator().manual_seed(int(seed))
