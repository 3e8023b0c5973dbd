"""Training: WGAN-GP on a corpus, low-shot pre-training (eq. 1), the codes' Gaussian,
resumable checkpoints, and the generator files the recovery methods load.

Reproducibility and resuming
----------------------------
Every random draw comes from a CPU ``torch.Generator`` seeded with
``derive_seed(seed, stage, name)`` (never from torch's global generator), and those
generators' states are checkpointed together with the networks, both Adam optimisers,
the step and the loss log. A run that is killed and restarted with the same arguments
resumes from its last checkpoint and, on the CPU, finishes *bit for bit* equal to an
uninterrupted run (on CUDA up to the nondeterminism of cuDNN kernels). Draws are made on
the CPU and then moved, so CPU and GPU runs see the same batches and latent codes.

Checkpoints are ``torch.save`` files written atomically (``lowshot.io.atomic_path``)
every ``checkpoint_every`` steps and at the last step. They hold the run's settings; a
checkpoint whose settings differ from the call's (other seed, batch size, data, ...) is
an error rather than silently mixed into another run. ``iterations`` may differ (a run
can be extended), but not be smaller than the checkpoint's step. The checkpoint file is
left in place when training finishes; deleting it is the caller's business.

``stop_after=k`` makes training return right after step k *as if it had been killed
there*: nothing beyond the regular checkpoints is written, so a rerun resumes from the
last multiple of ``checkpoint_every`` and redoes the steps after it. The result then has
``finished=False``. It exists to test resuming.

Batch norm after training
-------------------------
Both trainings run the generator in norm mode ``"batch"`` (each forward pass normalised
by its own batch's statistics). Recovery uses mode ``"stored"``, i.e. the running
statistics, which during training are only an exponential average over recent batches
(and use the unbiased variance, unlike the normalisation itself). So when training
finishes, ``calibrate_batch_norm`` replaces them with the exact pooled statistics
(mean and biased variance) of the final network's layer inputs:
- low-shot: of the one full batch of the S fitted codes, so that G(z_i) in mode
  ``"stored"`` equals the fitted G(z_i) of training mode (up to rounding);
- WGAN-GP: of ``calibration_samples`` (default ``GAN_CALIBRATION_SAMPLES``) fresh
  N(0, I) codes (in batches of ``GAN_CALIBRATION_BATCH``), the population statistics
  that the generator's training batches estimate.
The returned generators are on the CPU, in eval mode with ``norm = "stored"``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lowshot.devices import autocast, resolve_device
from lowshot.io import atomic_path, load_generator, save_generator
from lowshot.losses import critic_loss, generator_loss, l2_loss, median_bandwidth, mmd_loss
from lowshot.metrics import psnr
from lowshot.models import Critic, Generator, GeneratorNorm, init_dcgan_weights
from lowshot.seeds import derive_seed

log = logging.getLogger(__name__)

LOSSES = ("l2", "mmd")
# Codes whose pooled layer statistics become the WGAN-GP generator's stored BN statistics,
# passed in batches large enough that each batch's statistics are close to the population's.
GAN_CALIBRATION_SAMPLES = 1024
GAN_CALIBRATION_BATCH = 256

PathLike = str | os.PathLike[str]


# ---------------------------------------------------------------------------------------
# Results


@dataclass
class GanResult:
    """A WGAN-GP run: networks on the CPU, the loss log (one dict per logged step).

    Log keys: step, critic_loss, generator_loss, gradient_penalty, wasserstein (critic
    values are means over the step's critic updates). ``start_step``: the step the run
    started from (0, or the checkpoint's step when resumed); ``step``: the last step done.
    """

    generator: Generator
    critic: Critic
    log: list[dict[str, float]]
    start_step: int
    step: int
    finished: bool


@dataclass
class LowshotResult:
    """A low-shot pre-training run (eq. 1).

    generator: on the CPU, ``norm = "stored"`` with calibrated statistics (see module doc).
    codes: (S, latent) float32, the fitted z_i, row i paired with example i.
    mean: (latent,), covariance: (latent, latent) float32, the shrunk Gaussian fitted to
    the codes (``fit_gaussian``). log: dicts with step, loss, fit_psnr (mean PSNR in dB of
    the training-mode G(z_i) against x_i). bandwidth: the MMD alpha used (None for l2).
    """

    generator: Generator
    codes: torch.Tensor
    mean: torch.Tensor
    covariance: torch.Tensor
    log: list[dict[str, float]]
    bandwidth: float | None
    loss: str
    start_step: int
    step: int
    finished: bool
    shrinkage: float = field(default=0.1)


# ---------------------------------------------------------------------------------------
# Helpers shared by both trainings


def _device(device: str | torch.device) -> torch.device:
    if isinstance(device, str) and device in ("auto", "cpu", "cuda"):
        return resolve_device(device)
    return torch.device(device)


def _rng(seed: int, *names: object) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(derive_seed(seed, *names))
    return generator


def _as_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Accept (N, 3, 64, 64) float in [-1, 1], or the store's uint8 (N, 64, 64, 3)."""
    tensor = torch.as_tensor(images)
    if tensor.dim() != 4:
        raise ValueError(f"images must be 4-d, got shape {tuple(tensor.shape)}")
    if tensor.dtype == torch.uint8:
        if tensor.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (N, H, W, 3), got {tuple(tensor.shape)}")
    elif tensor.shape[1] != 3:
        raise ValueError(f"float images must be (N, 3, H, W), got {tuple(tensor.shape)}")
    return tensor


def _to_float(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of ``_as_images`` images -> (B, 3, H, W) float32 in [-1, 1] on ``device``."""
    batch = batch.to(device)
    if batch.dtype == torch.uint8:
        return batch.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return batch.float()


def _fingerprint(images: torch.Tensor) -> list[float]:
    """Shape and a checksum of a strided subset: cheap, and catches other data."""
    stride = max(1, images.shape[0] // 64)
    return [*map(float, images.shape), float(images[::stride].double().sum())]


def _new_generator(latent_dim: int, width: int, seed: int, stage: str) -> Generator:
    generator = Generator(latent_dim, width)
    init_dcgan_weights(generator, _rng(seed, stage, "generator-init"))
    return generator


def _save_checkpoint(path: PathLike, state: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)
    log.info("checkpoint: step %d -> %s", state["step"], path)


def _load_checkpoint(
    path: PathLike | None, settings: Mapping[str, Any], iterations: int
) -> dict[str, Any] | None:
    if path is None or not Path(path).exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("settings") != dict(settings):
        raise ValueError(
            f"checkpoint {path} belongs to another run: its settings "
            f"{state.get('settings')} differ from {dict(settings)}; delete it to start afresh"
        )
    if state["step"] > iterations:
        raise ValueError(f"checkpoint {path} is at step {state['step']} > iterations {iterations}")
    log.info("resuming from checkpoint %s at step %d", path, state["step"])
    return state


def _due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


@torch.no_grad()
def calibrate_batch_norm(generator: Generator, latents: Iterable[torch.Tensor]) -> None:
    """Set every BN layer's running statistics to the pooled statistics of its inputs.

    latents: batches (B_b, latent) of codes; each batch is passed through the generator in
    mode ``"batch"`` (normalised by its own statistics, as in training), and each layer's
    running mean / running variance become the mean / biased variance of its inputs
    pooled over all batches (float64 sums). Nothing else changes; the generator's norm
    mode and train/eval flag are restored. See the module docstring for why.
    """
    norms = [module for module in generator.modules() if isinstance(module, GeneratorNorm)]
    sums: dict[int, list[Any]] = {id(m): [0, 0.0, 0.0] for m in norms}

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].double()
        entry = sums[id(module)]
        entry[0] += x.numel() // x.shape[1]
        entry[1] = entry[1] + x.sum(dim=(0, 2, 3))
        entry[2] = entry[2] + x.pow(2).sum(dim=(0, 2, 3))

    mode, training = generator.norm, generator.training
    saved = {id(m): (m.momentum, m.num_batches_tracked.clone()) for m in norms}
    handles = [m.register_forward_pre_hook(record) for m in norms]
    device = next(generator.parameters()).device
    try:
        generator.norm = "batch"
        generator.train()
        for m in norms:
            m.momentum = 0.0  # keep the running buffers untouched while recording
        batches = 0
        for z in latents:
            generator(z.to(device=device, dtype=torch.float32))
            batches += 1
        if batches == 0:
            raise ValueError("calibrate_batch_norm needs at least one batch of codes")
    finally:
        for handle in handles:
            handle.remove()
        for m in norms:
            m.momentum, tracked = saved[id(m)]
            m.num_batches_tracked.copy_(tracked)
        generator.norm = mode
        generator.train(training)
    for m in norms:
        count, total, total_sq = sums[id(m)]
        mean = total / count
        var = (total_sq / count - mean.pow(2)).clamp_min(0.0)
        m.running_mean.copy_(mean.to(m.running_mean.dtype))
        m.running_var.copy_(var.to(m.running_var.dtype))


def _finish_generator(generator: Generator) -> Generator:
    generator = generator.cpu()
    generator.norm = "stored"
    return generator.eval()


def write_log_csv(path: PathLike, rows: Sequence[Mapping[str, float]]) -> None:
    """Write a loss log (one dict per logged step) as CSV, atomically.

    The columns are every key in order of first appearance; a row without a key leaves
    its cell empty. The csv module, not pandas: training jobs then never import pandas,
    whose import costs seconds on a small CPU.
    """
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


# ---------------------------------------------------------------------------------------
# WGAN-GP


def train_wgan_gp(
    images: torch.Tensor | np.ndarray,
    *,
    latent_dim: int = 128,
    iterations: int = 100_000,
    batch_size: int = 64,
    critic_steps: int = 5,
    gp_weight: float = 10.0,
    lr: float = 1e-4,
    betas: Sequence[float] = (0.5, 0.9),
    seed: int = 0,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    checkpoint_path: PathLike | None = None,
    checkpoint_every: int = 1000,
    log_every: int = 100,
    progress: bool = True,
    stop_after: int | None = None,
    width: int = 64,
    calibration_samples: int = GAN_CALIBRATION_SAMPLES,
) -> GanResult:
    """Train the DCGAN generator against the WGAN-GP critic (Gulrajani et al. 2017).

    images: the corpus on the CPU, (N, 3, 64, 64) float in [-1, 1] or the HDF5 store's
    uint8 (N, 64, 64, 3) (converted batch by batch: 4x less memory for a large corpus).
    Each of the ``iterations`` generator steps follows ``critic_steps`` critic steps;
    every critic step draws a batch of ``batch_size`` images (uniformly, with
    replacement, from a seeded generator) and ``batch_size`` codes z ~ N(0, I); the
    gradient penalty's interpolation weights come from a third seeded generator. Adam
    with ``lr`` and ``betas`` for both networks. ``precision="bf16"`` autocasts the
    forward passes on CUDA. ``width`` is the networks' base width (64: the paper's DCGAN;
    smaller only for tests). After the last step the generator's BN statistics are
    calibrated on ``calibration_samples`` fresh codes (module docstring).
    Checkpointing, resuming and ``stop_after``: module docstring.
    """
    dev = _device(device)
    images = _as_images(images)
    betas = (float(betas[0]), float(betas[1]))
    stage = "wgan-gp"
    settings = {
        "kind": stage,
        "latent_dim": latent_dim,
        "batch_size": batch_size,
        "critic_steps": critic_steps,
        "gp_weight": float(gp_weight),
        "lr": float(lr),
        "betas": list(betas),
        "seed": int(seed),
        "precision": precision,
        "log_every": log_every,
        "width": width,
        "data": _fingerprint(images),
    }
    rngs = {name: _rng(seed, stage, name) for name in ("batches", "latents", "interpolates")}
    generator = _new_generator(latent_dim, width, seed, stage).to(dev).train()
    generator.norm = "batch"
    critic = Critic(width)
    init_dcgan_weights(critic, _rng(seed, stage, "critic-init"))
    critic = critic.to(dev).train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_c = torch.optim.Adam(critic.parameters(), lr=lr, betas=betas)
    rows: list[dict[str, float]] = []
    start = 0

    state = _load_checkpoint(checkpoint_path, settings, iterations)
    if state is not None:
        generator.load_state_dict(state["generator"])
        critic.load_state_dict(state["critic"])
        opt_g.load_state_dict(state["opt_generator"])
        opt_c.load_state_dict(state["opt_critic"])
        for name, rng_state in state["rng"].items():
            rngs[name].set_state(rng_state)
        rows, start = list(state["log"]), int(state["step"])

    def draw_latents() -> torch.Tensor:
        return torch.randn(batch_size, latent_dim, generator=rngs["latents"]).to(dev)

    step = start
    bar = tqdm(total=iterations, initial=start, desc="wgan-gp", disable=not progress)
    for step in range(start + 1, iterations + 1):
        totals = torch.zeros(3, dtype=torch.float64, device=dev)
        for _ in range(critic_steps):
            index = torch.randint(images.shape[0], (batch_size,), generator=rngs["batches"])
            real = _to_float(images[index], dev)
            z = draw_latents()
            with torch.no_grad(), autocast(dev, precision):
                fake = generator(z)
            with autocast(dev, precision):
                parts = critic_loss(
                    critic, real, fake.float(), gp_weight=gp_weight, generator=rngs["interpolates"]
                )
            opt_c.zero_grad(set_to_none=True)
            parts.loss.backward()
            opt_c.step()
            totals += torch.stack([parts.loss.detach(), parts.penalty, parts.wasserstein]).double()

        critic.requires_grad_(False)  # the generator step needs no critic gradients
        with autocast(dev, precision):
            g_loss = generator_loss(critic, generator(draw_latents()))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        critic.requires_grad_(True)
        bar.update(1)

        if _due(step, log_every, iterations):
            c_loss, penalty, wasserstein = (totals / critic_steps).tolist()
            row = {
                "step": step,
                "critic_loss": c_loss,
                "generator_loss": float(g_loss.detach()),
                "gradient_penalty": penalty,
                "wasserstein": wasserstein,
            }
            rows.append(row)
            log.info("wgan-gp %s", " ".join(f"{k}={v:.4g}" for k, v in row.items()))
        if checkpoint_path is not None and _due(step, checkpoint_every, iterations):
            _save_checkpoint(
                checkpoint_path,
                {
                    "settings": settings,
                    "step": step,
                    "generator": generator.state_dict(),
                    "critic": critic.state_dict(),
                    "opt_generator": opt_g.state_dict(),
                    "opt_critic": opt_c.state_dict(),
                    "rng": {name: rng.get_state() for name, rng in rngs.items()},
                    "log": rows,
                },
            )
        if stop_after is not None and step >= stop_after and step < iterations:
            bar.close()
            log.info("stop_after=%d: stopping at step %d as if killed", stop_after, step)
            return GanResult(
                _finish_generator(generator), critic.cpu().eval(), rows, start, step, False
            )
    bar.close()

    calibration = _rng(seed, stage, "bn-calibration")
    full, rest = divmod(calibration_samples, GAN_CALIBRATION_BATCH)
    sizes = [GAN_CALIBRATION_BATCH] * full + ([rest] if rest else [])
    calibrate_batch_norm(
        generator, (torch.randn(size, latent_dim, generator=calibration) for size in sizes)
    )
    return GanResult(_finish_generator(generator), critic.cpu().eval(), rows, start, step, True)


# ---------------------------------------------------------------------------------------
# Low-shot pre-training (eq. 1) and the codes' Gaussian


def fit_gaussian(codes: torch.Tensor, shrinkage: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and shrunk covariance of the codes, the prior that initialises recovery.

    codes: (S, k) with S >= 2 -> mean (k,), covariance (k, k), float32 on the CPU.
    covariance = (1 - s) * C + s * (trace(C) / k) * I, with C the unbiased sample
    covariance (divisor S - 1) and s = ``shrinkage`` in [0, 1]: shrinkage towards the
    isotropic covariance with the same total variance (Ledoit-Wolf's target with a fixed
    weight). C has rank <= S - 1 < k when S <= k (the paper: S <= 100 < 128), so it is
    singular; any s > 0 makes every eigenvalue >= s * trace(C) / k > 0, i.e. the
    covariance positive definite (when the codes are not all equal). Computed in float64.
    """
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1], not {shrinkage}")
    z = torch.as_tensor(codes).detach().cpu().double()
    if z.dim() != 2 or z.shape[0] < 2:
        raise ValueError(f"codes must be (S, k) with S >= 2, got {tuple(z.shape)}")
    k = z.shape[1]
    mean = z.mean(dim=0)
    centred = z - mean
    sample = centred.T @ centred / (z.shape[0] - 1)
    target = torch.trace(sample) / k * torch.eye(k, dtype=torch.float64)
    covariance = (1.0 - shrinkage) * sample + shrinkage * target
    return mean.float(), covariance.float()


def sample_gaussian(
    mean: torch.Tensor, covariance: torch.Tensor, n: int, generator: torch.Generator
) -> torch.Tensor:
    """n draws from N(mean, covariance): (n, k) float32 on the CPU.

    mean: (k,), covariance: (k, k) positive definite. z = mean + L eps with L the
    Cholesky factor (float64) and eps ~ N(0, I): one ``torch.randn(n, k)`` draw from
    ``generator`` (torch's CPU sampler orders large draws differently, so the first rows
    of an n-row draw are not those of a smaller draw; draw per image for per-image seeds).
    """
    mean64 = torch.as_tensor(mean).detach().cpu().double()
    factor = torch.linalg.cholesky(torch.as_tensor(covariance).detach().cpu().double())
    eps = torch.randn(n, mean64.shape[0], generator=generator, device=generator.device)
    return (mean64 + eps.cpu().double() @ factor.T).float()


def pretrain_lowshot(
    images: torch.Tensor | np.ndarray,
    *,
    loss: str = "l2",
    latent_dim: int = 128,
    iterations: int = 50_000,
    lr: float = 1e-3,
    mmd_bandwidth: float | str = "median",
    covariance_shrinkage: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    checkpoint_path: PathLike | None = None,
    checkpoint_every: int = 5000,
    log_every: int = 500,
    progress: bool = True,
    stop_after: int | None = None,
    width: int = 64,
) -> LowshotResult:
    """Low-shot pre-training, eq. (1): theta and one code z_i per example, jointly.

    images: the S examples x_i, (S, 3, 64, 64) float in [-1, 1] (or uint8 (S, 64, 64, 3)).
    Codes start as N(0, I) draws and the generator with DCGAN weights, both from ``seed``.
    Each of ``iterations`` Adam steps (``lr``, default betas) uses all S examples at once
    (full batch, generator norm ``"batch"``). ``loss``: ``"l2"`` (eq. 4, ``l2_loss``, G(z_i)
    paired with x_i) or ``"mmd"`` (eq. 5, ``mmd_loss``, a distribution match without
    pairing), with alpha = ``mmd_bandwidth`` or, for ``"median"``, ``median_bandwidth`` of
    the examples, computed once. ``precision="bf16"`` autocasts the generator on CUDA; the
    loss is always computed in float32. After the last step the BN statistics are
    calibrated on the codes and the Gaussian is fitted (``fit_gaussian`` with
    ``covariance_shrinkage``). ``iterations=0`` gives the calibrated initial network.
    Checkpointing, resuming and ``stop_after``: module docstring.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")
    dev = _device(device)
    targets = _to_float(_as_images(images), dev)
    if targets.shape[0] < 2:
        raise ValueError("pre-training needs at least two examples")
    bandwidth: float | None = None
    if loss == "mmd":
        bandwidth = median_bandwidth(targets) if mmd_bandwidth == "median" else float(mmd_bandwidth)
        log.info("MMD bandwidth alpha = %.6g (%s)", bandwidth, mmd_bandwidth)
    stage = "lowshot"
    settings = {
        "kind": stage,
        "loss": loss,
        "latent_dim": latent_dim,
        "lr": float(lr),
        "mmd_bandwidth": mmd_bandwidth if isinstance(mmd_bandwidth, str) else float(mmd_bandwidth),
        "seed": int(seed),
        "precision": precision,
        "log_every": log_every,
        "width": width,
        "data": _fingerprint(targets.cpu()),
    }
    generator = _new_generator(latent_dim, width, seed, stage).to(dev).train()
    generator.norm = "batch"
    initial_codes = torch.randn(targets.shape[0], latent_dim, generator=_rng(seed, stage, "codes"))
    codes = nn.Parameter(initial_codes.to(dev))
    optimiser = torch.optim.Adam([*generator.parameters(), codes], lr=lr)
    rows: list[dict[str, float]] = []
    start = 0

    state = _load_checkpoint(checkpoint_path, settings, iterations)
    if state is not None:
        generator.load_state_dict(state["generator"])
        with torch.no_grad():
            codes.copy_(state["codes"])
        optimiser.load_state_dict(state["optimiser"])
        rows, start = list(state["log"]), int(state["step"])

    def objective(generated: torch.Tensor) -> torch.Tensor:
        if loss == "l2":
            return l2_loss(generated, targets)
        return mmd_loss(generated, targets, bandwidth)  # type: ignore[arg-type]

    step = start
    bar = tqdm(total=iterations, initial=start, desc=f"lowshot-{loss}", disable=not progress)
    for step in range(start + 1, iterations + 1):
        with autocast(dev, precision):
            generated = generator(codes)
        value = objective(generated.float())
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        optimiser.step()
        bar.update(1)

        if _due(step, log_every, iterations):
            row = {
                "step": step,
                "loss": float(value.detach()),
                "fit_psnr": float(psnr(generated.detach(), targets).mean()),
            }
            rows.append(row)
            log.info("lowshot %s", " ".join(f"{k}={v:.4g}" for k, v in row.items()))
        if checkpoint_path is not None and _due(step, checkpoint_every, iterations):
            _save_checkpoint(
                checkpoint_path,
                {
                    "settings": settings,
                    "step": step,
                    "generator": generator.state_dict(),
                    "codes": codes.detach(),
                    "optimiser": optimiser.state_dict(),
                    "log": rows,
                },
            )
        if stop_after is not None and step >= stop_after and step < iterations:
            log.info("stop_after=%d: stopping at step %d as if killed", stop_after, step)
            break
    bar.close()

    finished = step >= iterations
    fitted = codes.detach().cpu().float().clone()
    if finished:
        calibrate_batch_norm(generator, [codes.detach()])
    mean, covariance = fit_gaussian(fitted, covariance_shrinkage)
    return LowshotResult(
        generator=_finish_generator(generator),
        codes=fitted,
        mean=mean,
        covariance=covariance,
        log=rows,
        bandwidth=bandwidth,
        loss=loss,
        start_step=start,
        step=step,
        finished=finished,
        shrinkage=covariance_shrinkage,
    )


# ---------------------------------------------------------------------------------------
# Generator files (layout: lowshot.io)


def _generator_from_state(state: Mapping[str, torch.Tensor]) -> Generator:
    """Rebuild a generator (latent size and width read off the first layer's weight)."""
    first = state["net.0.weight"]  # (latent, 8 * width, 4, 4)
    generator = Generator(int(first.shape[0]), int(first.shape[1]) // 8)
    generator.load_state_dict(dict(state))
    generator.norm = "stored"
    return generator.eval()


def save_lowshot(
    path: PathLike, result: LowshotResult, attrs: Mapping[str, Any] | None = None
) -> None:
    """Write a low-shot model: generator state (BN statistics included), codes, prior.

    Attrs: loss, mmd_bandwidth (none for l2), covariance_shrinkage, iterations (steps
    done), latent_dim, shots, then the caller's ``attrs`` (which win on a clash).
    """
    base = {
        "loss": result.loss,
        "mmd_bandwidth": result.bandwidth,
        "covariance_shrinkage": result.shrinkage,
        "iterations": result.step,
        "latent_dim": int(result.codes.shape[1]),
        "shots": int(result.codes.shape[0]),
    }
    extra = {
        "codes": result.codes.detach().cpu().float(),
        "prior/mean": result.mean.detach().cpu().float(),
        "prior/covariance": result.covariance.detach().cpu().float(),
    }
    state = {k: v.detach().cpu() for k, v in result.generator.state_dict().items()}
    save_generator(path, state, extra, {**base, **(attrs or {})})


def load_lowshot(
    path: PathLike,
) -> tuple[Generator, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Read ``save_lowshot``'s file -> (generator, codes (S, k), mean (k,), covariance
    (k, k), attrs); the generator is on the CPU, in eval mode with ``norm = "stored"``."""
    state, others, attrs = load_generator(path)
    missing = {"codes", "prior/mean", "prior/covariance"} - set(others)
    if missing:
        raise ValueError(f"{path}: not a low-shot model file, missing {sorted(missing)}")
    codes, mean, covariance = (
        torch.from_numpy(np.asarray(others[name]))
        for name in ("codes", "prior/mean", "prior/covariance")
    )
    return _generator_from_state(state), codes, mean, covariance, attrs


def save_gan(path: PathLike, generator: Generator, attrs: Mapping[str, Any] | None = None) -> None:
    """Write a WGAN-GP generator (state with BN statistics) and ``attrs``."""
    state = {k: v.detach().cpu() for k, v in generator.state_dict().items()}
    save_generator(path, state, None, {"latent_dim": generator.latent_dim, **(attrs or {})})


def load_gan(path: PathLike) -> Generator:
    """Read ``save_gan``'s file -> generator on the CPU, eval mode, ``norm = "stored"``."""
    state, _, _ = load_generator(path)
    return _generator_from_state(state)


# ---------------------------------------------------------------------------------------
# Sample grids


@torch.no_grad()
def sample_grid(
    generator: Generator,
    n: int,
    seed: int,
    *,
    mean: torch.Tensor | None = None,
    covariance: torch.Tensor | None = None,
    columns: int | None = None,
    padding: int = 2,
) -> np.ndarray:
    """A grid of n samples as a uint8 image (H, W, 3), for a PNG (saved by the scripts).

    Codes: N(mean, covariance) when both are given (a low-shot model's prior), else
    N(0, I), drawn from a generator seeded with ``seed``. The generator runs in norm mode
    ``"stored"`` (its mode and train flag are restored). ``columns`` defaults to
    ceil(sqrt(n)); tiles are separated by ``padding`` white pixels.
    """
    rng = torch.Generator()
    rng.manual_seed(seed)
    if mean is not None and covariance is not None:
        z = sample_gaussian(mean, covariance, n, rng)
    else:
        z = torch.randn(n, generator.latent_dim, generator=rng)
    mode, training = generator.norm, generator.training
    try:
        generator.norm = "stored"
        generator.eval()
        device = next(generator.parameters()).device
        images = generator(z.to(device)).float().cpu()
    finally:
        generator.norm = mode
        generator.train(training)
    tiles = ((images.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    h, w = tiles.shape[1:3]
    grid = np.full(
        (rows * h + (rows + 1) * padding, columns * w + (columns + 1) * padding, 3),
        255,
        dtype=np.uint8,
    )
    for i, tile in enumerate(tiles.numpy()):
        r, c = divmod(i, columns)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top : top + h, left : left + w] = tile
    return grid
