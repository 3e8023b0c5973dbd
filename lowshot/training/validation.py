"""The WGAN-GP generator's validation curve: CSGM PSNR on validation faces during training.

The paper gives no GAN iteration count (``gan.iterations`` is ours). With
``gan.validate_every`` > 0 the training measures, every that many generator steps and at
the last one, how well CSGM recovers ``gan.validation_faces`` of the split's validation
faces (never trained on, never test faces) with the current generator, so that the
iteration count can be chosen by evidence (where the curve stops rising), and
``gan.patience`` can end training there.

With ``gan.patience`` > 0 the training keeps (``BestGenerator``, on the CPU, checkpointed)
the generator of the curve's best point, and that generator, not the last step's, is the
one it returns, whether ``patience`` ended the run or it reached ``gan.iterations``: the
saved generator is the one the curve's best point scored. With ``patience`` 0 the curve is
only a record: the last step's generator is returned, as without the curve.

One point of the curve: a copy of the generator with its BN statistics calibrated
exactly as at the end of training (the same ``gan.calibration_samples`` codes, so the
generator the job saves is exactly the one its point scored), then ``recover("csgm", ...)``
on ``VALIDATION_PROBLEM`` with the csgm method's default settings except ``steps`` =
``gan.validation_steps`` and ``VALIDATION_RESTARTS`` restart (cheaper than the recovery's
two; every point uses the same starts, so points are paired). The operator and the
starts come from the run's seed, noise-free measurements. The training's own networks,
optimisers and random streams are not touched: a run with validation trains bit for bit
as one without (until ``patience`` stops it).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from lowshot.metrics import psnr
from lowshot.models import Generator
from lowshot.seeds import derive_seed
from lowshot.training import loop
from lowshot.training.loop import TrainingRun

log = logging.getLogger(__name__)

VALIDATION_PROBLEM = "cs-0.1"
VALIDATION_METHOD = "csgm"
VALIDATION_RESTARTS = 1
# The curve's CSV columns (``ValidationCurve.rows``).
COLUMNS = ("step", "psnr", "psnr_std", "diverged")


class ValidationCurve:
    """The curve so far: one row per point (``COLUMNS``). Checkpointed with the networks
    (``state_dict``/``load_state_dict``), so a resumed run continues it."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rows = [dict(row) for row in state["rows"]]

    def best(self) -> int | None:
        """Index of the first point with the highest finite PSNR (None: no such point)."""
        values = [row["psnr"] for row in self.rows]
        finite = [(value, -i) for i, value in enumerate(values) if math.isfinite(value)]
        return -max(finite)[1] if finite else None

    def stale(self, patience: int) -> bool:
        """Whether the last ``patience`` points all failed to beat the best one (strictly
        higher mean PSNR); never for ``patience`` 0 (early stopping off)."""
        if patience <= 0 or not self.rows:
            return False
        best = self.best()
        since = len(self.rows) if best is None else len(self.rows) - 1 - best
        return since >= patience


class BestGenerator:
    """The generator of the curve's best point so far (``ValidationCurve.best``): its
    state (parameters and BN buffers, as in training: not calibrated) copied to the CPU,
    and its step (None: no finite point yet). Checkpointed with the networks
    (``state_dict``/``load_state_dict``), so a resumed run keeps it. Kept only with
    ``gan.patience`` > 0."""

    def __init__(self) -> None:
        self.step: int | None = None
        self.state: dict[str, torch.Tensor] = {}

    def keep(self, generator: Generator, step: int) -> None:
        """Copy ``generator``'s state (to the CPU) as the best one, from ``step``."""
        self.step = int(step)
        self.state = {
            name: value.detach().to("cpu", copy=True)
            for name, value in generator.state_dict().items()
        }

    def state_dict(self) -> dict[str, Any]:
        return {"step": -1 if self.step is None else self.step, "generator": dict(self.state)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        step = int(state["step"])
        self.step = None if step < 0 else step
        self.state = {name: value.clone() for name, value in state["generator"].items()}


class GanValidation:
    """One point of the curve per call (module docstring).

    images: the validation faces, (N, 3, 64, 64) float in [-1, 1] or uint8 (N, 64, 64,
    3), N >= ``settings["validation_faces"]`` (the first that many are used); settings:
    the checked ``gan`` section; run: the training's run (seed, latent size, precision);
    device: the training's device.
    """

    def __init__(
        self,
        images: torch.Tensor | np.ndarray,
        settings: Mapping[str, Any],
        run: TrainingRun,
        device: torch.device,
    ) -> None:
        from lowshot.problems import GaussianNoise, make_operator, measure, parse_problem

        n = int(settings["validation_faces"])
        faces = loop._as_images(images)
        if faces.shape[0] < n:
            raise ValueError(
                f"gan.validation_faces={n} but only {faces.shape[0]} validation faces "
                "were given (split.n_validation); lower gan.validation_faces"
            )
        self.truth = loop._to_float(faces[:n], torch.device("cpu"))
        self.steps = int(settings["validation_steps"])
        self.device, self.precision, self.latent_dim = device, run.precision, run.latent_dim
        seed = derive_seed(run.seed, "gan-validation")
        self.operator = make_operator(
            parse_problem(VALIDATION_PROBLEM), config_seed=seed, device=device
        )
        self.y = measure(self.operator, GaussianNoise(0.0), self.truth.to(device), [0] * n)
        self.seeds = [derive_seed(seed, VALIDATION_METHOD, i) for i in range(n)]
        self.identity = {
            "validate_every": int(settings["validate_every"]),
            "validation_faces": n,
            "validation_steps": self.steps,
            "patience": int(settings["patience"]),
            "problem": VALIDATION_PROBLEM,
            "restarts": VALIDATION_RESTARTS,
            "data": loop._fingerprint(self.truth),
        }

    def __call__(
        self, generator: Generator, calibration: Iterable[torch.Tensor], step: int
    ) -> dict[str, float]:
        """The point of ``generator`` (left unchanged) at ``step``: its BN statistics
        calibrated on ``calibration`` in a copy, then CSGM on the validation faces."""
        from lowshot.methods import recover

        started = time.perf_counter()
        model = copy.deepcopy(generator)
        loop.calibrate_batch_norm(model, calibration)
        model.norm = "stored"
        model.eval()
        model.requires_grad_(False)
        result = recover(
            VALIDATION_METHOD,
            self.operator,
            self.y,
            seeds=self.seeds,
            settings={"steps": self.steps, "restarts": VALIDATION_RESTARTS},
            model=model,
            latent_dim=self.latent_dim,
            device=self.device,
            precision=self.precision,
            progress=False,
        )
        values = psnr(result.images.float(), self.truth)
        ok = np.isfinite(values) & ~np.asarray(result.diverged, bool)
        row = {
            "step": int(step),
            "psnr": float(values[ok].mean()) if ok.any() else math.nan,
            "psnr_std": float(values[ok].std()) if ok.any() else math.nan,
            "diverged": int((~ok).sum()),
        }
        log.info(
            "validation at step %d: CSGM %s PSNR %.2f dB (sd %.2f, %d diverged) on %d faces, "
            "%.1f s",
            step,
            VALIDATION_PROBLEM,
            row["psnr"],
            row["psnr_std"],
            row["diverged"],
            len(values),
            time.perf_counter() - started,
        )
        return row
