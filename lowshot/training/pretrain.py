"""Low-shot pre-training, eq. (1): the generator and one code per example, jointly; then
the Gaussian fitted to the codes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lowshot import cuda_graphs as graph_steps
from lowshot.devices import autocast, set_precision
from lowshot.gaussian import fit_gaussian
from lowshot.losses import l2_loss, median_bandwidth, mmd_loss
from lowshot.metrics import nearest_psnr, psnr
from lowshot.models import Generator
from lowshot.seeds import derive_seed, seeded_generator
from lowshot.training import loop
from lowshot.training.loop import TrainingRun
from lowshot.training.settings import lowshot_settings

log = logging.getLogger(__name__)

LOSSES = ("l2", "mmd")
STAGE = "lowshot"


@dataclass
class LowshotResult:
    """A low-shot pre-training run (eq. 1).

    generator: on the CPU, ``norm = "stored"`` with calibrated statistics (package doc).
    codes: (S, latent) float32, the fitted z_i, row i paired with example i.
    mean: (latent,), covariance: (latent, latent) float32, the shrunk Gaussian fitted to
    the codes (``lowshot.gaussian.fit_gaussian`` with ``shrinkage``). log: dicts with
    step, loss, for l2 fit_psnr (mean PSNR in dB of the training-mode G(z_i) against its
    own x_i, the pair eq. 4 fits) and for both losses nearest_psnr (mean over the
    examples of the PSNR of the nearest G(z_i), ``lowshot.metrics.nearest_psnr``: the MMD
    of eq. 5 ignores the pairs i = i', so for it only this one means anything).
    bandwidth: the MMD alpha used (None for l2).
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
    shrinkage: float


@dataclass
class LowshotPretraining:
    """One low-shot pre-training, set up (``build_lowshot``): what ``pretrain_lowshot``
    runs. ``step()`` is one full-batch Adam step on theta and the codes and returns the
    function that makes its log row; ``state`` is what a checkpoint holds. Exposed so that
    ``benchmarks/training.py`` times the very step the trainer runs."""

    config: dict[str, Any]
    device: torch.device
    identity: dict[str, Any]
    generator: Generator
    codes: nn.Parameter
    optimiser: torch.optim.Optimizer
    targets: torch.Tensor
    bandwidth: float | None
    step: loop.Step

    @property
    def state(self) -> dict[str, Any]:
        """The checkpoint's objects, by key."""
        return {"generator": self.generator, "codes": self.codes, "optimiser": self.optimiser}


def build_lowshot(
    images: torch.Tensor | np.ndarray,
    settings: Mapping[str, Any],
    run: TrainingRun,
    *,
    loss: str,
) -> LowshotPretraining:
    """Generator, codes, optimiser and the step of ``pretrain_lowshot`` (same arguments),
    at step 0; nothing is trained."""
    config = lowshot_settings(settings)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")
    latent_dim, seed, precision = run.latent_dim, run.seed, run.precision
    dev = loop._device(run.device)
    set_precision(precision, dev)  # fp32 means IEEE fp32, tf32 opts in
    targets = loop._to_float(loop._as_images(images), dev)
    if targets.shape[0] < 2:
        raise ValueError("pre-training needs at least two examples")
    mmd_bandwidth = config["mmd_bandwidth"]
    bandwidth: float | None = None
    if loss == "mmd":
        bandwidth = median_bandwidth(targets) if mmd_bandwidth == "median" else float(mmd_bandwidth)
        log.info("MMD bandwidth alpha = %.6g (%s)", bandwidth, mmd_bandwidth)
    identity = {
        "kind": STAGE,
        "loss": loss,
        "latent_dim": latent_dim,
        "lr": float(config["lr"]),
        "mmd_bandwidth": mmd_bandwidth if isinstance(mmd_bandwidth, str) else float(mmd_bandwidth),
        "seed": int(seed),
        "precision": precision,
        "log_every": config["log_every"],
        "width": run.width,
        "data": loop._fingerprint(targets.cpu()),
    }
    generator = loop._new_generator(run, STAGE, dev)
    codes = nn.Parameter(pretraining_codes(seed, targets.shape[0], latent_dim).to(dev))
    graphs = graph_steps.graphs_on(run.cuda_graphs, dev)
    optimiser = torch.optim.Adam(
        [*generator.parameters(), codes], lr=config["lr"], capturable=graphs
    )

    def objective(generated: torch.Tensor) -> torch.Tensor:
        if loss == "l2":
            return l2_loss(generated, targets)
        return mmd_loss(generated, targets, bandwidth)  # type: ignore[arg-type]

    def step() -> Callable[[], dict[str, float]]:
        # Without the autocast cache: a captured graph must not keep casts across replays.
        with autocast(dev, precision, cache=not graphs):
            generated = generator(codes)
        value = objective(generated.float())
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        optimiser.step()

        def row() -> dict[str, float]:
            images = generated.detach()
            paired = {"fit_psnr": float(psnr(images, targets).mean())} if loss == "l2" else {}
            nearest = float(nearest_psnr(images, targets).mean())
            return {"loss": float(value.detach()), **paired, "nearest_psnr": nearest}

        return row

    return LowshotPretraining(
        config,
        dev,
        identity,
        generator,
        codes,
        optimiser,
        targets,
        bandwidth,
        graph_steps.stepper(step, dev, graphs),
    )


def pretrain_lowshot(
    images: torch.Tensor | np.ndarray,
    settings: Mapping[str, Any],
    run: TrainingRun,
    *,
    loss: str,
) -> LowshotResult:
    """Low-shot pre-training, eq. (1): theta and one code z_i per example, jointly.

    images: the S examples x_i, (S, 3, 64, 64) float in [-1, 1] (or uint8 (S, 64, 64, 3)).
    settings: the config's ``lowshot`` section: its training keys all required; the
    selection keys (``shots``, ``losses``, ``replicates``) may be present and are ignored
    (``lowshot_settings``).
    run: how it runs (``TrainingRun``: latent size, seed, device, precision, checkpoint,
    progress bar, ``stop_after``, width).
    Codes start as N(0, I) draws (``pretraining_codes``: code i is the same for every S) and
    the generator with DCGAN weights, both from ``run.seed``; the jobs give every (loss, S)
    of a replicate the same seed (``pretraining_seed``), so the models of a replicate start
    from one theta_0 and nested codes.
    Each of ``iterations`` Adam steps (``lr``, default betas) uses all S examples at once
    (full batch, generator norm ``"batch"``). ``loss``: ``"l2"`` (eq. 4, ``l2_loss``, G(z_i)
    paired with x_i) or ``"mmd"`` (eq. 5, ``mmd_loss``, a distribution match without
    pairing), with alpha = ``mmd_bandwidth`` or, for ``"median"``, ``median_bandwidth`` of
    the examples, computed once. ``run.precision="bf16"`` autocasts the generator on CUDA; the
    loss is always computed in float32. After the last step the BN statistics are
    calibrated on the codes and the Gaussian is fitted (``fit_gaussian`` with
    ``covariance_shrinkage``). ``iterations=0`` gives the calibrated initial network.
    Checkpointing, resuming and ``stop_after``: package docstring.
    """
    trainer = build_lowshot(images, settings, run, loss=loss)
    config, generator, codes = trainer.config, trainer.generator, trainer.codes
    outcome = loop.train_loop(
        trainer.step,
        run,
        state=trainer.state,
        identity=trainer.identity,
        settings=config,
        desc=f"{STAGE}-{loss}",
    )
    fitted = codes.detach().cpu().float().clone()
    if outcome.finished:
        loop.calibrate_batch_norm(generator, [codes.detach()])
    mean, covariance = fit_gaussian(fitted, config["covariance_shrinkage"])
    return LowshotResult(
        generator=loop._finish_generator(generator),
        codes=fitted,
        mean=mean,
        covariance=covariance,
        log=outcome.log,
        bandwidth=trainer.bandwidth,
        loss=loss,
        start_step=outcome.start_step,
        step=outcome.step,
        finished=outcome.finished,
        shrinkage=config["covariance_shrinkage"],
    )


def pretraining_seed(config_seed: int, replicate: int = 1) -> int:
    """The pre-training seed (``TrainingRun.seed``) of every low-shot model of one
    replicate (``lowshot.replicates``): it gives theta_0 and the initial codes.

    Replicate 1: ``derive_seed(config_seed, "pretrain_lowshot")``, the seed every model
    had before replicates existed (one theta_0 and nested codes for every loss and S, so
    their differences are paired). Replicate r >= 2: ``derive_seed(config_seed,
    "pretrain_lowshot", "replicate", r)``, its own theta_0 and codes, shared by its models.
    """
    if replicate < 1:
        raise ValueError(f"replicate must be >= 1, not {replicate}")
    if replicate == 1:
        return derive_seed(config_seed, "pretrain_lowshot")
    return derive_seed(config_seed, "pretrain_lowshot", "replicate", replicate)


def pretraining_codes(seed: int, n: int, latent_dim: int) -> torch.Tensor:
    """Pre-training's initial codes: row i ~ N(0, I) from its own sub-stream ("code", i) of
    ``seed`` -> (n, latent_dim) float32 on the CPU. Row i does not depend on n, so the
    first S rows are the same for every S (paired low-shot models)."""
    rows = [
        torch.randn(latent_dim, generator=seeded_generator(derive_seed(seed, "lowshot", "code", i)))
        for i in range(n)
    ]
    return torch.stack(rows)
