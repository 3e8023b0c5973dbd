"""Classical sparsity, the non-learned floor: Lasso in the 2-D DCT basis (CSGM's Lasso
baseline, Bora et al. 2017), solved by FISTA (Beck & Teboulle 2009) on the operator.

Per image, with W the orthonormal 2-D DCT-II of each colour channel (W^T = W^-1):

    c_hat = argmin_c 0.5 ||A W^T c - y||^2 + lam ||c||_1,    x_hat = clip(W^T c_hat, -1, 1)

(the clip to the image range is CSGM's own, github AshishBora/csgm,
src/celebA_estimators.py, ``lasso_dct_estimator``). Only ``A`` and ``A_adjoint`` of the
operator are used, never its matrix, so every problem family works.

lam is set relative to lam_max = ||W A^T y||_inf, the smallest lam whose solution is
c = 0: lam = ``lam`` * lam_max per image. A relative lam does not change when A and y are
rescaled together (A here has N(0, 1) entries, CSGM's N(0, 1/m)), so one default serves
every ratio and problem; ``benchmarks/sparsity_lambda.py`` chose it on validation faces.

FISTA steps 1/L with L = ||A||^2 (= ||A W^T||^2, W orthonormal), estimated per image by
power iteration on A^T A from the image's seed (sub-stream "power"): each image of a job
computes its own estimate, so the result does not depend on which images share a job
(beyond fp32 rounding: FISTA is a contraction, it does not amplify it).
Power iteration approaches ||A||^2 from below, so L is the estimate times
``LIPSCHITZ_MARGIN``. Everything runs in fp32 (``precision`` does not apply: there is no
network); ``z`` is an empty (N, 0) tensor, as there is no latent code.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from lowshot.methods.base import RecoveryMethod, RecoveryTask, register
from lowshot.methods.engine import StageResult, measurement_loss
from lowshot.problems import IMAGE_SHAPE, Operator
from lowshot.seeds import derive_seed, seeded_generator

# L = margin * (power-iteration estimate of ||A||^2). Our choice: on the pipeline's
# Gaussian A (cs-0.1 and cs-0.5, config seed 0; 5 start seeds each) 50 iterations gave
# between 0.980 and 0.998 of the exact ||A||^2 (the largest eigenvalue of A A^T), 30
# gave 0.969 to 0.984; colorization's A^T A (rank one per pixel) is exact after one. A 5%
# margin on 50 iterations keeps L >= 1.029 ||A||^2, i.e. a step below 1/||A||^2, where
# FISTA is guaranteed to converge, at the price of steps at most 5% shorter.
LIPSCHITZ_MARGIN = 1.05


def dct_matrix(size: int = IMAGE_SHAPE[1]) -> torch.Tensor:
    """The orthonormal DCT-II matrix D (size, size), float64: D[k, j] = s_k cos(pi (2j + 1)
    k / (2 size)), s_0 = sqrt(1 / size), s_k = sqrt(2 / size); D D^T = I."""
    k = np.arange(size)[:, None]
    j = np.arange(size)[None, :]
    matrix = np.sqrt(2.0 / size) * np.cos(np.pi * (2 * j + 1) * k / (2 * size))
    matrix[0] /= np.sqrt(2.0)
    return torch.from_numpy(matrix)


def to_dct(x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """W x: the 2-D DCT of every channel, x (N, C, H, W) -> coefficients (N, C, H, W)."""
    return basis @ x @ basis.T


def from_dct(c: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """W^T c: the inverse 2-D DCT of every channel, (N, C, H, W) -> images (N, C, H, W)."""
    return basis.T @ c @ basis


def soft_threshold(c: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """The proximal map of tau ||.||_1: sign(c) max(|c| - tau, 0); c (N, ...), tau (N,)."""
    tau = tau.reshape(-1, *([1] * (c.dim() - 1)))
    return torch.sign(c) * torch.clamp(c.abs() - tau, min=0)


def lam_max(operator: Operator, y: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """||W A^T y||_inf per image, y (N, m) -> (N,): the smallest lam with solution c = 0."""
    return to_dct(operator.A_adjoint(y), basis).flatten(1).abs().amax(dim=1)


def operator_norm_squared(
    operator: Operator, seeds: list[int], iterations: int, device: torch.device
) -> torch.Tensor:
    """Power-iteration estimates of ||A||^2, one per seed: (N,) float32 on ``device``.

    Row i starts from v ~ N(0, I) (3, 64, 64) drawn on the CPU from ``seeds[i]``, then
    ``iterations`` times v <- A^T A v / ||A^T A v||; the estimate is ||A v||^2 of the
    last unit v (a Rayleigh quotient of A^T A, at most ||A||^2).
    """
    if iterations < 1:
        raise ValueError(f"power iterations must be >= 1, not {iterations}")
    if not seeds:
        return torch.empty(0, device=device)
    v = torch.stack([torch.randn(IMAGE_SHAPE, generator=seeded_generator(s)) for s in seeds]).to(
        device
    )
    with torch.no_grad():
        for _ in range(iterations):
            v = v / v.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
            v = operator.A_adjoint(operator.A(v))
        v = v / v.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
        estimate = operator.A(v).square().sum(dim=1)
    if not torch.isfinite(estimate).all() or (estimate <= 0).any():
        raise ValueError(
            f"sparsity: power iteration on {operator.name} gave ||A||^2 estimates "
            f"{estimate.tolist()}; A must be a non-zero finite linear map"
        )
    return estimate


def fista(
    operator: Operator,
    y: torch.Tensor,
    lam: torch.Tensor,
    lipschitz: torch.Tensor,
    steps: int,
    *,
    basis: torch.Tensor | None = None,
    progress: bool = False,
    observe: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """FISTA on min_c 0.5 ||A W^T c - y||^2 + lam ||c||_1, every image at once.

    y (N, m); lam (N,) >= 0, absolute; lipschitz (N,) > 0, at least ||A||^2; steps >= 0.
    Starts from c = 0. ``observe(k, c_k)``, when given, sees the iterate after each step
    k = 1..steps. Returns the coefficients c (N, 3, 64, 64) of the last step.
    """
    basis = dct_matrix().to(y) if basis is None else basis
    n = y.shape[0]
    c = torch.zeros(n, *IMAGE_SHAPE, device=y.device, dtype=y.dtype)
    v, t = c, 1.0
    step = (1.0 / lipschitz).reshape(-1, 1, 1, 1)
    threshold = lam / lipschitz
    with torch.no_grad():
        for k in tqdm(range(1, steps + 1), desc="sparsity", disable=not progress, leave=False):
            residual = operator.A(from_dct(v, basis)) - y
            gradient = to_dct(operator.A_adjoint(residual), basis)
            previous, c = c, soft_threshold(v - step * gradient, threshold)
            t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
            v = c + ((t - 1.0) / t_next) * (c - previous)
            t = t_next
            if observe is not None:
                observe(k, c)
    return c


def images_from_coefficients(c: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """x_hat = clip(W^T c, -1, 1): coefficients (N, 3, 64, 64) -> images in [-1, 1]."""
    return from_dct(c, basis).clamp(-1.0, 1.0)


@register
class Sparsity(RecoveryMethod):
    """Lasso in the DCT basis by FISTA (module docstring): the floor that no learned prior
    should fall below. Deterministic but for the power iteration's start (the image's
    seed, sub-stream "power"). An image whose y is not finite is flagged ``diverged``, with
    a NaN image and loss (FISTA with step 1/L cannot blow up on a finite y)."""

    kind = "sparsity"
    description = "Classical sparsity: Lasso in the 2-D DCT basis, solved by FISTA."
    # Last in tables and figures, and not in the paper's grid unless a config asks.
    order = 60
    enabled_by_default = False
    label = "Sparsity (DCT Lasso)"
    style = {"color": "tab:brown", "linestyle": "-", "marker": "^"}
    settings = {
        "lam": {
            "description": (
                "lam as a fraction of lam_max = ||W A^T y||_inf, per image. Our choice, on "
                "the 20 validation faces of results/data (never test faces), config seed 0, "
                "noise 0, 1,000 steps: mean PSNR over m/n = 0.1 and 0.5 for lam / lam_max "
                "in 1e-5..3e-2 (x3 steps) was highest at 3e-4 (17.48 and 26.18 dB; a flat "
                "optimum, 21.76-21.83 dB mean from 1e-4 to 1e-3; 3e-2 gave 19.02). "
                "Command: .venv/bin/python benchmarks/sparsity_lambda.py --checkpoints "
                "100 250 500 750"
            ),
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 1,
            "default": 3.0e-4,
        },
        "steps": {
            "description": (
                "FISTA iterations. Our choice: in the lam benchmark (see lam) the chosen "
                "lam had converged by 750 steps at both ratios (mean PSNR moved < 0.01 dB "
                "from 750 to 1,000), while 250 steps were still 2.3 dB short at m/n = 0.1."
            ),
            "type": "integer",
            "minimum": 1,
            "default": 1000,
        },
        "power_iterations": {
            "description": (
                "Power iterations estimating ||A||^2, per image. Our choice: 50 came within "
                "2% of the exact value on cs-0.1 and cs-0.5 (LIPSCHITZ_MARGIN in this file)."
            ),
            "type": "integer",
            "minimum": 1,
            "default": 50,
        },
    }

    @classmethod
    def run(cls, task: RecoveryTask) -> StageResult:
        operator, y, settings = task.operator, task.y, task.settings
        n, device = y.shape[0], y.device
        basis = dct_matrix().to(device=device, dtype=torch.float32)
        norm2 = operator_norm_squared(
            operator,
            [derive_seed(s, "power") for s in task.seeds],
            settings["power_iterations"],
            device,
        )
        lam = settings["lam"] * lam_max(operator, y, basis)
        c = fista(
            operator,
            y,
            lam,
            LIPSCHITZ_MARGIN * norm2,
            settings["steps"],
            basis=basis,
            progress=task.progress,
        )
        images = images_from_coefficients(c, basis)
        loss = measurement_loss(operator, images, y)
        diverged = ~(torch.isfinite(loss) & torch.isfinite(images).flatten(1).all(dim=1))
        images = torch.where(diverged[:, None, None, None], math.nan, images)
        return StageResult(
            images=images,
            z=torch.empty(n, 0, device=device),
            loss=torch.where(diverged, math.nan, loss),
            iterations=torch.where(
                diverged,
                torch.zeros((), dtype=torch.int64, device=device),
                torch.full((n,), settings["steps"], dtype=torch.int64, device=device),
            ),
            diverged=diverged,
        )
