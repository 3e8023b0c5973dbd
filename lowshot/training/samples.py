"""Grids of a trained generator's samples, for the training stage's PNGs."""

from __future__ import annotations

import math

import numpy as np
import torch

from lowshot.gaussian import gaussian_from_normal
from lowshot.images import to_uint8
from lowshot.models import Generator
from lowshot.seeds import seeded_generator


@torch.no_grad()
def sample_grid(
    generator: Generator,
    n: int,
    seed: int,
    *,
    mean: torch.Tensor | None = None,
    covariance: torch.Tensor | None = None,
    columns: int | None = None,
    padding: int = 2,
) -> np.ndarray:
    """A grid of n samples as a uint8 image (H, W, 3), for a PNG (saved by the scripts).

    Codes: N(mean, covariance) when both are given (a low-shot model's prior), else
    N(0, I); both from one ``torch.randn(n, latent)`` draw of ``seeded_generator(seed)``.
    The generator runs in norm mode ``"stored"`` (its mode and train flag are restored).
    ``columns`` defaults to ceil(sqrt(n)); tiles are separated by ``padding`` white pixels.
    """
    rng = seeded_generator(seed)
    if mean is not None and covariance is not None:
        eps = torch.randn(n, int(mean.shape[0]), generator=rng)
        z = gaussian_from_normal(mean, covariance, eps)
    else:
        z = torch.randn(n, generator.latent_dim, generator=rng)
    mode, training = generator.norm, generator.training
    try:
        generator.norm = "stored"
        generator.eval()
        device = next(generator.parameters()).device
        images = generator(z.to(device)).float().cpu()
    finally:
        generator.norm = mode
        generator.train(training)
    tiles = to_uint8(images)
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    h, w = tiles.shape[1:3]
    grid = np.full(
        (rows * h + (rows + 1) * padding, columns * w + (columns + 1) * padding, 3),
        255,
        dtype=np.uint8,
    )
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top : top + h, left : left + w] = tile
    return grid
