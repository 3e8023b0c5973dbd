"""The optimisation engine every recovery method shares: batched Adam on z alone (paper
eq. 2) and on z with a per-image theta (eq. 3), with divergence tracking.

Every method minimises the measurement loss 0.5 * ||A G(z; theta) - y||^2 per image (a
joint stage may add a penalty on theta, ``optimise_joint``'s ``penalty``; what it records
and selects by stays the measurement loss).

Batching and independence of images
-----------------------------------
z-only steps run the shared generator on the batch of latents; the loss is the SUM of the
per-image losses, so each z receives exactly its own gradient, and Adam is elementwise,
so each image's optimiser state evolves as if it were alone. Joint steps keep one copy of
theta per image, stacked along a leading image axis, and evaluate all copies in one call:
for the DCGAN generator as batched matrix products (``lowshot.methods.batched_generator``:
one bmm and one col2im per transposed convolution, one batch norm per layer), for any
other network with ``torch.func.functional_call`` under ``torch.func.vmap``; Adam
(``fused``, one kernel per stacked tensor, where torch offers it) on the stacked tensors
is again independent per image.

Divergence
----------
An image diverges when its loss or its output is non-finite at some iterate (an absurd
learning rate, a NaN measurement). From then on it is frozen: it is flagged ``diverged``
and keeps its last iterate whose output and loss were both finite (over all stages), with
that iterate's loss; if it never had one (e.g. a NaN in its y), its image and loss are
NaN. It is never silently averaged: callers must look at ``RecoveryResult.diverged``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from lowshot import cuda_graphs as graph_steps
from lowshot.devices import autocast, set_precision
from lowshot.methods.batched_generator import per_image_generator
from lowshot.problems import Operator
from lowshot.seeds import seeded_generator

_POSTFIX_EVERY = 50


@dataclass
class RecoveryResult:
    """Recovered images and per-image diagnostics of one job (N images).

    images: (N, 3, 64, 64) float32 on the CPU, in [-1, 1] (NaN for an image that never
        had a finite iterate).
    z: (N, latent) float32 on the CPU, the returned image's latent code (the initial one
        for an image that never had a finite iterate), so that a later stage can start
        from it (IAGAN from CSGM) and users can inspect it.
    measurement_loss: (N,) float64, 0.5 * ||A x_hat - y||^2 of the returned image.
    iterations: (N,) int64, optimiser steps that led to the returned iterate (all stages,
        those of the winning restart; for a diverged image those of its last finite one).
    restarts: (N,) int64, random initialisations tried.
    diverged: (N,) bool, a non-finite loss or output occurred (see the module docstring).
    """

    images: torch.Tensor
    z: torch.Tensor
    measurement_loss: np.ndarray
    iterations: np.ndarray
    restarts: np.ndarray
    diverged: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def select(self, index: slice) -> RecoveryResult:
        """The results of the images ``index`` (a slice)."""
        return RecoveryResult(
            self.images[index],
            self.z[index],
            self.measurement_loss[index],
            self.iterations[index],
            self.restarts[index],
            self.diverged[index],
        )

    @classmethod
    def concat(cls, results: Sequence[RecoveryResult]) -> RecoveryResult:
        """Join the results of consecutive image chunks."""
        return cls(
            images=torch.cat([r.images for r in results]),
            z=torch.cat([r.z for r in results]),
            measurement_loss=np.concatenate([r.measurement_loss for r in results]),
            iterations=np.concatenate([r.iterations for r in results]),
            restarts=np.concatenate([r.restarts for r in results]),
            diverged=np.concatenate([r.diverged for r in results]),
        )


@dataclass
class StageResult:
    """State after an optimisation stage, per image (tensors on the device).

    images (N, 3, 64, 64), z (N, latent), loss (N,): the last iterate whose output and
    loss were finite (NaN images/loss when there was none; z then the initial z).
    iterations (N,) int64: Adam steps applied so far; diverged (N,) bool.
    """

    images: torch.Tensor
    z: torch.Tensor
    loss: torch.Tensor
    iterations: torch.Tensor
    diverged: torch.Tensor

    @classmethod
    def from_result(cls, result: RecoveryResult, device: torch.device) -> StageResult:
        """A finished recovery as the state a later stage continues from (on ``device``)."""
        return cls(
            images=result.images.to(device),
            z=result.z.to(device),
            loss=torch.as_tensor(result.measurement_loss, dtype=torch.float32, device=device),
            iterations=torch.as_tensor(result.iterations, dtype=torch.int64, device=device),
            diverged=torch.as_tensor(result.diverged, dtype=torch.bool, device=device),
        )

    def select(self, index: torch.Tensor) -> StageResult:
        return StageResult(
            self.images[index],
            self.z[index],
            self.loss[index],
            self.iterations[index],
            self.diverged[index],
        )


def measurement_loss(operator: Operator, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image 0.5 * ||A x - y||^2: x (N, 3, 64, 64), y (N, m) -> (N,)."""
    return 0.5 * (operator.A(x) - y).square().sum(dim=1)


def stack_parameters(generator: nn.Module, n: int) -> dict[str, torch.Tensor]:
    """``n`` per-image copies of ``generator``'s parameters: name -> (n, *shape) leaves."""
    return {
        name: param.detach().unsqueeze(0).repeat(n, *([1] * param.dim())).requires_grad_(True)
        for name, param in generator.named_parameters()
    }


# How ``per_image_forward`` evaluates the N networks: "gemm" the batched matrix products
# of ``lowshot.methods.batched_generator`` (the DCGAN generator in "stored" or
# "per_image" norm mode only), "vmap" functional_call under vmap (any module), "auto"
# gemm where it applies, else vmap.
JOINT_PATHS = ("auto", "gemm", "vmap")


def per_image_forward(
    template: nn.Module, path: str = "auto"
) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]:
    """f(params, z) -> images, image i made by ``template`` with parameters params[.][i].

    params: name -> (N, *shape) stacked parameters; z (N, latent) -> (N, 3, 64, 64).
    ``template`` supplies the architecture, the norm mode and the (shared) buffers.
    ``path``: one of ``JOINT_PATHS`` ("gemm" for a template it does not cover is an
    error); both paths compute the same function, up to float rounding.
    """
    return _per_image_forward(template, path)


def _per_image_forward(
    template: nn.Module, path: str, reuse_grad_memory: bool = False
) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]:
    """``per_image_forward``; ``reuse_grad_memory``: see ``per_image_generator`` (only for
    a loop that sets the gradients to None before every backward)."""
    if path not in JOINT_PATHS:
        raise ValueError(f"path must be one of {JOINT_PATHS}, not {path!r}")
    if path != "vmap":
        batched = per_image_generator(template, reuse_grad_memory=reuse_grad_memory)
        if batched is not None:
            return batched
        if path == "gemm":
            raise ValueError(
                f"the gemm path covers the DCGAN Generator in norm mode 'stored' or "
                f"'per_image', not this {type(template).__name__}"
            )
    buffers = dict(template.named_buffers())

    def one(params: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        return functional_call(template, (params, buffers), (z.unsqueeze(0),)).squeeze(0)

    return vmap(one)


# The baselines' recipes, from their authors' code (each method has its own; the low-shot
# method's is in methods/lowshot.py, chosen on validation faces: README, "Scientific
# choices"):
# - CSGM's latent search: its CelebA script (github AshishBora/csgm,
#   celebA_reconstruction.sh: Adam, lr 0.1, 500 iterations, 2 random restarts);
# - IAGAN's image-adaptive joint stage: its code (github shadyabh/IAGAN, main.py: 300
#   iterations, Adam with lr 1e-3 on theta and 1e-4 on z).
LATENT_SEARCH = {"steps": 500, "lr": 0.1, "restarts": 2}
JOINT_STAGE = {"steps": 300, "theta_lr": 1.0e-3, "z_lr": 1.0e-4}


def latent_search_settings(prefix: str = "") -> dict[str, dict[str, Any]]:
    """Schema properties of a latent search (``LATENT_SEARCH``): ``{prefix}steps``,
    ``{prefix}lr`` and ``restarts``."""
    return {
        f"{prefix}steps": {
            "description": "Adam steps over z per restart (CSGM's CelebA script: 500).",
            "type": "integer",
            "minimum": 0,
            "default": LATENT_SEARCH["steps"],
        },
        f"{prefix}lr": {
            "description": "Learning rate of the z steps (CSGM's CelebA script: 0.1).",
            "type": "number",
            "exclusiveMinimum": 0,
            "default": LATENT_SEARCH["lr"],
        },
        "restarts": {
            "description": (
                "Random starts of z per image; the lowest final measurement loss wins "
                "(CSGM's CelebA script: 2)."
            ),
            "type": "integer",
            "minimum": 1,
            "default": LATENT_SEARCH["restarts"],
        },
    }


def joint_stage_settings(prefix: str = "joint_") -> dict[str, dict[str, Any]]:
    """Schema properties of an image-adaptive stage (``JOINT_STAGE``): ``{prefix}steps``,
    ``{prefix}theta_lr`` and ``{prefix}z_lr``."""
    return {
        f"{prefix}steps": {
            "description": "Adam steps over z and theta jointly (IAGAN's code: 300).",
            "type": "integer",
            "minimum": 0,
            "default": JOINT_STAGE["steps"],
        },
        f"{prefix}theta_lr": {
            "description": "Learning rate of theta in the joint steps (IAGAN's code: 1e-3).",
            "type": "number",
            "minimum": 0,
            "default": JOINT_STAGE["theta_lr"],
        },
        f"{prefix}z_lr": {
            "description": "Learning rate of z in the joint steps (IAGAN's code: 1e-4).",
            "type": "number",
            "minimum": 0,
            "default": JOINT_STAGE["z_lr"],
        },
    }


def optimise_latent(
    generator: nn.Module,
    operator: Operator,
    y: torch.Tensor,
    z0: torch.Tensor,
    *,
    steps: int,
    lr: float,
    previous: StageResult | None = None,
    precision: str = "fp32",
    cuda_graphs: bool = False,
    progress: bool = True,
    desc: str = "z",
) -> StageResult:
    """Eq. (2): Adam on z with theta fixed, all images as one batch.

    generator: on y's device, in the norm mode wanted ("stored" or "per_image"); its
    parameters are read, never changed. y (N, m); z0 (N, latent) initial codes.
    ``previous`` chains stages: its diverged images stay frozen, its records carry over.
    ``cuda_graphs``: on CUDA, replay each step as one captured CUDA graph (``Stage``).
    """
    frozen = {
        name: tensor.detach() for name, tensor in generator.state_dict(keep_vars=True).items()
    }
    z = z0.detach().clone().to(y.device).requires_grad_(True)

    def render() -> torch.Tensor:
        return functional_call(generator, frozen, (z,))

    stage = Stage(operator, y, steps, previous, precision, progress, desc, cuda_graphs=cuda_graphs)
    return _optimise(render, [{"params": [z], "lr": lr}], z, stage)


def optimise_joint(
    template: nn.Module,
    params: dict[str, torch.Tensor],
    operator: Operator,
    y: torch.Tensor,
    z0: torch.Tensor,
    *,
    steps: int,
    theta_lr: float,
    z_lr: float | None,
    optimiser: str = "adam",
    momentum: float = 0.0,
    window: int = 1,
    penalty: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    previous: StageResult | None = None,
    precision: str = "fp32",
    cuda_graphs: bool = False,
    progress: bool = True,
    desc: str = "joint",
    path: str = "auto",
) -> StageResult:
    """Eq. (3): z and a per-image theta jointly, all images in one batched call.

    template: architecture, norm mode and buffers (on y's device); params: name ->
    (N, *shape) per-image parameter leaves (``stack_parameters``), updated in place.
    y (N, m); z0 (N, latent). Two parameter groups: theta at ``theta_lr``, z at ``z_lr``
    (``z_lr=None``: z stays fixed, as in Deep Image Prior). ``optimiser``: "adam" or
    "rmsprop" (with ``momentum``). ``window``: return, per image, the iterate with the
    lowest measurement loss among the last ``window`` ones (1: the last one).
    ``penalty``: None, or a function of ``params`` (the stacked per-image parameters)
    returning one finite float32 value per image, (N,), added to image i's minimised
    objective (a regulariser on theta, e.g. a learned prior). The recorded ``loss`` and
    the window's choice stay the measurement loss, which needs no true image; a
    non-finite penalty counts as a divergence of its image. ``path``: how the N networks
    are evaluated (``per_image_forward``; "auto" unless comparing the paths).
    ``cuda_graphs``: as in ``optimise_latent``.
    """
    z = z0.detach().clone().to(y.device).requires_grad_(z_lr is not None)
    # _optimise sets the gradients to None before every backward.
    forward = _per_image_forward(template, path, reuse_grad_memory=True)

    def render() -> torch.Tensor:
        return forward(params, z)

    groups = [{"params": list(params.values()), "lr": theta_lr}]
    if z_lr is not None:
        groups.append({"params": [z], "lr": z_lr})
    stage = Stage(operator, y, steps, previous, precision, progress, desc, window, cuda_graphs)
    regulariser = None if penalty is None else lambda: penalty(params)
    return _optimise(
        render, groups, z, stage, optimiser=optimiser, momentum=momentum, penalty=regulariser
    )


@dataclass(frozen=True)
class Stage:
    """What an optimisation stage minimises and how it runs: 0.5 ||A x - y||^2 per image
    over ``steps`` steps, chained to ``previous`` (or None), keeping per image the best
    of the last ``window`` iterates.

    ``cuda_graphs`` (CUDA only; ignored elsewhere): one step (forward, loss, record,
    backward, optimiser update) is replayed as a CUDA graph after the first
    ``GRAPH_WARMUP`` (``lowshot.cuda_graphs.replayed``): one launch per step instead of
    hundreds, the same arithmetic.
    """

    operator: Operator
    y: torch.Tensor
    steps: int
    previous: StageResult | None
    precision: str
    progress: bool
    desc: str
    window: int = 1
    cuda_graphs: bool = False


def make_optimiser(
    groups: list[dict[str, Any]],
    optimiser: str = "adam",
    momentum: float = 0.0,
    capturable: bool = False,
) -> torch.optim.Optimizer:
    """Adam (default betas) or RMSprop with ``momentum`` over the parameter ``groups``
    (each a dict with its ``params`` and its ``lr``).

    Adam is torch's fused implementation where it exists for the parameters (torch >=
    2.4 on CPU, CUDA): the same update, one kernel per tensor instead of about six passes
    over memory (4x faster on the stacked theta of the joint stage; equal to the default
    implementation up to float rounding). ``capturable``: its state lives on the device
    and ``step()`` may be captured in a CUDA graph."""
    if optimiser == "adam":
        try:  # Adam fills in each group's defaults: give it copies
            return torch.optim.Adam(
                [dict(group) for group in groups], fused=True, capturable=capturable
            )
        except (RuntimeError, TypeError, ValueError):  # no fused kernel here: the default
            return torch.optim.Adam(groups, capturable=capturable)
    if optimiser == "rmsprop":
        return torch.optim.RMSprop(groups, momentum=momentum, capturable=capturable)
    raise ValueError(f"optimiser must be adam or rmsprop, not {optimiser!r}")


def _optimise(
    render: Callable[[], torch.Tensor],
    groups: list[dict[str, Any]],
    z: torch.Tensor,
    stage: Stage,
    optimiser: str = "adam",
    momentum: float = 0.0,
    penalty: Callable[[], torch.Tensor] | None = None,
) -> StageResult:
    """``stage.steps`` optimiser steps on the ``groups`` minimising the summed losses
    (each image's measurement loss plus its ``penalty()`` term, (N,), when given).

    Evaluates steps + 1 iterates (the last one is only recorded). Per image the record is
    the last finite iterate before the window, then the lowest-loss finite iterate of the
    window; ``iterations`` counts the steps that led to the recorded iterate. A stage of
    0 steps chained to a previous one returns it unchanged. A step is device work only
    (the step count is a device tensor, the record is updated in place), so that it can
    be captured as a CUDA graph; the host waits on the device only for the progress
    bar's occasional loss.
    """
    y, steps = stage.y, stage.steps
    n = y.shape[0]
    device = y.device
    if stage.previous is not None and steps == 0:
        return stage.previous
    if stage.previous is None:
        record = StageResult(
            images=torch.full((n, 3, 64, 64), math.nan, device=device),
            z=z.detach().clone(),
            loss=torch.full((n,), math.nan, device=device),
            iterations=torch.zeros(n, dtype=torch.int64, device=device),
            diverged=torch.zeros(n, dtype=torch.bool, device=device),
        )
    else:  # updated in place below: never write into the previous stage's result
        previous = stage.previous
        record = StageResult(
            images=previous.images.clone(),
            z=previous.z.clone(),
            loss=previous.loss.clone(),
            iterations=previous.iterations.clone(),
            diverged=previous.diverged.clone(),
        )
    base = record.iterations.clone()
    window_start = max(0, steps + 1 - max(1, stage.window))
    step = torch.zeros((), dtype=torch.int64, device=device)
    graphs = graph_steps.graphs_on(stage.cuda_graphs, device)
    set_precision(stage.precision, device)  # fp32 means IEEE fp32, tf32 opts in
    optimise = make_optimiser(groups, optimiser, momentum, capturable=graphs)

    def evaluate() -> torch.Tensor:
        """Record the current iterate; the objective of the images still alive, summed."""
        # Without the autocast cache: a captured graph must not keep casts across replays.
        with autocast(device, stage.precision, cache=not graphs):
            x = render()
        # The loss is always fp32: bf16 would round away the small residuals of late steps.
        x = x.float()
        loss = measurement_loss(stage.operator, x, y)
        # An image is finite iff its smallest and largest pixels are (both propagate NaN):
        # one pass over the images instead of isfinite's four and a reduction.
        low, high = torch.aminmax(x.detach().flatten(1), dim=1)
        finite = torch.isfinite(loss) & torch.isfinite(low) & torch.isfinite(high)
        objective = loss
        if penalty is not None:
            extra = penalty()
            finite = finite & torch.isfinite(extra)
            objective = loss + extra
        record.diverged.logical_or_(~finite)
        alive = ~record.diverged
        keep = alive & ((step <= window_start) | (loss.detach() < record.loss))
        record.images.copy_(torch.where(keep[:, None, None, None], x.detach(), record.images))
        record.z.copy_(torch.where(keep[:, None], z.detach(), record.z))
        record.loss.copy_(torch.where(keep, loss.detach(), record.loss))
        record.iterations.copy_(torch.where(keep, base + step, record.iterations))
        # Diverged images contribute nothing; their own leaves may go NaN, which cannot
        # reach other images (separate computation paths, elementwise optimisers).
        return torch.where(alive, objective, torch.zeros_like(objective)).sum()

    def take_step() -> None:
        total = evaluate()
        optimise.zero_grad(set_to_none=True)
        total.backward()
        optimise.step()
        step.add_(1)

    run_step = graph_steps.stepper(take_step, device, graphs)
    bar = tqdm(total=steps, desc=stage.desc, disable=not stage.progress, leave=False)
    for done in range(1, steps + 1):
        run_step()
        bar.update()
        if stage.progress and (done % _POSTFIX_EVERY == 1 or done == steps):
            bar.set_postfix(loss=f"{record.loss.nanmean().item():.4g}")
    with torch.no_grad():
        evaluate()
    bar.close()
    return record


def search_latent(
    generator: nn.Module,
    operator: Operator,
    y: torch.Tensor,
    starts: Sequence[torch.Tensor],
    *,
    steps: int,
    lr: float,
    precision: str = "fp32",
    cuda_graphs: bool = False,
    progress: bool = True,
    desc: str = "z search",
) -> StageResult:
    """A latent search with restarts: every start z0 (N, latent) of ``starts`` is optimised
    (``optimise_latent``; all restarts of all images in one batch, row r * N + i), and per
    image the restart with the lowest final measurement loss wins (``best_restart``)."""
    n, restarts = y.shape[0], len(starts)
    stage = optimise_latent(
        generator,
        operator,
        y.repeat(restarts, 1),
        torch.cat(list(starts)).to(y.device),
        steps=steps,
        lr=lr,
        precision=precision,
        cuda_graphs=cuda_graphs,
        progress=progress,
        desc=f"{desc} ({restarts} restarts)",
    )
    winners = best_restart(stage.loss, stage.diverged, restarts)
    return stage.select(winners * n + torch.arange(n, device=y.device))


def best_restart(loss: torch.Tensor, diverged: torch.Tensor, restarts: int) -> torch.Tensor:
    """Winning restart per image: loss, diverged (restarts * N,) ordered r * N + i -> (N,).

    The lowest loss among the restarts that did not diverge; among all restarts (by their
    last finite loss) when every one diverged. NaN losses never win; ties: the first.
    """
    loss = loss.reshape(restarts, -1).nan_to_num(nan=math.inf)
    diverged = diverged.reshape(restarts, -1)
    key = torch.where(diverged, math.inf, loss)
    key = torch.where(diverged.all(dim=0, keepdim=True), loss, key)
    return key.argmin(dim=0)


def standard_normal(
    seeds: Sequence[int], k: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """z_i ~ N(0, I_k), row i from a CPU generator seeded seeds[i] -> (N, k) on the CPU."""
    rows = [torch.randn(k, generator=seeded_generator(s), dtype=dtype) for s in seeds]
    return torch.stack(rows) if rows else torch.empty(0, k, dtype=dtype)


def working_copy(generator: nn.Module, norm: str, device: torch.device) -> nn.Module:
    """A frozen fp32 copy of ``generator`` on ``device`` in batch-norm mode ``norm``."""
    net = copy.deepcopy(generator).to(device=device, dtype=torch.float32)
    net.norm = norm
    net.eval()
    net.requires_grad_(False)
    return net
