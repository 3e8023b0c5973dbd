"""The untrained network (Deep Image Prior style): random theta and z, theta fitted to y.

Also the pieces that CS-DIP's learned regularisation (``learned_reg``, which starts from
the same draw) shares with it: the per-image start (``dip_start``), the fit
(``fit_untrained``), the operator's gain (``measurement_gain``) and CS-DIP's
total-variation term (``total_variation``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lowshot.methods.base import RecoveryMethod, RecoveryTask, register
from lowshot.methods.engine import (
    StageResult,
    optimise_joint,
    per_image_forward,
    standard_normal,
    working_copy,
)
from lowshot.models import INITS, Generator, initial_value
from lowshot.problems import Operator
from lowshot.seeds import derive_seed, seeded_generator

# Rademacher probes of the Hutchinson estimate of ||A||_F^2 (``measurement_gain``): its
# relative error is about sqrt(2 / (m * probes)), under 3 % for m >= 123 (cs-0.01).
GAIN_PROBES = 32
_GAIN_SEED = derive_seed(0, "learned_reg", "gain")


def measurement_gain(operator: Operator, probes: int = GAIN_PROBES) -> float:
    """gain(A) = ||A||_F^2 / (2 n): E[0.5 ||A e||^2] / E[||e||^2] for isotropic errors e.

    Hutchinson's estimate with ``probes`` Rademacher images v (E ||A v||^2 = ||A||_F^2),
    drawn on the CPU from a fixed seed: a function of the operator alone, the same in
    every job and on every device. ~m / 2 for N(0, 1) compressed sensing.

    It converts a weight given in CS-DIP's units into ours: CS-DIP minimises
    ||A' x - y'||^2 + lambda * R with A' entries of variance 1/m, i.e. E||A' e||^2 =
    ||e||^2, while our loss is 0.5 ||A x - y||^2 ~ gain(A) ||e||^2, so our objective
    0.5 ||A x - y||^2 + lambda * gain(A) * R is CS-DIP's times gain(A), whatever A.
    """
    signs = torch.randint(0, 2, (probes, operator.n), generator=seeded_generator(_GAIN_SEED))
    v = (2.0 * signs - 1.0).reshape(probes, 3, 64, 64).to(operator.device)
    with torch.no_grad():
        frobenius = operator.A(v).double().square().sum(dim=1).mean()
    return float(frobenius) / (2 * operator.n)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per image, CS-DIP's ``tv_loss`` (cs_dip.py): the sum of
    the absolute differences of horizontally and of vertically adjacent pixels over every
    channel. x (N, C, H, W) -> (N,)."""
    horizontal = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).sum(dim=1)
    vertical = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(dim=1)
    return horizontal + vertical


def initial_parameters(
    template: nn.Module, seeds: Sequence[int], init: str, device: torch.device | str
) -> dict[str, torch.Tensor]:
    """Per image i a theta drawn by ``init`` (``lowshot.models.INITS``) from the sub-stream
    "theta" of seeds[i], stacked: name -> (N, *shape) float32 leaves on ``device``, in the
    order of ``template.named_parameters()``.

    Written row by row into tensors allocated once on ``device``: the host holds one
    image's draw at a time (a few MB for the paper's DCGAN), never N networks (about
    15 MB each: 7.6 GB at 500 images) nor a second copy of the stack. Row i equals
    ``lowshot.models.init_weights`` applied to a copy of ``template`` with the same
    generator: the same draws in the same order.
    """
    if not seeds:
        raise ValueError("initial_parameters needs at least one seed")
    entries = [
        (f"{prefix}.{name}" if prefix else name, module, name)
        for prefix, module in template.named_modules()
        for name, _ in module.named_parameters(recurse=False)
    ]
    shapes = {name: param.shape for name, param in template.named_parameters()}
    if [entry[0] for entry in entries] != list(shapes):  # shared parameters: not ours
        raise ValueError("the template's parameters must each belong to one module")
    stacked = {
        name: torch.empty((len(seeds), *shape), dtype=torch.float32, device=device)
        for name, shape in shapes.items()
    }
    with torch.no_grad():
        for row, seed in enumerate(seeds):
            generator = seeded_generator(derive_seed(seed, "theta"))
            for name, module, attribute in entries:
                stacked[name][row].copy_(initial_value(module, attribute, init, generator))
    return {name: value.requires_grad_(True) for name, value in stacked.items()}


def dip_start(
    seeds: Sequence[int], template: nn.Module, device: torch.device | str, init: str
) -> tuple[nn.Module, dict[str, torch.Tensor], torch.Tensor]:
    """The untrained network's start for N = len(seeds) images: per image a theta drawn by
    ``init`` (``initial_parameters``, sub-stream "theta" of its seed) and a fixed z ~
    N(0, I) (sub-stream "z").

    template: the architecture (its values are not used). Returns the working copy (norm
    ``"per_image"``, frozen, on ``device``: the architecture and buffers), the stacked
    per-image parameters name -> (N, *shape) leaves on ``device``, and z0 (N, latent).
    """
    net = working_copy(template, "per_image", torch.device(device))
    params = initial_parameters(net, seeds, init, device)
    z0 = standard_normal([derive_seed(s, "z") for s in seeds], net.latent_dim).to(device)
    return net, params, z0


def fit_untrained(
    seeds: Sequence[int],
    template: nn.Module,
    operator: Operator,
    y: torch.Tensor,
    settings: Mapping[str, Any],
    *,
    window: int = 1,
    penalty: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    tv_weight: float = 0.0,
    **options: Any,
) -> tuple[StageResult, dict[str, torch.Tensor]]:
    """The untrained network's recipe from ``dip_start`` (``settings["init"]``):
    ``settings["steps"]`` RMSprop steps (``lr``, ``momentum``) on theta alone, z fixed,
    minimising 0.5 ||A G - y||^2 plus ``penalty`` (a function of the stacked parameters,
    see ``optimise_joint``) plus, when ``tv_weight`` > 0, CS-DIP's total-variation term
    ``tv_weight * gain(A) * TV(G)`` (``total_variation``, ``measurement_gain``: the
    weight in CS-DIP's units); per image the best of the last ``window`` iterates by
    measurement loss.

    template: the architecture; y (N, m) on the device. ``options``: ``optimise_joint``'s
    precision, cuda_graphs, progress and desc. Returns the stage's result and the final
    per-image parameters, name -> (N, *shape).

    The TV term renders G(z; theta) a second time per step (the engine's penalty sees
    the parameters, not the image): about twice the work of a step without it.
    """
    net, params, z0 = dip_start(seeds, template, y.device, settings["init"])
    if tv_weight > 0:
        forward = per_image_forward(net)
        scale = tv_weight * measurement_gain(operator)

        def smooth(params: dict[str, torch.Tensor]) -> torch.Tensor:
            return scale * total_variation(forward(params, z0).float())

        penalty = smooth if penalty is None else _sum_of(penalty, smooth)
    recipe = {"theta_lr": settings["lr"], "momentum": settings["momentum"], "window": window}
    result = optimise_joint(
        net, params, operator, y, z0, steps=settings["steps"], z_lr=None, optimiser="rmsprop",
        penalty=penalty, **recipe, **options,
    )  # fmt: skip
    return result, params


def _sum_of(
    *terms: Callable[[dict[str, torch.Tensor]], torch.Tensor],
) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """One penalty, the sum of ``terms`` (each params -> (N,))."""
    return lambda params: sum(term(params) for term in terms)  # type: ignore[return-value]


@register
class Untrained(RecoveryMethod):
    """Deep Image Prior in CS-DIP's loop (Van Veen et al. 2018, github
    davevanveen/compsensing_dip, cs_dip.py): per image a random theta (``init``,
    sub-stream "theta"; CS-DIP's code sets no initialisation of its own, so its networks
    took the defaults of the torch it pins, 0.4.1: ``init`` "pytorch-0.4") and a FIXED
    input z ~ N(0, I) (sub-stream "z"); ``steps`` RMSprop steps (``lr``, ``momentum``) on
    theta alone; the returned iterate is the one with the lowest measurement loss among
    the last ``window`` ones. Steps, momentum and window are CS-DIP's; ``lr`` and
    ``init`` are chosen on validation faces (README, "Scientific choices"). CS-DIP also
    adds a total-variation and a learned regularisation term to its loss: the first is
    ``tv_weight`` (off by default: the paper's untrained baseline has none), the second
    the method ``learned_reg``.
    Batch norm normalises each image by its own spatial statistics (what batch-size-1
    training mode computes).
    ``model``: None for the paper's DCGAN, or a template generator whose architecture is
    re-initialised per image (tests use a small one).
    """

    kind = "untrained"
    description = "Untrained network: random theta and z, optimised jointly."
    settings = {
        "steps": {
            "description": "Optimiser steps over theta (CS-DIP's code: 1,000).",
            "type": "integer",
            "minimum": 1,
            "default": 1000,
        },
        "lr": {
            "description": (
                "RMSprop learning rate (ours: chosen on validation faces by "
                "benchmarks/sweep.py, README 'Scientific choices'; CS-DIP's code: 1e-3)."
            ),
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 1.0e-4,
        },
        "momentum": {
            "description": "RMSprop momentum (CS-DIP's code: 0.9).",
            "type": "number",
            "minimum": 0,
            "exclusiveMaximum": 1,
            "default": 0.9,
        },
        "window": {
            "description": (
                "Return the iterate with the lowest measurement loss among the last this "
                "many (CS-DIP's code: 51); needs no access to the true image."
            ),
            "type": "integer",
            "minimum": 1,
            "default": 51,
        },
        "init": {
            "description": (
                "How each image's theta is drawn (lowshot.models.INITS): dcgan (N(0, "
                "0.02) weights), pytorch-0.4 (torch 0.4.1's defaults, which CS-DIP's code "
                "ran with: batch-norm scales U(0, 1)) or pytorch (today's torch defaults). "
                "Chosen on validation faces (README, 'Scientific choices')."
            ),
            "type": "string",
            "enum": list(INITS),
            "default": "pytorch-0.4",
        },
        "tv_weight": {
            "description": (
                "Weight of CS-DIP's total-variation term in CS-DIP's units (scaled by the "
                "operator's gain ||A||_F^2 / 2n, as learned_reg.weight). CS-DIP's code "
                "(utils.py, lambdas_tv): 1e-2 MNIST, 5e-2 x-rays, 2e-2 retinal images. 0 "
                "(off): the paper's untrained baseline has none."
            ),
            "type": "number",
            "minimum": 0,
            "default": 0.0,
        },
    }
    label = "Untrained"
    style = {"color": "0.55", "linestyle": ":", "marker": "v"}
    order = 10

    @classmethod
    def run(cls, task: RecoveryTask) -> StageResult:
        settings = task.settings
        template = task.model if task.model is not None else Generator(task.latent_dim)
        result, _ = fit_untrained(
            task.seeds,
            template,
            task.operator,
            task.y,
            settings,
            window=settings["window"],
            tv_weight=settings["tv_weight"],
            desc="untrained",
            **task.options,
        )
        return result
