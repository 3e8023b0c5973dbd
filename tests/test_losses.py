"""Losses: l2 (eq. 4), Gaussian-kernel MMD (eq. 5), median bandwidth, WGAN-GP."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lowshot.losses import (
    critic_loss,
    gaussian_kernel,
    generator_loss,
    gradient_penalty,
    l2_loss,
    median_bandwidth,
    mmd_loss,
    squared_distances,
)
from lowshot.models import Critic


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_squared_distances_match_cdist_on_images() -> None:
    x, y = _rand(4, 3, 8, 8, seed=1), _rand(6, 3, 8, 8, seed=2)
    expected = torch.cdist(x.reshape(4, -1), y.reshape(6, -1)) ** 2
    assert torch.allclose(squared_distances(x, y), expected, rtol=1e-10, atol=1e-9)
    self_distances = squared_distances(x, x)
    assert (self_distances >= 0).all()
    assert torch.allclose(self_distances.diagonal(), torch.zeros(4, dtype=x.dtype), atol=1e-9)


def test_l2_loss_is_mean_over_examples_of_squared_norms() -> None:
    g, x = _rand(5, 3, 4, 4, seed=3), _rand(5, 3, 4, 4, seed=4)
    naive = sum(float(((g[i] - x[i]) ** 2).sum()) for i in range(5)) / 5
    assert float(l2_loss(g, x)) == pytest.approx(naive, rel=1e-12)
    with pytest.raises(ValueError):
        l2_loss(g, x[:4])


def test_gaussian_kernel_values() -> None:
    a = torch.zeros(1, 3, dtype=torch.float64)
    b = torch.tensor([[1.0, 2.0, 2.0]], dtype=torch.float64)  # squared distance 9
    assert float(gaussian_kernel(a, a, 2.0)) == pytest.approx(1.0)
    assert float(gaussian_kernel(a, b, 4.5)) == pytest.approx(math.exp(-2.0))
    with pytest.raises(ValueError):
        gaussian_kernel(a, b, 0.0)


def _naive_kernel(a: torch.Tensor, b: torch.Tensor, alpha: float) -> float:
    return math.exp(-float(((a - b) ** 2).sum()) / alpha)


def test_mmd_equals_naive_double_loop() -> None:
    g, x = _rand(6, 3, 4, 4, seed=5), _rand(6, 3, 4, 4, seed=6) + 0.3
    alpha, s = 40.0, 6
    pairs = [(i, j) for i in range(s) for j in range(s) if i != j]
    k_gg = sum(_naive_kernel(g[i], g[j], alpha) for i, j in pairs)
    k_xx = sum(_naive_kernel(x[i], x[j], alpha) for i, j in pairs)
    k_gx = sum(_naive_kernel(g[i], x[j], alpha) for i, j in pairs)
    n_pairs = s * (s - 1)
    naive = k_gg / n_pairs + k_xx / n_pairs - 2 * k_gx / n_pairs
    value = float(mmd_loss(g, x, alpha))
    assert value == pytest.approx(naive, rel=1e-10)
    # The paper's eq. (5), sums over ordered pairs divided by binom(S, 2), is twice that.
    binom = s * (s - 1) / 2
    eq5 = k_gg / binom + k_xx / binom - 2 * k_gx / binom
    assert eq5 == pytest.approx(2 * value, rel=1e-10)


def test_mmd_near_zero_for_one_distribution_and_positive_for_shifted() -> None:
    n, alpha = 1000, 2.0
    x, y = _rand(n, 2, seed=7), _rand(n, 2, seed=8)
    shifted = _rand(n, 2, seed=9) + torch.tensor([2.0, 0.0], dtype=torch.float64)
    same = float(mmd_loss(x, y, alpha))
    different = float(mmd_loss(x, shifted, alpha))
    # Closed form for N(0, I) vs N(mu, I) in 2-d with this kernel: 2/3 (1 - exp(-|mu|^2/6)).
    expected = 2.0 / 3.0 * (1.0 - math.exp(-4.0 / 6.0))
    assert abs(same) < 0.01
    assert different == pytest.approx(expected, abs=0.03)
    assert different > 20 * abs(same)


def test_mmd_is_differentiable_and_checks_sizes() -> None:
    g = _rand(4, 10, seed=10).requires_grad_(True)
    x = _rand(4, 10, seed=11)
    mmd_loss(g, x, 5.0).backward()
    assert g.grad is not None and torch.isfinite(g.grad).all() and g.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        mmd_loss(g, x[:3], 5.0)


def test_median_bandwidth_is_median_squared_pairwise_distance() -> None:
    # Points 0, 1, 3, 7 on a line: squared distances 1, 9, 49, 4, 36, 16 -> median 12.5.
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert median_bandwidth(x) == pytest.approx(12.5)
    # Odd number of pairs (3 points): 1, 9, 4 -> 4.
    assert median_bandwidth(x[:3]) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        median_bandwidth(x[:1])


class Linear(nn.Module):
    """D(x) = w . x: gradient w everywhere, so the penalty is (||w|| - 1)^2."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self.w


class RecordingQuadratic(nn.Module):
    """D(x) = ||x||^2 / 2 (gradient x); records the inputs it is evaluated on."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return 0.5 * x.reshape(x.shape[0], -1).pow(2).sum(dim=1)


def test_gradient_penalty_of_linear_critic_is_known() -> None:
    w = _rand(12, seed=12)
    critic = Linear(w)
    real, fake = _rand(5, 3, 2, 2, seed=13), _rand(5, 3, 2, 2, seed=14)
    penalty = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0))
    norm = float(w.norm())
    assert float(penalty.detach()) == pytest.approx((norm - 1) ** 2, rel=1e-10)
    # create_graph: the penalty is differentiable in the critic's parameters.
    penalty.backward()
    expected_grad = 2 * (norm - 1) * w / norm
    assert torch.allclose(critic.w.grad, expected_grad, rtol=1e-8)


def test_gradient_penalty_is_evaluated_on_interpolates() -> None:
    critic = RecordingQuadratic()
    real, fake = _rand(6, 3, 4, 4, seed=15), _rand(6, 3, 4, 4, seed=16)
    penalty = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(1))
    (points,) = critic.inputs
    # Each point is eps_i real_i + (1 - eps_i) fake_i for one eps_i in [0, 1] per sample.
    eps = ((points - fake) / (real - fake)).reshape(6, -1)
    assert torch.allclose(eps, eps[:, :1].expand_as(eps), atol=1e-8)
    assert ((eps[:, 0] >= 0) & (eps[:, 0] <= 1)).all()
    assert eps[:, 0].unique().numel() == 6  # drawn per sample
    # The gradient is the point itself, so the norm is taken at the interpolates.
    expected = ((points.reshape(6, -1).norm(dim=1) - 1) ** 2).mean()
    assert float(penalty.detach()) == pytest.approx(float(expected), rel=1e-6)
    # The draws come from the given generator.
    again = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(1))
    other = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(2))
    assert torch.equal(critic.inputs[1], points)
    assert not torch.equal(critic.inputs[2], points)
    assert torch.equal(again, penalty) and not torch.equal(other, penalty)


def test_critic_and_generator_losses_of_linear_critic() -> None:
    w = _rand(12, seed=17)
    critic = Linear(w)
    real, fake = _rand(4, 3, 2, 2, seed=18), _rand(4, 3, 2, 2, seed=19)
    d_real = float((real.reshape(4, -1) @ w).mean())
    d_fake = float((fake.reshape(4, -1) @ w).mean())
    penalty = (float(w.norm()) - 1) ** 2
    parts = critic_loss(critic, real, fake, gp_weight=10.0, generator=torch.Generator())
    assert float(parts.wasserstein.detach()) == pytest.approx(d_real - d_fake, rel=1e-6)
    assert float(parts.penalty.detach()) == pytest.approx(penalty, rel=1e-6)
    assert float(parts.loss.detach()) == pytest.approx(d_fake - d_real + 10.0 * penalty, rel=1e-6)
    assert float(generator_loss(critic, fake).detach()) == pytest.approx(-d_fake, rel=1e-6)


def test_gradient_penalty_backpropagates_through_the_real_critic() -> None:
    critic = Critic(width=8)
    real = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    fake = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1
    penalty = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0))
    penalty.backward()
    # The score's output bias does not change its input gradient, so it gets none.
    output_bias = critic.net[-1].bias
    for name, parameter in critic.named_parameters():
        if parameter is output_bias:
            assert parameter.grad is None
            continue
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        if name.endswith("weight"):
            assert parameter.grad.abs().sum() > 0, name
