"""The two image representations and the one conversion between them.

The HDF5 store and the recovery files keep uint8 (N, H, W, 3) in [0, 255]; inside the
package images are float32 tensors (N, 3, H, W) in [-1, 1]: x = u / 127.5 - 1.
"""

from __future__ import annotations

import numpy as np
import torch


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) in [0, 255] -> float32 (N, 3, H, W) in [-1, 1], on the input's
    device (numpy arrays give CPU tensors)."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"uint8 images must be (N, H, W, 3), got {tuple(images.shape)}")
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3) numpy on the CPU.

    Values are clamped to [-1, 1], mapped by (x + 1) * 127.5 and rounded to the nearest
    integer (ties to even), so ``to_uint8(to_float(u)) == u`` exactly.
    """
    scaled = (images.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
