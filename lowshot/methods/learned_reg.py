"""CS-DIP's learned regularisation (Van Veen et al. 2018, the paper's reference [23]): the
untrained network plus a Gaussian prior on its per-layer weight means, learned from the
same S examples the low-shot models see.

The prior (``lowshot.training.learned_reg``, one file per S): the untrained network is
fitted to each of the S examples; each fitted network gives one vector m(theta) (L,) of
per-layer means (one number per parameter tensor, CS-DIP's ``layer.mean()``), and
N(mu, Sigma) is fitted to the S vectors (``layer_gaussian``). Recovery then minimises,
per image,

    0.5 ||A G(z; theta) - y||^2 + weight * gain(A) * (m(theta) - mu)^T Sigma^-1 (m(theta) - mu)

with the untrained network's recipe and start (``lowshot.methods.untrained``: its
``init``, a fixed z, RMSprop, best of the last ``window`` iterates by measurement loss,
and its optional total-variation term ``tv_weight``). ``gain(A) = ||A||_F^2 / (2 n)``
(``measurement_gain``) puts ``weight`` in CS-DIP's units: CS-DIP minimises
||A' x - y'||^2 + lambda * Q with A' entries of variance 1/m, i.e. E||A' e||^2 = ||e||^2,
while our loss is 0.5 ||A x - y||^2 ~ gain(A) ||e||^2 (gain m/2 for our N(0, 1)
compressed sensing, ~0.075 for colorization), so dividing our objective by gain(A) gives
CS-DIP's with lambda = weight, whatever the operator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from lowshot.gaussian import fit_gaussian
from lowshot.methods.base import (
    MethodSpec,
    RecoveryMethod,
    RecoveryTask,
    register,
    resolve_settings,
)
from lowshot.methods.engine import StageResult
from lowshot.methods.untrained import Untrained, fit_untrained, measurement_gain
from lowshot.models import Generator

if TYPE_CHECKING:
    from lowshot.io import LearnedRegStats

_NAME = re.compile(r"^learned_reg-S(?P<shots>[0-9]+)$")
# The settings the fitted statistics depend on: the rule fit_learned_reg takes only these
# (so that changing ``weight``, ``window`` or ``tv_weight`` refits nothing). ``init``: the
# fitted networks start from the recovery's draw, so the prior is over networks that
# start where the recovery's do.
FIT_KEYS = ("steps", "lr", "momentum", "init", "shrinkage")
# RGB ends of seaborn's "crest" palette (sns.color_palette("crest", 2) in seaborn 0.13).
_CREST_LIGHT = (0.31, 0.62, 0.56)
_CREST_DARK = (0.11, 0.42, 0.54)


def fit_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fitting part (``FIT_KEYS``) of a ``recover.learned_reg`` section, defaults
    filled in (unknown keys are an error, as in ``resolve_settings``)."""
    resolved = resolve_settings(LearnedReg.kind, settings)
    return {key: resolved[key] for key in FIT_KEYS}


def layer_means(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Per-image, per-layer weight means m(theta): name -> (N, *shape) stacked parameters
    -> (N, L) in the mapping's order (one column per parameter tensor), differentiable."""
    return torch.stack([value.flatten(1).mean(dim=1) for value in params.values()], dim=1)


def layer_gaussian(means: torch.Tensor, shrinkage: float) -> tuple[torch.Tensor, torch.Tensor]:
    """N(mu, Sigma) of per-layer means (S, L), S >= 2 -> mu (L,), Sigma (L, L) float64.

    mu is the sample mean. Sigma is ``lowshot.gaussian.fit_gaussian``'s shrunk covariance
    of the *standardised* means (each layer divided by its sample standard deviation),
    scaled back: Sigma = D ((1 - s) R + s I) D with R the sample correlation matrix, D the
    standard deviations and s = ``shrinkage``, i.e. the sample covariance shrunk towards
    its own diagonal (target "D" of Schäfer & Strimmer 2005, Stat. Appl. Genet. Mol. Biol.
    4(1):32). Shrinking towards a scaled identity in raw units would not do: the layers'
    variances differ by orders of magnitude (a conv layer's mean averages ~10^5 weights of
    std 0.02, a batch-norm gain's a few hundred near 1), so the identity's scale, the mean
    variance, would swamp the small ones and leave their means unconstrained.
    Raises when a layer's mean is the same in every row (zero variance).
    """
    values = torch.as_tensor(means).detach().cpu().double()
    if values.dim() != 2 or values.shape[0] < 2:
        raise ValueError(f"layer means must be (S, L) with S >= 2, got {tuple(values.shape)}")
    if not torch.isfinite(values).all():
        raise ValueError("layer means must be finite")
    std = values.std(dim=0)
    flat = (std <= 0).nonzero().flatten().tolist()
    if flat:
        raise ValueError(
            f"layers {flat} have the same mean in every fit: zero variance (e.g. fits of 0 "
            "steps leave every batch-norm bias at its initial 0)"
        )
    _, correlation = fit_gaussian(values / std, shrinkage)
    covariance = std[:, None] * correlation.double() * std[None, :]
    return values.mean(dim=0), (covariance + covariance.T) / 2


def prior_penalty(
    stats: LearnedRegStats, scale: float, device: torch.device
) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """params (name -> (N, *shape)) -> (N,) float32: scale * (m - mu)^T Sigma^-1 (m - mu)
    with m = ``layer_means(params)``, computed in float64 through the Cholesky factor of
    Sigma (zero exactly where m = mu). Raises when the parameters are not the layers of
    ``stats`` or Sigma is not positive definite."""
    mean = stats.mean.to(device=device, dtype=torch.float64)
    factor, info = torch.linalg.cholesky_ex(stats.covariance.to(device, torch.float64))
    if int(info) != 0:
        raise ValueError("the learned covariance is not positive definite")

    def penalty(params: dict[str, torch.Tensor]) -> torch.Tensor:
        if tuple(params) != stats.layers:
            raise ValueError(
                f"the network's parameters {list(params)} are not the layers of the learned "
                f"statistics {list(stats.layers)}"
            )
        centred = layer_means(params).double() - mean
        white = torch.linalg.solve_triangular(factor, centred.T, upper=False)
        return (scale * white.square().sum(dim=0)).float()

    return penalty


@register
class LearnedReg(RecoveryMethod):
    """``learned_reg-S<shots>``: CS-DIP with its learned regularisation (module docstring),
    one instance per S of ``lowshot.shots``, its prior fitted to the S-shot subset.

    The start is the untrained baseline's draw for the same image (``seed_name``:
    "untrained"): the same theta_0 and z, so with ``weight`` 0 it IS the untrained
    baseline's recovery and every difference is paired. ``model``: the statistics
    (``lowshot.io.LearnedRegStats``), which also fix the architecture (their latent size
    and width).
    """

    kind = "learned_reg"
    description = (
        "CS-DIP's learned regularisation: the untrained network plus a Gaussian prior on its "
        "per-layer weight means, fitted to the S examples of the low-shot models."
    )
    settings = {
        **Untrained.settings,
        "weight": {
            "description": (
                "lambda, the prior's weight in CS-DIP's units (module docstring: scaled by "
                "the operator's gain ||A||_F^2 / 2n). Ours: chosen on validation faces "
                "with the recipe's 1,000 steps (benchmarks/learned_reg_weight.py, README "
                "'Scientific choices'); CS-DIP's code (utils.py, lambdas_lr) uses 100 for "
                "x-rays, 1000 for retinal images, 0 for MNIST. 0: the untrained baseline."
            ),
            "type": "number",
            "minimum": 0,
            "default": 1.0,
        },
        "shrinkage": {
            "description": (
                "Shrinkage s of the layer means' covariance towards its diagonal (our "
                "choice, as lowshot.covariance_shrinkage: with S - 1 <= L = 13 layers the "
                "sample covariance is singular, and just above it its inverse is inflated, "
                "E[C^-1] = (S - 1) / (S - L - 2) Sigma^-1 (S = 15: unbounded); CS-DIP "
                "estimates from 2,500 runs and does not shrink)."
            ),
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "default": 0.1,
        },
    }
    model = "learned_reg"
    order = 40
    enabled_by_default = False

    @classmethod
    def method_names(cls, config: Mapping[str, Any]) -> list[str]:
        return [f"learned_reg-S{shots}" for shots in sorted(config["lowshot"]["shots"])]

    @classmethod
    def parse(cls, name: str) -> MethodSpec | None:
        match = _NAME.match(name)
        return MethodSpec(cls.kind, name, None, int(match["shots"])) if match else None

    @classmethod
    def seed_name(cls, spec: MethodSpec) -> str:
        return Untrained.kind

    @classmethod
    def method_label(cls, spec: MethodSpec) -> str:
        return f"Learned reg. (S={spec.shots})"

    @classmethod
    def line_style(cls, spec: MethodSpec, siblings: Sequence[MethodSpec]) -> dict[str, Any]:
        """Dashed, light to dark blue-green with the number of shots (apart from the
        low-shot models' red "flare"): a straight line between the ends of seaborn's
        "crest", so that recovery jobs, which import this file, need no seaborn."""
        shots = sorted({s.shots for s in siblings if s.shots is not None})
        position = shots.index(spec.shots) / max(len(shots) - 1, 1)
        color = tuple(
            light + position * (dark - light)
            for light, dark in zip(_CREST_LIGHT, _CREST_DARK, strict=True)
        )
        return {"color": color, "linestyle": "--", "marker": "P"}

    @classmethod
    def sort_key(cls, spec: MethodSpec) -> tuple[Any, ...]:
        return (spec.shots or 0,)

    @classmethod
    def run(cls, task: RecoveryTask) -> StageResult:
        stats: LearnedRegStats = task.model
        settings, y = task.settings, task.y
        if stats.latent_dim != task.latent_dim:
            raise ValueError(
                f"learned_reg: the statistics were fitted with latent size {stats.latent_dim}, "
                f"the recovery uses {task.latent_dim}"
            )
        # Files written before ``init`` was a setting hold DCGAN-initialised fits.
        fitted_init = str(stats.attrs.get("init", "dcgan"))
        if fitted_init != settings["init"]:
            raise ValueError(
                f"learned_reg: the statistics were fitted from init {fitted_init!r}, the "
                f"recovery starts from {settings['init']!r} (refit them: rule fit_learned_reg)"
            )
        penalty = None
        if settings["weight"] > 0:
            scale = settings["weight"] * measurement_gain(task.operator)
            penalty = prior_penalty(stats, scale, y.device)
        result, _ = fit_untrained(
            task.seeds,
            Generator(stats.latent_dim, stats.width),
            task.operator,
            y,
            settings,
            window=settings["window"],
            penalty=penalty,
            tv_weight=settings["tv_weight"],
            desc="learned reg",
            **task.options,
        )
        return result
