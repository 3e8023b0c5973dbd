"""Recovery of images from measurements y = A x + eta: lowshot, untrained, csgm, iagan.

One interface, ``recover``, solves all images of a job at once and returns the images
(N, 3, 64, 64) in [-1, 1] with per-image diagnostics. Every method minimises the
measurement loss 0.5 * ||A G(z; theta) - y||^2 (paper eqs. 2-3) with Adam:

- ``lowshot``: z from the Gaussian fitted to the low-shot codes, z alone with theta fixed
  (eq. 2; ``z_steps``, ``z_lr``), then z and theta jointly from there (eq. 3;
  ``joint_steps``, ``joint_lr``).
- ``untrained``: a DCGAN-initialised theta and z ~ N(0, I) per image, z and theta jointly
  (``steps``, ``lr``). The paper optimises the untrained network for longer and with a
  higher learning rate than the low-shot joint step; the defaults are 3,000 steps at lr
  1e-3 (low-shot joint step: 350 at 1e-4).
- ``csgm``: the WGAN-GP generator, z alone from z ~ N(0, I), ``restarts`` random starts of
  ``steps`` steps each; per image the restart with the lowest final measurement loss wins
  (a restart that diverged only wins when every restart of that image diverged).
- ``iagan``: csgm (the ``csgm`` sub-dict of its settings), then z and theta jointly from
  the winning z (``joint_steps``, ``joint_lr``).

Batching and independence of images
-----------------------------------
z-only steps run the shared generator on the batch of latents; the loss is the SUM of the
per-image losses, so each z receives exactly its own gradient, and Adam is elementwise,
so each image's optimiser state evolves as if it were alone. Joint steps keep one copy of
theta per image, stacked along a leading image axis, and evaluate all copies in one call
with ``torch.func.functional_call`` under ``torch.func.vmap`` (grouped convolutions
underneath); Adam on the stacked tensors is again independent per image.

Batch norm never couples images. The pre-trained generators (lowshot, csgm, iagan) run
with ``norm = "stored"``: the running statistics stored at training time, never updated.
The untrained network runs with ``norm = "per_image"``: each image normalised by its own
spatial statistics, what batch-size-1 training mode computes (its stored statistics mean
nothing). Hence an image's result does not depend on which other images share its batch,
nor on ``max_batch``, up to floating-point differences of batched kernels.

Seeds
-----
The caller passes one seed per image, derived from (config seed, method, problem, image
id). Sub-streams: ``derive_seed(seed, "z")`` for the initial z (lowshot, untrained),
``derive_seed(seed, "theta")`` for the untrained network's weights,
``derive_seed(seed, "restart", r)`` for csgm's restart r (also inside iagan). Every draw
is made on the CPU and moved to the device, so it is the same on every device.

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
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from lowshot.config import method_settings, schema_defaults
from lowshot.devices import autocast
from lowshot.models import init_dcgan_weights, make_generator
from lowshot.operators import Operator
from lowshot.seeds import derive_seed

log = logging.getLogger(__name__)

METHOD_KINDS = ("lowshot", "untrained", "csgm", "iagan")

# One source of defaults: the config schema's ``recover`` section.
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    kind: method_settings({"recover": schema_defaults("recover")}, kind) for kind in METHOD_KINDS
}

# Steps between refreshes of the progress bar's loss (each one synchronises the device).
_POSTFIX_EVERY = 50

Prior = tuple[Any, Any]


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


def resolve_settings(kind: str, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """``settings`` over ``DEFAULT_SETTINGS[kind]``; unknown keys are an error."""
    if kind not in METHOD_KINDS:
        raise ValueError(f"unknown method {kind!r}; expected one of {METHOD_KINDS}")
    defaults = DEFAULT_SETTINGS[kind]
    given = dict(settings or {})
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(
            f"{kind} settings: unknown keys {sorted(unknown)}; known {sorted(defaults)}"
        )
    resolved = {**copy.deepcopy(defaults), **given}
    if kind == "iagan":
        resolved["csgm"] = resolve_settings("csgm", {**defaults["csgm"], **given.get("csgm", {})})
    return resolved


def measurement_loss(operator: Operator, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image 0.5 * ||A x - y||^2: x (N, 3, 64, 64), y (N, m) -> (N,)."""
    return 0.5 * (operator.forward(x) - y).square().sum(dim=1)


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


def sample_prior(prior: Prior, seeds: Sequence[int]) -> torch.Tensor:
    """z_i ~ N(mean, covariance) from a CPU generator seeded seeds[i] -> (N, latent) fp32.

    z = mean + L eps with L L^T = covariance (Cholesky; an eigen-decomposition with
    negative eigenvalues clipped if the covariance is not numerically positive definite).
    """
    mean = torch.as_tensor(np.asarray(prior[0]), dtype=torch.float64).cpu().reshape(-1)
    covariance = torch.as_tensor(np.asarray(prior[1]), dtype=torch.float64).cpu()
    k = mean.shape[0]
    if covariance.shape != (k, k):
        raise ValueError(f"prior covariance {tuple(covariance.shape)} does not match mean ({k},)")
    factor, info = torch.linalg.cholesky_ex(covariance)
    if int(info) != 0:
        values, vectors = torch.linalg.eigh(covariance)
        factor = vectors * values.clamp(min=0).sqrt()
    eps = torch.stack([_randn(k, s, torch.float64) for s in seeds])
    return (mean + eps @ factor.T).float()


def standard_normal(seeds: Sequence[int], k: int) -> torch.Tensor:
    """z_i ~ N(0, I_k) from a CPU generator seeded seeds[i] -> (N, k) fp32."""
    return torch.stack([_randn(k, s, torch.float32) for s in seeds])


def _randn(k: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(k, generator=torch.Generator().manual_seed(int(seed)), dtype=dtype)


def _working_copy(generator: nn.Module, norm: str, device: torch.device) -> nn.Module:
    """A frozen fp32 copy of ``generator`` on ``device`` in batch-norm mode ``norm``."""
    net = copy.deepcopy(generator).to(device=device, dtype=torch.float32)
    net.norm = norm
    net.eval()
    net.requires_grad_(False)
    return net


def recover(
    method: str,
    operator: Operator,
    y: torch.Tensor,
    *,
    seeds: Sequence[int],
    settings: Mapping[str, Any] | None = None,
    generator: nn.Module | None = None,
    prior: Prior | None = None,
    latent_dim: int = 128,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    progress: bool = True,
    max_batch: int | None = None,
) -> RecoveryResult:
    """Recover N images from their measurements y (N, m) with ``method``.

    method: ``lowshot``, ``untrained``, ``csgm`` or ``iagan`` (``Method.kind``).
    operator: the problem's operator, on ``device``.
    seeds: one per image, from (config seed, method name, problem name, image id).
    settings: the method's settings (``lowshot.config.method_settings``; missing keys take
        ``DEFAULT_SETTINGS``).
    generator: the pre-trained generator (lowshot: the low-shot model, csgm/iagan: the
        WGAN-GP generator); untrained: None for the paper's DCGAN (``make_generator``),
        or a module whose architecture is re-initialised (DCGAN init) per image.
    prior: (mean (latent,), covariance (latent, latent)) of lowshot's fitted Gaussian.
    latent_dim: size of z when no generator fixes it.
    precision: "fp32", or "bf16" autocast of the generator on CUDA (losses stay fp32).
    max_batch: recover at most this many images at once (memory); None: all at once.
        The result does not depend on it.
    Returns images (N, 3, 64, 64) in [-1, 1] on the CPU and per-image diagnostics.
    """
    kind = method
    resolved = resolve_settings(kind, settings)
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, not {precision!r}")
    device = torch.device(device)
    y = torch.as_tensor(y).to(device=device, dtype=torch.float32)
    n = y.shape[0]
    seeds = [int(s) for s in seeds]
    if len(seeds) != n:
        raise ValueError(f"recover: {n} measurement rows but {len(seeds)} seeds")
    if y.shape[1] != operator.m:
        raise ValueError(f"recover: y has {y.shape[1]} measurements, operator {operator.m}")
    if kind != "untrained" and generator is None:
        raise ValueError(f"{kind} needs a pre-trained generator")
    if kind == "lowshot" and prior is None:
        raise ValueError("lowshot needs the prior (mean, covariance) fitted to its codes")
    if max_batch is not None and n > max_batch:
        chunks = [
            recover(
                kind,
                operator,
                y[start : start + max_batch],
                seeds=seeds[start : start + max_batch],
                settings=resolved,
                generator=generator,
                prior=prior,
                latent_dim=latent_dim,
                device=device,
                precision=precision,
                progress=progress,
            )
            for start in range(0, n, max_batch)
        ]
        return RecoveryResult.concat(chunks)
    options = {"precision": precision, "progress": progress}
    if kind == "lowshot":
        stage, restarts = _lowshot(operator, y, seeds, resolved, generator, prior, **options), 1
    elif kind == "untrained":
        stage, restarts = (
            _untrained(operator, y, seeds, resolved, generator, latent_dim, **options),
            1,
        )
    elif kind == "csgm":
        net = _working_copy(generator, "stored", device)
        stage, restarts = _csgm(operator, y, seeds, resolved, net, **options), resolved["restarts"]
    else:
        net = _working_copy(generator, "stored", device)
        csgm_settings = resolved["csgm"]
        first = _csgm(operator, y, seeds, csgm_settings, net, **options)
        stage = optimise_joint(
            net,
            stack_parameters(net, n),
            operator,
            y,
            first.z,
            steps=resolved["joint_steps"],
            lr=resolved["joint_lr"],
            previous=first,
            desc="iagan joint",
            **options,
        )
        restarts = csgm_settings["restarts"]
    result = RecoveryResult(
        images=stage.images.detach().cpu(),
        measurement_loss=stage.loss.detach().cpu().double().numpy(),
        iterations=stage.iterations.cpu().numpy().astype(np.int64),
        restarts=np.full(n, restarts, dtype=np.int64),
        diverged=stage.diverged.cpu().numpy().astype(bool),
    )
    if result.diverged.any():
        log.warning(
            "%s on %s: %d of %d images diverged (flagged, not averaged)",
            kind,
            operator.name,
            int(result.diverged.sum()),
            n,
        )
    log.info(
        "%s on %s: %d images, median measurement loss %.4g",
        kind,
        operator.name,
        n,
        float(np.nanmedian(result.measurement_loss)) if n else math.nan,
    )
    return result


def _lowshot(
    operator: Operator,
    y: torch.Tensor,
    seeds: list[int],
    settings: dict[str, Any],
    generator: nn.Module,
    prior: Prior,
    *,
    precision: str,
    progress: bool,
) -> StageResult:
    net = _working_copy(generator, "stored", y.device)
    z0 = sample_prior(prior, [derive_seed(s, "z") for s in seeds]).to(y.device)
    options = {"precision": precision, "progress": progress}
    first = optimise_latent(
        net,
        operator,
        y,
        z0,
        steps=settings["z_steps"],
        lr=settings["z_lr"],
        desc="lowshot z",
        **options,
    )
    return optimise_joint(
        net,
        stack_parameters(net, y.shape[0]),
        operator,
        y,
        first.z,
        steps=settings["joint_steps"],
        lr=settings["joint_lr"],
        previous=first,
        desc="lowshot joint",
        **options,
    )


def _untrained(
    operator: Operator,
    y: torch.Tensor,
    seeds: list[int],
    settings: dict[str, Any],
    template: nn.Module | None,
    latent_dim: int,
    *,
    precision: str,
    progress: bool,
) -> StageResult:
    if template is None:
        networks = [make_generator(latent_dim, _cpu_generator(s, "theta")) for s in seeds]
        template = networks[0]
    else:
        networks = []
        for s in seeds:
            network = copy.deepcopy(template).cpu().float()
            init_dcgan_weights(network, _cpu_generator(s, "theta"))
            networks.append(network)
    net = _working_copy(template, "per_image", y.device)
    params = {
        name: torch.stack([dict(network.named_parameters())[name].detach() for network in networks])
        .to(y.device)
        .requires_grad_(True)
        for name, _ in net.named_parameters()
    }
    z0 = standard_normal([derive_seed(s, "z") for s in seeds], net.latent_dim).to(y.device)
    return optimise_joint(
        net,
        params,
        operator,
        y,
        z0,
        steps=settings["steps"],
        lr=settings["lr"],
        desc="untrained joint",
        precision=precision,
        progress=progress,
    )


def _csgm(
    operator: Operator,
    y: torch.Tensor,
    seeds: list[int],
    settings: Mapping[str, Any],
    net: nn.Module,
    *,
    precision: str,
    progress: bool,
) -> StageResult:
    """All restarts of all images as one z-only batch (row r * N + i), then the winners."""
    n = y.shape[0]
    restarts = int(settings["restarts"])
    z0 = torch.cat(
        [
            standard_normal([derive_seed(s, "restart", r) for s in seeds], net.latent_dim)
            for r in range(restarts)
        ]
    ).to(y.device)
    stage = optimise_latent(
        net,
        operator,
        y.repeat(restarts, 1),
        z0,
        steps=settings["steps"],
        lr=settings["lr"],
        precision=precision,
        progress=progress,
        desc=f"csgm z ({restarts} restarts)",
    )
    return stage.select(
        best_restart(stage.loss, stage.diverged, restarts) * n + torch.arange(n, device=y.device)
    )


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


def _cpu_generator(seed: int, *names: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *names))
