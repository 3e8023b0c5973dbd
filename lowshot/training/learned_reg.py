"""The learned regulariser of CS-DIP (Van Veen et al. 2018): the Gaussian over the
untrained network's per-layer weight means, learned from S examples.

CS-DIP's recipe (github davevanveen/compsensing_dip): ``cs_dip_stats.py`` fits one network
per run (RMSprop, lr 1e-3, momentum 0.9, restarts) and saves, per run, the weights of the
iterate with the lowest MSE against the true image over all its iterations and restarts
(``np.save`` of every layer whenever a new minimum is reached); ``learned_reg/stats.py``
and ``stats_utils.py`` estimate mu and Sigma from those saved weights, and ``cs_dip.py``
penalises ``layer_means = [layer.mean() for layer in net.parameters()]``. Here:

- one DIP fit per example, all S in one batch (``optimise_joint``, one theta per example),
  with the recovery recipe of ``recover.learned_reg`` (the untrained baseline's: its
  ``init``, a fixed z, ``steps`` RMSprop steps at ``lr`` with ``momentum``) on the *fully
  observed* example (A = I: the examples are known images; CS-DIP's stored runs fitted
  compressive measurements of theirs, ``meas8000``);
- the fitted network's per-layer means, those of the FINAL iterate (not, as in CS-DIP,
  of the lowest-MSE one: the engine returns the final parameters; with A = I the fit's
  loss is that MSE, and ``fits.csv`` records the final iterate's loss and PSNR), one row
  (L,) per example;
- mu and Sigma: the sample mean and the shrunk covariance of the S rows
  (``lowshot.methods.learned_reg.layer_gaussian``). CS-DIP's ``stats_utils.py`` instead
  averages, over runs, a covariance of sampled single weights across layers within one
  run; the covariance of the layer means across fitted networks is the quantity its
  penalty (and the paper's prior on the means) assumes, so we estimate it directly.

Seeds: example i's draws derive from (the job's seed, "example", i), never from S, so
the subsets being nested, the S = 5 fits are the first five of the S = 10 fits.
The fit is one batched optimisation of minutes on a GPU; it is not checkpointed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lowshot.io import LearnedRegStats
from lowshot.methods.learned_reg import FIT_KEYS, layer_gaussian, layer_means
from lowshot.methods.untrained import fit_untrained
from lowshot.metrics import psnr
from lowshot.models import Generator
from lowshot.problems import IMAGE_SIZE, Operator, ProblemSpec
from lowshot.seeds import derive_seed
from lowshot.training import loop
from lowshot.training.loop import TrainingRun

log = logging.getLogger(__name__)


class FullObservation(Operator):
    """A = I on flattened images, (N, 3, 64, 64) -> (N, 3 * 64 * 64): fitting an example
    itself. Not a workflow problem (not registered)."""

    kind = "full_observation"

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.name = "full_observation"
        self.m = IMAGE_SIZE

    @classmethod
    def problem_names(cls, section: Mapping[str, Any]) -> list[str]:
        return []

    @classmethod
    def parse(cls, name: str) -> ProblemSpec | None:
        return None

    @classmethod
    def build(cls, spec: ProblemSpec, *, config_seed: int, device: str | torch.device) -> Operator:
        raise TypeError("FullObservation is not a workflow problem")

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(-1, 3, 64, 64)


@dataclass
class LearnedRegResult:
    """A fit of the learned regulariser: ``stats`` (what the model file holds) and ``log``,
    one row per example: example (its position in the subset), fit_loss (0.5 ||G - x||^2
    of the final iterate, whose parameters the statistics use), fit_psnr (dB of that G
    against x)."""

    stats: LearnedRegStats
    log: list[dict[str, float]]


def fit_learned_reg(
    images: torch.Tensor | np.ndarray, settings: Mapping[str, Any], run: TrainingRun
) -> LearnedRegResult:
    """Fit the untrained network to each example and the Gaussian to the layer means.

    images: the S examples, (S, 3, 64, 64) float in [-1, 1] or uint8 (S, 64, 64, 3), S >= 2.
    settings: ``FIT_KEYS`` (``steps``, ``lr``, ``momentum``, ``init``, ``shrinkage``), all required
    (``lowshot.methods.learned_reg.fit_settings`` fills a ``recover.learned_reg`` section
    in); other keys are an error. run: latent size, seed (the job's), device, precision,
    progress and network width; its checkpoint fields are not used.
    Raises when a fit diverges (a non-finite loss or output).
    """
    missing = [key for key in FIT_KEYS if key not in settings]
    unknown = sorted(set(settings) - set(FIT_KEYS))
    if missing or unknown:
        raise ValueError(
            f"learned_reg fit settings: missing {missing}, unknown {unknown}; expected "
            f"{list(FIT_KEYS)} (lowshot.methods.learned_reg.fit_settings)"
        )
    device = loop._device(run.device)
    targets = loop._to_float(loop._as_images(images), device)
    shots = targets.shape[0]
    if shots < 2:
        raise ValueError(f"the learned regulariser needs at least two examples, got {shots}")
    seeds = [derive_seed(run.seed, "example", i) for i in range(shots)]
    fitted, params = fit_untrained(
        seeds,
        Generator(run.latent_dim, run.width),
        FullObservation(device),
        targets.flatten(1),
        settings,
        precision=run.precision,
        progress=run.progress,
        desc=f"learned_reg S={shots}",
    )
    if fitted.diverged.any():
        bad = fitted.diverged.nonzero().flatten().tolist()
        raise ValueError(f"learned_reg: the fits of examples {bad} diverged (lr too large?)")
    means = layer_means(params).detach().cpu().double()
    mean, covariance = layer_gaussian(means, settings["shrinkage"])
    quality = psnr(fitted.images.detach().cpu(), targets.cpu())
    rows = [
        {"example": i, "fit_loss": float(loss), "fit_psnr": float(value)}
        for i, (loss, value) in enumerate(zip(fitted.loss.cpu().tolist(), quality, strict=True))
    ]
    log.info(
        "learned_reg: %d fits, fit PSNR %.2f dB (min %.2f), %d layers",
        shots,
        float(np.mean(quality)),
        float(np.min(quality)),
        means.shape[1],
    )
    stats = LearnedRegStats(
        layers=tuple(params),
        mean=mean,
        covariance=covariance,
        layer_means=means,
        latent_dim=run.latent_dim,
        width=run.width,
        attrs={key: settings[key] for key in FIT_KEYS},
    )
    return LearnedRegResult(stats, rows)
