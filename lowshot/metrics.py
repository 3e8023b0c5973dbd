"""Image-quality metrics, per image, on [0, 1].

Inputs are the package's images: tensors (or arrays) of shape (N, 3, 64, 64) in [-1, 1].
They are mapped to [0, 1] by (x + 1) / 2 and clamped to [0, 1] before comparing, so an
estimate that overshoots the valid range is judged as the image it would be displayed as.
"""

from __future__ import annotations

import numpy as np
import torch

# Identical images have MSE 0 and infinite PSNR; the MSE is floored at 1e-10 instead,
# so PSNR is at most 100 dB and means over images stay finite.
MIN_MSE = 1e-10
PSNR_CAP_DB = 100.0


def to_unit_range(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, 3, H, W) float64 numpy in [0, 1] (clamped)."""
    array = torch.as_tensor(images).detach().cpu().double().numpy()
    if array.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {array.shape}")
    return np.clip((array + 1.0) / 2.0, 0.0, 1.0)


def _pair(
    estimate: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    est, ref = to_unit_range(estimate), to_unit_range(truth)
    if est.shape != ref.shape:
        raise ValueError(f"shapes differ: {est.shape} vs {ref.shape}")
    return est, ref


def psnr(estimate: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB: 10 log10(1 / MSE) on [0, 1] (peak value 1).

    estimate, truth: (N, 3, H, W) in [-1, 1] -> (N,) float64. The MSE is over all pixels
    and channels of an image; identical images give ``PSNR_CAP_DB`` (100 dB).
    """
    est, ref = _pair(estimate, truth)
    mse = ((est - ref) ** 2).reshape(est.shape[0], -1).mean(axis=1)
    return 10.0 * np.log10(1.0 / np.maximum(mse, MIN_MSE))


def nearest_psnr(
    generated: torch.Tensor | np.ndarray, examples: torch.Tensor | np.ndarray
) -> np.ndarray:
    """Per example, the PSNR (dB, as ``psnr``) of the generated image nearest to it.

    generated (G, 3, H, W), examples (S, 3, H, W), both in [-1, 1] -> (S,) float64. How
    well a set of generated images covers the examples, whatever their pairing: the
    measure of fit for a distribution loss such as the MMD of the paper's eq. (5), whose
    unbiased estimate ignores the pairs i = i' (so G(z_i) need not resemble x_i). Never
    below the paired PSNR when G = S and image i is paired with example i.
    """
    gen = to_unit_range(generated).reshape(len(generated), -1)
    ref = to_unit_range(examples).reshape(len(examples), -1)
    if gen.shape[1] != ref.shape[1] or len(gen) == 0:
        raise ValueError(f"cannot compare {gen.shape} generated with {ref.shape} examples")
    squared = (ref**2).sum(1)[:, None] + (gen**2).sum(1)[None, :] - 2.0 * ref @ gen.T
    mse = np.maximum(squared, 0.0).min(axis=1) / ref.shape[1]
    return 10.0 * np.log10(1.0 / np.maximum(mse, MIN_MSE))


def ssim(estimate: torch.Tensor | np.ndarray, truth: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-image SSIM from scikit-image's ``structural_similarity`` on [0, 1].

    estimate, truth: (N, 3, H, W) in [-1, 1] -> (N,) float64 in [-1, 1]. Colour images
    (``channel_axis``: the mean SSIM of the channels), ``data_range=1``, scikit-image's
    default 7x7 uniform window.
    """
    # Imported here: scikit-image pulls in scipy, seconds of start-up that the training
    # jobs (which only need PSNR) should not pay.
    from skimage.metrics import structural_similarity

    est, ref = _pair(estimate, truth)
    values = [
        structural_similarity(
            np.moveaxis(r, 0, -1), np.moveaxis(e, 0, -1), channel_axis=-1, data_range=1.0
        )
        for e, r in zip(est, ref, strict=True)
    ]
    return np.asarray(values, dtype=np.float64)
