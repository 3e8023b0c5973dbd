"""WGAN-GP training of the DCGAN generator (Gulrajani et al. 2017), for CSGM and IAGAN."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lowshot.devices import autocast
from lowshot.losses import critic_loss, generator_loss
from lowshot.models import Critic, Generator, init_dcgan_weights
from lowshot.seeds import derive_seed, seeded_generator
from lowshot.training import loop
from lowshot.training.loop import TrainingRun
from lowshot.training.settings import gan_settings

# The calibration codes (``gan.calibration_samples`` of them) go through the generator in
# batches this large, so that each batch's statistics are close to the population's.
GAN_CALIBRATION_BATCH = 256


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


def train_wgan_gp(
    images: torch.Tensor | np.ndarray, settings: Mapping[str, Any], run: TrainingRun
) -> GanResult:
    """Train the DCGAN generator against the WGAN-GP critic.

    images: the corpus on the CPU, (N, 3, 64, 64) float in [-1, 1] or the HDF5 store's
    uint8 (N, 64, 64, 3) (converted batch by batch: 4x less memory for a large corpus).
    settings: the config's ``gan`` section, exactly its keys, all required.
    run: how it runs (``TrainingRun``: latent size, seed, device, precision, checkpoint,
    progress bar, ``stop_after``, width).
    Each of the ``iterations`` generator steps follows ``critic_steps`` critic steps;
    every critic step draws a batch of ``batch_size`` images (uniformly, with
    replacement, from a seeded generator) and ``batch_size`` codes z ~ N(0, I); the
    gradient penalty's interpolation weights come from a third seeded generator. Adam
    with ``lr`` and ``betas`` for both networks. ``run.precision="bf16"`` autocasts the
    forward passes on CUDA. After the last step the generator's BN statistics are
    calibrated on ``calibration_samples`` fresh codes (package docstring).
    Checkpointing, resuming and ``stop_after``: package docstring.
    """
    config = gan_settings(settings)
    latent_dim, seed, precision = run.latent_dim, run.seed, run.precision
    dev = loop._device(run.device)
    images = loop._as_images(images)
    batch_size, critic_steps = config["batch_size"], config["critic_steps"]
    gp_weight, lr = config["gp_weight"], config["lr"]
    betas = (float(config["betas"][0]), float(config["betas"][1]))
    stage = "wgan-gp"
    identity = {
        "kind": stage,
        "latent_dim": latent_dim,
        "batch_size": batch_size,
        "critic_steps": critic_steps,
        "gp_weight": float(gp_weight),
        "lr": float(lr),
        "betas": list(betas),
        "seed": int(seed),
        "precision": precision,
        "log_every": config["log_every"],
        "width": run.width,
        "data": loop._fingerprint(images),
    }
    rngs = {
        name: seeded_generator(derive_seed(seed, stage, name))
        for name in ("batches", "latents", "interpolates")
    }
    generator = loop._new_generator(run, stage, dev)
    critic = Critic(run.width)
    init_dcgan_weights(critic, seeded_generator(derive_seed(seed, stage, "critic-init")))
    critic = critic.to(dev).train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_c = torch.optim.Adam(critic.parameters(), lr=lr, betas=betas)

    def draw_latents() -> torch.Tensor:
        return torch.randn(batch_size, latent_dim, generator=rngs["latents"]).to(dev)

    def step() -> Callable[[], dict[str, float]]:
        totals = torch.zeros(3, dtype=torch.float64, device=dev)
        for _ in range(critic_steps):
            index = torch.randint(images.shape[0], (batch_size,), generator=rngs["batches"])
            real = loop._to_float(images[index], dev)
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

        def row() -> dict[str, float]:
            c_loss, penalty, wasserstein = (totals / critic_steps).tolist()
            return {
                "critic_loss": c_loss,
                "generator_loss": float(g_loss.detach()),
                "gradient_penalty": penalty,
                "wasserstein": wasserstein,
            }

        return row

    outcome = loop.train_loop(
        step,
        run,
        state={
            "generator": generator,
            "critic": critic,
            "opt_generator": opt_g,
            "opt_critic": opt_c,
            "rng": rngs,
        },
        identity=identity,
        settings=config,
        desc=stage,
    )
    if outcome.finished:
        calibration = seeded_generator(derive_seed(seed, stage, "bn-calibration"))
        full, rest = divmod(config["calibration_samples"], GAN_CALIBRATION_BATCH)
        sizes = [GAN_CALIBRATION_BATCH] * full + ([rest] if rest else [])
        loop.calibrate_batch_norm(
            generator, (torch.randn(size, latent_dim, generator=calibration) for size in sizes)
        )
    return GanResult(
        loop._finish_generator(generator),
        critic.cpu().eval(),
        outcome.log,
        outcome.start_step,
        outcome.step,
        outcome.finished,
    )
