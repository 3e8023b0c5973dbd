"""The codes' Gaussian: the shrunk covariance fit, and sampling N(mean, covariance) from
standard-normal draws (lowshot.gaussian)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lowshot.gaussian import fit_gaussian, gaussian_from_normal


def test_fit_gaussian_shrinkage_formula_and_positive_definite() -> None:
    codes = torch.randn(5, 16, generator=torch.Generator().manual_seed(0)) + 2.0
    shrinkage = 0.1
    mean, covariance = fit_gaussian(codes, shrinkage)
    sample = np.cov(codes.double().numpy(), rowvar=False)  # divisor S - 1
    expected = (1 - shrinkage) * sample + shrinkage * np.trace(sample) / 16 * np.eye(16)
    assert np.allclose(mean.numpy(), codes.double().mean(0).numpy(), atol=1e-6)
    assert np.allclose(covariance.numpy(), expected, atol=1e-5)
    eigenvalues = np.linalg.eigvalsh(covariance.double().numpy())
    assert eigenvalues.min() >= shrinkage * np.trace(sample) / 16 * (1 - 1e-4)
    # Without shrinkage, S = 5 < k = 16 leaves the covariance singular.
    _, singular = fit_gaussian(codes, 0.0)
    assert np.linalg.eigvalsh(singular.double().numpy()).min() < 1e-5
    with pytest.raises(ValueError):
        fit_gaussian(codes, 1.5)


def _draw(mean: torch.Tensor, covariance: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n draws from N(mean, covariance): one seeded standard-normal draw, mapped."""
    eps = torch.randn(n, mean.shape[0], generator=torch.Generator().manual_seed(seed))
    return gaussian_from_normal(mean, covariance, eps)


def test_gaussian_from_normal_is_seeded_and_has_the_right_moments() -> None:
    mean = torch.tensor([1.0, -2.0, 0.5])
    a = torch.tensor([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.2, -0.3, 0.5]])
    covariance = a @ a.T
    draws = _draw(mean, covariance, 20000, 1)
    assert draws.shape == (20000, 3) and draws.dtype == torch.float32
    assert torch.allclose(draws.mean(0), mean, atol=0.05)
    assert torch.allclose(torch.cov(draws.T), covariance, atol=0.05)
    first = _draw(mean, covariance, 2, 1)
    assert torch.equal(first, _draw(mean, covariance, 2, 1))
    other = _draw(mean, covariance, 2, 2)
    assert not torch.equal(first, other)


def test_gaussian_from_normal_is_mean_plus_cholesky_factor_times_eps() -> None:
    """z = mean + L eps in float64 with L the Cholesky factor, then float32: the numbers
    of the training stage's former ``sample_gaussian`` (sample grids depend on them)."""
    generator = torch.Generator().manual_seed(0)
    codes = torch.randn(6, 4, generator=generator)
    mean, covariance = fit_gaussian(codes, 0.1)
    eps = torch.randn(5, 4, generator=generator)
    factor = torch.linalg.cholesky(covariance.double())
    expected = (mean.double() + eps.double() @ factor.T).float()
    assert torch.equal(gaussian_from_normal(mean, covariance, eps), expected)
    with pytest.raises(ValueError, match="eps must be"):
        gaussian_from_normal(mean, covariance, eps[:, :3])
