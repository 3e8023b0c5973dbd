"""WGAN-GP training of the DCGAN generator (Gulrajani et al. 2017), for CSGM and IAGAN."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lowshot.devices import autocast, set_precision
from lowshot.losses import critic_loss, generator_loss
from lowshot.models import Critic, Generator, init_dcgan_weights
from lowshot.seeds import derive_seed, seeded_generator
from lowshot.training import loop, validation
from lowshot.training.loop import TrainingRun
from lowshot.training.settings import gan_settings

# The calibration codes (``gan.calibration_samples`` of them) go through the generator in
# batches this large, so that each batch's statistics are close to the population's.
GAN_CALIBRATION_BATCH = 256
STAGE = "wgan-gp"

log = logging.getLogger(__name__)


@dataclass
class GanResult:
    """A WGAN-GP run: networks on the CPU, the loss log (one dict per logged step).

    Log keys: step, critic_loss, generator_loss, gradient_penalty, wasserstein (critic
    values are means over the step's critic updates). ``start_step``: the step the run
    started from (0, or the checkpoint's step when resumed); ``step``: the last step done.
    ``validation``: the validation curve's rows (``lowshot.training.validation``; empty
    when ``validate_every`` is 0); ``stopped_early``: whether its ``patience`` ended the
    run before ``iterations``. ``saved_step``: the step whose generator ``generator`` is:
    ``step``, except for a finished run with ``patience`` > 0, where it is the best
    validation point's step (and the curve's rows then carry ``saved``: 1 on that point,
    0 elsewhere). ``critic`` is always the last step's.
    """

    generator: Generator
    critic: Critic
    log: list[dict[str, float]]
    start_step: int
    step: int
    finished: bool
    validation: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    saved_step: int | None = None


@dataclass
class WganGp:
    """One WGAN-GP training, set up (``build_wgan_gp``): what ``train_wgan_gp`` runs.

    ``step()`` is one training iteration (``critic_steps`` critic updates, then one
    generator update) and returns the function that makes its log row; ``state`` is what
    a checkpoint holds. Exposed so that ``benchmarks/training.py`` times the very step
    the trainer runs.
    """

    config: dict[str, Any]
    device: torch.device
    identity: dict[str, Any]
    generator: Generator
    critic: Critic
    opt_generator: torch.optim.Optimizer
    opt_critic: torch.optim.Optimizer
    rngs: dict[str, torch.Generator]
    step: loop.Step

    @property
    def state(self) -> dict[str, Any]:
        """The checkpoint's objects, by key."""
        return {
            "generator": self.generator,
            "critic": self.critic,
            "opt_generator": self.opt_generator,
            "opt_critic": self.opt_critic,
            "rng": self.rngs,
        }


def build_wgan_gp(
    images: torch.Tensor | np.ndarray, settings: Mapping[str, Any], run: TrainingRun
) -> WganGp:
    """Networks, optimisers, seeded generators and the step of ``train_wgan_gp`` (same
    arguments), at step 0; nothing is trained."""
    config = gan_settings(settings)
    latent_dim, seed, precision = run.latent_dim, run.seed, run.precision
    dev = loop._device(run.device)
    set_precision(precision, dev)  # fp32 means IEEE fp32, tf32 opts in
    images = loop._as_images(images)
    batch_size, critic_steps = config["batch_size"], config["critic_steps"]
    gp_weight, lr = config["gp_weight"], config["lr"]
    betas = (float(config["betas"][0]), float(config["betas"][1]))
    identity = {
        "kind": STAGE,
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
        name: seeded_generator(derive_seed(seed, STAGE, name))
        for name in ("batches", "latents", "interpolates")
    }
    generator = loop._new_generator(run, STAGE, dev)
    critic = Critic(run.width)
    init_dcgan_weights(critic, seeded_generator(derive_seed(seed, STAGE, "critic-init")))
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

    return WganGp(config, dev, identity, generator, critic, opt_g, opt_c, rngs, step)


def calibration_codes(seed: int, latent_dim: int, samples: int) -> Iterator[torch.Tensor]:
    """The codes whose statistics become the generator's stored BN statistics: ``samples``
    N(0, I) draws of the run's ``seed`` (sub-stream "bn-calibration"), in batches of
    ``GAN_CALIBRATION_BATCH`` (the last one smaller), on the CPU."""
    calibration = seeded_generator(derive_seed(seed, STAGE, "bn-calibration"))
    full, rest = divmod(samples, GAN_CALIBRATION_BATCH)
    sizes = [GAN_CALIBRATION_BATCH] * full + ([rest] if rest else [])
    return (torch.randn(size, latent_dim, generator=calibration) for size in sizes)


def train_wgan_gp(
    images: torch.Tensor | np.ndarray,
    settings: Mapping[str, Any],
    run: TrainingRun,
    *,
    validation_images: torch.Tensor | np.ndarray | None = None,
    on_validation: Callable[[list[dict[str, float]]], None] | None = None,
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

    Validation (``validate_every`` > 0; ``lowshot.training.validation``): every
    ``validate_every`` steps and at the last one, CSGM recovers ``validation_faces`` of
    ``validation_images`` (the split's validation faces, at least that many) with the
    current generator (a calibrated copy: training itself is unchanged) and the mean
    PSNR joins the curve (``GanResult.validation``; checkpointed, so a resumed run
    continues it). ``on_validation(rows)`` is called with the whole curve after each
    point (the job writes its CSV). ``patience`` > 0 ends training once that many
    points in a row have not beaten the best one, and makes the returned generator the
    best point's (kept on the CPU and checkpointed, so a resumed run keeps it), whether
    training stopped early or reached ``iterations``; its step is ``saved_step``, marked
    in the curve's ``saved`` column (the last step's generator when no point has a finite
    PSNR). With ``patience`` 0 the curve is only a record: the last step's generator is
    returned, bit for bit as without the curve. With ``validate_every`` 0 nothing of this
    runs and ``validation_images`` is not needed.
    """
    trainer = build_wgan_gp(images, settings, run)
    config, identity = trainer.config, trainer.identity
    state = trainer.state
    after_step = None
    curve: validation.ValidationCurve | None = None
    best: validation.BestGenerator | None = None
    if config["validate_every"] > 0:
        if validation_images is None:
            raise ValueError(
                f"gan.validate_every={config['validate_every']} needs the validation faces "
                "(validation_images); set it to 0 to train without the validation curve"
            )
        check = validation.GanValidation(validation_images, config, run, trainer.device)
        curve = validation.ValidationCurve()
        identity = {**identity, "validation": check.identity}
        state = {**state, "validation": curve}
        if config["patience"] > 0:
            # The best point's generator joins the checkpoint; "keeps" in the identity
            # turns away checkpoints of before it did (no best generator to resume).
            best = validation.BestGenerator()
            identity = {**identity, "validation": {**check.identity, "keeps": "best"}}
            state = {**state, "best": best}

        def after_step(step: int) -> bool:
            assert curve is not None
            if not loop._due(step, config["validate_every"], config["iterations"]):
                return False
            codes = calibration_codes(run.seed, run.latent_dim, config["calibration_samples"])
            curve.rows.append(check(trainer.generator, codes, step))
            if best is not None and curve.best() == len(curve.rows) - 1:
                best.keep(trainer.generator, step)
            if on_validation is not None:
                on_validation(list(curve.rows))
            return curve.stale(config["patience"])

    outcome = loop.train_loop(
        trainer.step,
        run,
        state=state,
        identity=identity,
        settings=config,
        desc=STAGE,
        after_step=after_step,
    )
    generator, saved_step = trainer.generator, outcome.step
    rows = [] if curve is None else list(curve.rows)
    if outcome.finished and best is not None:
        if best.step is not None and best.step != outcome.step:
            generator.load_state_dict(best.state)
            saved_step = best.step
        which = "no finite point" if best.step is None else "the best validation point"
        log.info(
            "%s: the saved generator is step %d's (%s; last step %d)",
            STAGE,
            saved_step,
            which,
            outcome.step,
        )
        rows = [{**row, "saved": int(row["step"] == saved_step)} for row in rows]
    if outcome.finished:
        codes = calibration_codes(run.seed, run.latent_dim, config["calibration_samples"])
        loop.calibrate_batch_norm(generator, codes)
    return GanResult(
        loop._finish_generator(generator),
        trainer.critic.cpu().eval(),
        outcome.log,
        outcome.start_step,
        outcome.step,
        outcome.finished,
        validation=rows,
        stopped_early=outcome.stopped_early,
        saved_step=saved_step,
    )
