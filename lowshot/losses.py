"""Losses of the paper: l2 (eq. 4), the Gaussian-kernel MMD (eq. 5), and WGAN-GP.

All functions take images as tensors of shape (N, ...) (the package's (N, 3, 64, 64) in
[-1, 1], or any (N, D) features) and flatten everything after the first dimension.

Pairwise squared distances use ||a||^2 + ||b||^2 - 2 a.b (one matrix product, which is
what makes the MMD on S x 12288 flattened images cheap), clamped at 0 because rounding
can make the expansion slightly negative for (near-)identical examples.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

DEFAULT_GP_WEIGHT = 10.0


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ||x_i - y_j||^2 between flattened examples.

    x: (N, ...), y: (M, ...) with the same number of values per example -> (N, M) >= 0.
    """
    a, b = _flat(x), _flat(y)
    sq_a = (a * a).sum(dim=1, keepdim=True)
    sq_b = (b * b).sum(dim=1, keepdim=True)
    return (sq_a + sq_b.T - 2.0 * (a @ b.T)).clamp_min(0.0)


def l2_loss(generated: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. (4): (1/S) sum_i ||G(z_i) - x_i||_2^2, the mean over examples of the squared
    l2 norm of each example's difference (a sum over its pixels, not a pixel mean).

    generated, targets: (S, ...) paired example by example -> scalar.
    """
    if generated.shape != targets.shape:
        raise ValueError(f"shapes differ: {tuple(generated.shape)} vs {tuple(targets.shape)}")
    return _flat(generated - targets).pow(2).sum(dim=1).mean()


def gaussian_kernel(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """The paper's kernel k_alpha(a, b) = exp(-||a - b||_2^2 / alpha) for all pairs.

    x: (N, ...), y: (M, ...) -> (N, M) in (0, 1]. ``alpha`` > 0 is the bandwidth
    (a squared length, comparable with squared distances).
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, not {alpha}")
    return torch.exp(-squared_distances(x, y) / alpha)


def _off_diagonal_mean(matrix: torch.Tensor) -> torch.Tensor:
    n = matrix.shape[0]
    return (matrix.sum() - matrix.diagonal().sum()) / (n * (n - 1))


def mmd_loss(generated: torch.Tensor, targets: torch.Tensor, alpha: float) -> torch.Tensor:
    """Gretton et al.'s unbiased estimate MMD^2_u with the Gaussian kernel ``k_alpha``.

    generated: (S, ...), targets: (S, ...) with the same S >= 2 -> scalar (can be slightly
    negative, as an unbiased estimate of a non-negative quantity).

    With g_i = G(z_i) and the mean taken over ordered pairs with distinct indices,

        MMD^2_u = mean_{i != i'} k(g_i, g_i') + mean_{j != j'} k(x_j, x_j')
                  - 2 mean_{i != j} k(g_i, x_j),

    the U-statistic of Gretton et al. (JMLR 2012, Lemma 6) for two samples of equal size:
    like the paper's eq. (5), the cross term leaves out the pairs i = j. Reading eq. (5)'s
    sums as sums over ordered pairs, eq. (5) = 2 * MMD^2_u (its normaliser 1/binom(S, 2)
    is twice 1/(S(S - 1))); the factor 2 is left out. A constant factor rescales the
    gradients only, which Adam (the optimiser used) almost entirely undoes.
    """
    if generated.shape[0] != targets.shape[0]:
        raise ValueError(
            f"mmd_loss needs equally many generated and target examples, "
            f"got {generated.shape[0]} and {targets.shape[0]}"
        )
    if generated.shape[0] < 2:
        raise ValueError("mmd_loss needs at least two examples")
    k_gg = gaussian_kernel(generated, generated, alpha)
    k_xx = gaussian_kernel(targets, targets, alpha)
    k_gx = gaussian_kernel(generated, targets, alpha)
    return _off_diagonal_mean(k_gg) + _off_diagonal_mean(k_xx) - 2.0 * _off_diagonal_mean(k_gx)


def median_bandwidth(x: torch.Tensor) -> float:
    """The median heuristic for ``alpha``: the median of ||x_j - x_j'||^2 over pairs j < j'.

    x: (S, ...) with S >= 2 -> positive float. With an even number of pairs the median is
    the mean of the two middle values. Because the kernel divides *squared* distances by
    alpha, a typical pair of examples gets k = exp(-1), away from both 0 and 1, where the
    kernel's gradient is informative.
    """
    if x.shape[0] < 2:
        raise ValueError("median_bandwidth needs at least two examples")
    distances = squared_distances(x.detach().double(), x.detach().double())
    rows, cols = torch.triu_indices(x.shape[0], x.shape[0], offset=1)
    alpha = float(torch.quantile(distances[rows, cols], 0.5))
    if not alpha > 0:
        raise ValueError("median_bandwidth: the examples are (nearly) identical")
    return alpha


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty mean_i (||grad_x D(x_hat_i)||_2 - 1)^2 on random interpolates.

    real, fake: (N, ...) -> scalar. x_hat_i = eps_i real_i + (1 - eps_i) fake_i with one
    eps_i ~ U[0, 1] per sample, drawn from ``generator`` (on the generator's device, then
    moved), so a checkpointed generator reproduces the draws. The graph is kept
    (``create_graph``) so the penalty can be minimised with respect to the critic.
    """
    if real.shape != fake.shape:
        raise ValueError(f"shapes differ: {tuple(real.shape)} vs {tuple(fake.shape)}")
    draw_device = generator.device if generator is not None else real.device
    eps = torch.rand(real.shape[0], generator=generator, device=draw_device, dtype=real.dtype)
    eps = eps.to(real.device).reshape(-1, *([1] * (real.dim() - 1)))
    interpolates = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(interpolates)
    (grad,) = torch.autograd.grad(scores.sum(), interpolates, create_graph=True)
    # Low-precision (autocast) gradients are upcast before the norm; float64 stays float64.
    norms = _flat(grad).to(torch.promote_types(grad.dtype, torch.float32)).norm(dim=1)
    return (norms - 1.0).pow(2).mean()


class CriticLoss(NamedTuple):
    """The critic's objective and its parts (scalars)."""

    loss: torch.Tensor  # mean D(fake) - mean D(real) + gp_weight * penalty; minimised
    wasserstein: torch.Tensor  # mean D(real) - mean D(fake), the distance estimate
    penalty: torch.Tensor  # gradient penalty (without its weight)


def critic_loss(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    gp_weight: float = DEFAULT_GP_WEIGHT,
    generator: torch.Generator | None = None,
) -> CriticLoss:
    """WGAN-GP critic loss (Gulrajani et al. 2017), lambda = ``gp_weight`` (paper: 10).

    real, fake: (N, 3, 64, 64); ``fake`` is detached (the generator is not trained here).
    ``generator`` draws the interpolation weights of the gradient penalty.
    """
    fake = fake.detach()
    wasserstein = critic(real).float().mean() - critic(fake).float().mean()
    penalty = gradient_penalty(critic, real, fake, generator)
    return CriticLoss(-wasserstein + gp_weight * penalty, wasserstein.detach(), penalty.detach())


def generator_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """WGAN generator loss -mean D(G(z)); fake: (N, 3, 64, 64) -> scalar."""
    return -critic(fake).float().mean()
