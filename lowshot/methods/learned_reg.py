"""CS-DIP's learned regularisation (Van Veen et al. 2018, the paper's reference [23]): the
untrained network plus a Gaussian prior on its per-layer weight means, learned from the
same S examples the low-shot models see.

The prior (``lowshot.training.learned_reg``, one file per S): the untrained network is
fitted to each of the S examples; each fitted network gives one vector m(theta) (L,) of
per-layer means (one number per parameter tensor, CS-DIP's ``layer.mean()``), and
N(mu, Sigma) is fitted to the S vectors (``layer_gaussian``). Recovery then minimises,
per image,

    0.5 ||A G(z; theta) - y||^2 + weight * gain(A) * (m(theta) - mu)^T Sigma^-1 (m(theta) - mu)

with the untrained network's recipe (fixed z, RMSprop, best of the last ``window``
iterates by measurement loss). ``gain(A) = ||A||_F^2 / (2 n)`` (``measurement_gain``)
puts ``weight`` in CS-DIP's units: CS-DIP minimises ||A' x - y'||^2 + lambda * Q with
A' entries of variance 1/m, i.e. E||A' e||^2 = ||e||^2, while our loss is
0.5 ||A x - y||^2 ~ gain(A) ||e||^2 (gain m/2 for our N(0, 1) compressed sensing, ~0.075
for colorization), so dividing our objective by gain(A) gives CS-DIP's with
lambda = weight, whatever the operator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.func import stack_module_state

from lowshot.gaussian import fit_gaussian
from lowshot.methods.base import (
    MethodSpec,
    RecoveryMethod,
    RecoveryTask,
    register,
    resolve_settings,
)
from lowshot.methods.engine import StageResult, optimise_joint, standard_normal, working_copy
from lowshot.methods.untrained import Untrained
from lowshot.models import Generator, init_dcgan_weights
from lowshot.problems import Operator
from lowshot.seeds import derive_seed, seeded_generator

if TYPE_CHECKING:
    from lowshot.io import LearnedRegStats

_NAME = re.compile(r"^learned_reg-S(?P<shots>[0-9]+)$")
# The settings the fitted statistics depend on: the rule fit_learned_reg takes only these
# (so that changing ``weight`` or ``window`` refits nothing).
FIT_KEYS = ("steps", "lr", "momentum", "shrinkage")
# Rademacher probes of the Hutchinson estimate of ||A||_F^2 (``measurement_gain``): its
# relative error is about sqrt(2 / (m * probes)), under 3 % for m >= 123 (cs-0.01).
GAIN_PROBES = 32
_GAIN_SEED = derive_seed(0, "learned_reg", "gain")
# RGB ends of seaborn's "crest" palette (sns.color_palette("crest", 2) in seaborn 0.13).
_CREST_LIGHT = (0.31, 0.62, 0.56)
_CREST_DARK = (0.11, 0.42, 0.54)


def fit_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fitting part (``FIT_KEYS``) of a ``recover.learned_reg`` section, defaults
    filled in (unknown keys are an error, as in ``resolve_settings``)."""
    resolved = resolve_settings(LearnedReg.kind, settings)
    return {key: resolved[key] for key in FIT_KEYS}


def dip_start(
    seeds: Sequence[int], latent_dim: int, width: int, device: torch.device
) -> tuple[Generator, dict[str, torch.Tensor], torch.Tensor]:
    """The untrained network's start, as ``Untrained.run`` draws it, for N = len(seeds).

    Per image a DCGAN-initialised ``Generator(latent_dim, width)`` (sub-stream "theta" of
    its seed) and a fixed z ~ N(0, I) (sub-stream "z"). Returns the working copy (norm
    ``"per_image"``, frozen, on ``device``: the architecture and buffers), the stacked
    per-image parameters name -> (N, *shape) leaves on ``device``, and z0 (N, latent_dim).
    """
    if not seeds:
        raise ValueError("dip_start needs at least one seed")
    networks = []
    for seed in seeds:
        network = Generator(latent_dim, width)
        init_dcgan_weights(network, seeded_generator(derive_seed(seed, "theta")))
        networks.append(network)
    stacked, _ = stack_module_state(networks)
    params = {
        name: value.detach().to(device).requires_grad_(True) for name, value in stacked.items()
    }
    z0 = standard_normal([derive_seed(seed, "z") for seed in seeds], latent_dim).to(device)
    return working_copy(networks[0], "per_image", device), params, z0


def fit_untrained(
    seeds: Sequence[int],
    architecture: tuple[int, int],
    operator: Operator,
    y: torch.Tensor,
    settings: Mapping[str, Any],
    *,
    window: int = 1,
    penalty: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    **options: Any,
) -> tuple[StageResult, dict[str, torch.Tensor]]:
    """The untrained baseline's recipe from ``dip_start``: ``settings["steps"]`` RMSprop
    steps (``lr``, ``momentum``) on theta alone, z fixed, plus ``penalty`` (see
    ``optimise_joint``), keeping the best of the last ``window`` iterates.

    architecture: (latent_dim, width) of the generator; y (N, m) on the device.
    ``options``: ``optimise_joint``'s precision, progress and desc. Returns the stage's
    result and the final per-image parameters, name -> (N, *shape).
    """
    net, params, z0 = dip_start(seeds, *architecture, y.device)
    recipe = {"theta_lr": settings["lr"], "momentum": settings["momentum"], "window": window}
    result = optimise_joint(
        net, params, operator, y, z0, steps=settings["steps"], z_lr=None, optimiser="rmsprop",
        penalty=penalty, **recipe, **options,
    )  # fmt: skip
    return result, params


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


def measurement_gain(operator: Operator, probes: int = GAIN_PROBES) -> float:
    """gain(A) = ||A||_F^2 / (2 n): E[0.5 ||A e||^2] / E[||e||^2] for isotropic errors e.

    Hutchinson's estimate with ``probes`` Rademacher images v (E ||A v||^2 = ||A||_F^2),
    drawn on the CPU from a fixed seed: a function of the operator alone, the same in
    every job and on every device. ~m / 2 for N(0, 1) compressed sensing.
    """
    signs = torch.randint(0, 2, (probes, operator.n), generator=seeded_generator(_GAIN_SEED))
    v = (2.0 * signs - 1.0).reshape(probes, 3, 64, 64).to(operator.device)
    with torch.no_grad():
        frobenius = operator.A(v).double().square().sum(dim=1).mean()
    return float(frobenius) / (2 * operator.n)


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
                "the operator's gain ||A||_F^2 / 2n). CS-DIP's code (utils.py, lambdas_lr) "
                "uses 100 for x-rays, 1000 for retinal images, 0 for MNIST. 0: the "
                "untrained baseline."
            ),
            "type": "number",
            "minimum": 0,
            "default": 100.0,
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
        penalty = None
        if settings["weight"] > 0:
            scale = settings["weight"] * measurement_gain(task.operator)
            penalty = prior_penalty(stats, scale, y.device)
        result, _ = fit_untrained(
            task.seeds,
            (stats.latent_dim, stats.width),
            task.operator,
            y,
            settings,
            window=settings["window"],
            penalty=penalty,
            desc="learned reg",
            **task.options,
        )
        return result
