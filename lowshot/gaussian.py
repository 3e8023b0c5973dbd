"""The Gaussian fitted to the low-shot codes, and the one way to draw from a Gaussian.

The paper (eq. 2) initialises recovery by "sampling from a multivariate Gaussian
distribution fit using" the S codes. With S <= 100 < 128 latent dimensions the sample
covariance is singular, so it is shrunk towards a scaled identity (our choice, see the
README's table of scientific choices).
"""

from __future__ import annotations

import numpy as np
import torch


def fit_gaussian(codes: torch.Tensor, shrinkage: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and shrunk covariance of the codes, the prior that initialises recovery.

    codes: (S, k) with S >= 2 -> mean (k,), covariance (k, k), float32 on the CPU.
    covariance = (1 - s) * C + s * (trace(C) / k) * I, with C the unbiased sample
    covariance (divisor S - 1) and s = ``shrinkage`` in [0, 1]: shrinkage towards the
    isotropic covariance with the same total variance (Ledoit-Wolf's target with a fixed
    weight). C has rank <= S - 1 < k when S <= k (the paper: S <= 100 < 128), so it is
    singular; any s > 0 makes every eigenvalue >= s * trace(C) / k > 0, i.e. the
    covariance positive definite (when the codes are not all equal). Computed in float64.
    """
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1], not {shrinkage}")
    z = torch.as_tensor(codes).detach().cpu().double()
    if z.dim() != 2 or z.shape[0] < 2:
        raise ValueError(f"codes must be (S, k) with S >= 2, got {tuple(z.shape)}")
    k = z.shape[1]
    mean = z.mean(dim=0)
    centred = z - mean
    sample = centred.T @ centred / (z.shape[0] - 1)
    target = torch.trace(sample) / k * torch.eye(k, dtype=torch.float64)
    covariance = (1.0 - shrinkage) * sample + shrinkage * target
    return mean.float(), covariance.float()


def gaussian_from_normal(
    mean: torch.Tensor | np.ndarray,
    covariance: torch.Tensor | np.ndarray,
    eps: torch.Tensor,
) -> torch.Tensor:
    """Map standard-normal draws eps (N, k) to N(mean, covariance): (N, k) float32, CPU.

    z = mean + L eps with L L^T = covariance: the Cholesky factor, or, when the covariance
    is not numerically positive definite, V sqrt(max(lambda, 0)) from its eigenvectors
    (so a singular covariance still samples its range). Computed in float64. Callers draw
    eps themselves (one seeded draw per image keeps an image's z independent of its batch).
    """
    mean64 = torch.as_tensor(np.asarray(mean), dtype=torch.float64).cpu().reshape(-1)
    cov64 = torch.as_tensor(np.asarray(covariance), dtype=torch.float64).cpu()
    k = mean64.shape[0]
    if cov64.shape != (k, k):
        raise ValueError(f"covariance {tuple(cov64.shape)} does not match mean ({k},)")
    if eps.dim() != 2 or eps.shape[1] != k:
        raise ValueError(f"eps must be (N, {k}), got {tuple(eps.shape)}")
    factor, info = torch.linalg.cholesky_ex(cov64)
    if int(info) != 0:
        values, vectors = torch.linalg.eigh(cov64)
        factor = vectors * values.clamp(min=0).sqrt()
    return (mean64 + eps.detach().cpu().double() @ factor.T).float()
