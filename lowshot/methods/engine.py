"""The optimisation engine every recovery method shares: batched Adam on z alone (paper
eq. 2) and on z with a per-image theta (eq. 3), with divergence tracking.

Every method minimises the measurement loss 0.5 * ||A G(z; theta) - y||^2 per image.

Batching and independence of images
-----------------------------------
z-only steps run the shared generator on the batch of latents; the loss is the SUM of the
per-image losses, so each z receives exactly its own gradient, and Adam is elementwise,
so each image's optimiser state evolves as if it were alone. Joint steps keep one copy of
theta per image, stacked along a leading image axis, and evaluate all copies in one call
with ``torch.func.functional_call`` under ``torch.func.vmap`` (grouped convolutions
underneath); Adam on the stacked tensors is again independent per image.

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

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from lowshot.devices import autocast
from lowshot.problems import Operator
from lowshot.seeds import seeded_generator

_POSTFIX_EVERY = 50


@dataclass
class RecoveryResult:
    """Recovered images and per-image diagnostics of one job (N images).

    images: (N, 3, 64, 64) float32 on the CPU, in [-1, 1] (NaN for an image that never
        had a finite iterate).
    measurement_loss: (N,) float64, 0.5 * ||A x_hat - y||^2 of the returned image.
    iterations: (N,) int64, Adam steps that moved the returned image's path (all stages;
        for csgm/iagan those of the winning restart; fewer when it diverged).
    restarts: (N,) int64, random initialisations tried (1 except for csgm and iagan).
    diverged: (N,) bool, a non-finite loss or output occurred (see the module docstring).
    """

    images: torch.Tensor
    measurement_loss: np.ndarray
    iterations: np.ndarray
    restarts: np.ndarray
    diverged: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @classmethod
    def concat(cls, results: Sequence[RecoveryResult]) -> RecoveryResult:
        """Join the results of consecutive image chunks."""
        return cls(
            images=torch.cat([r.images for r in results]),
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


def per_image_forward(
    template: nn.Module,
) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]:
    """f(params, z) -> images, image i made by ``template`` with parameters params[.][i].

    params: name -> (N, *shape) stacked parameters; z (N, latent) -> (N, 3, 64, 64).
    ``template`` supplies the architecture, the norm mode and the (shared) buffers.
    """
    buffers = dict(template.named_buffers())

    def one(params: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        return functional_call(template, (params, buffers), (z.unsqueeze(0),)).squeeze(0)

    return vmap(one)


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
    progress: bool = True,
    desc: str = "z",
) -> StageResult:
    """Eq. (2): Adam on z with theta fixed, all images as one batch.

    generator: on y's device, in the norm mode wanted ("stored" or "per_image"); its
    parameters are read, never changed. y (N, m); z0 (N, latent) initial codes.
    ``previous`` chains stages: its diverged images stay frozen, its records carry over.
    """
    frozen = {
        name: tensor.detach() for name, tensor in generator.state_dict(keep_vars=True).items()
    }
    z = z0.detach().clone().to(y.device).requires_grad_(True)

    def render() -> torch.Tensor:
        return functional_call(generator, frozen, (z,))

    return _adam(render, [z], z, operator, y, steps, lr, previous, precision, progress, desc)


def optimise_joint(
    template: nn.Module,
    params: dict[str, torch.Tensor],
    operator: Operator,
    y: torch.Tensor,
    z0: torch.Tensor,
    *,
    steps: int,
    lr: float,
    previous: StageResult | None = None,
    precision: str = "fp32",
    progress: bool = True,
    desc: str = "joint",
) -> StageResult:
    """Eq. (3): Adam on z and a per-image theta jointly, all images in one vmapped call.

    template: architecture, norm mode and buffers (on y's device); params: name ->
    (N, *shape) per-image parameter leaves (``stack_parameters``), updated in place.
    y (N, m); z0 (N, latent).
    """
    z = z0.detach().clone().to(y.device).requires_grad_(True)
    forward = per_image_forward(template)

    def render() -> torch.Tensor:
        return forward(params, z)

    leaves = [z, *params.values()]
    return _adam(render, leaves, z, operator, y, steps, lr, previous, precision, progress, desc)


def _adam(
    render: Callable[[], torch.Tensor],
    leaves: list[torch.Tensor],
    z: torch.Tensor,
    operator: Operator,
    y: torch.Tensor,
    steps: int,
    lr: float,
    previous: StageResult | None,
    precision: str,
    progress: bool,
    desc: str,
) -> StageResult:
    """``steps`` Adam steps on ``leaves`` minimising the summed per-image losses.

    Evaluates steps + 1 iterates (the last one is only recorded). No host-device
    synchronisation per step, except for the progress bar's occasional loss.
    """
    n = y.shape[0]
    device = y.device
    if previous is None:
        record = StageResult(
            images=torch.full((n, 3, 64, 64), math.nan, device=device),
            z=z.detach().clone(),
            loss=torch.full((n,), math.nan, device=device),
            iterations=torch.zeros(n, dtype=torch.int64, device=device),
            diverged=torch.zeros(n, dtype=torch.bool, device=device),
        )
    else:
        record = copy.copy(previous)
    optimiser = torch.optim.Adam(leaves, lr=lr)
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    for step in range(steps + 1):
        with autocast(device, precision):
            x = render()
        # The loss is always fp32: bf16 would round away the small residuals of late steps.
        x = x.float()
        loss = measurement_loss(operator, x, y)
        finite = torch.isfinite(loss) & torch.isfinite(x).flatten(1).all(dim=1)
        diverged = record.diverged | ~finite
        alive = ~diverged
        record = StageResult(
            images=torch.where(alive[:, None, None, None], x.detach(), record.images),
            z=torch.where(alive[:, None], z.detach(), record.z),
            loss=torch.where(alive, loss.detach(), record.loss),
            iterations=record.iterations,
            diverged=diverged,
        )
        if step == steps:
            break
        optimiser.zero_grad(set_to_none=True)
        # Diverged images contribute nothing; their own leaves may go NaN, which cannot
        # reach other images (separate computation paths, elementwise Adam).
        torch.where(alive, loss, torch.zeros_like(loss)).sum().backward()
        optimiser.step()
        record.iterations = record.iterations + alive
        bar.update()
        if progress and (step % _POSTFIX_EVERY == 0 or step == steps - 1):
            bar.set_postfix(loss=f"{record.loss.nanmean().item():.4g}")
    bar.close()
    return record


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
