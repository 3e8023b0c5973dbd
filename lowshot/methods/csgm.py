"""CSGM (Bora et al. 2017): latent search in the WGAN-GP generator, best of several restarts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lowshot.methods.base import RecoveryMethod, RecoveryTask, register
from lowshot.methods.engine import StageResult, optimise_latent, standard_normal, working_copy
from lowshot.seeds import derive_seed


@register
class CSGM(RecoveryMethod):
    """``restarts`` starts z ~ N(0, I) per image (sub-stream ("restart", r)), ``steps`` Adam
    steps on z at ``lr`` each, all restarts of all images in one batch; per image the
    restart with the lowest final measurement loss wins (``best_restart``)."""

    kind = "csgm"
    description = "CSGM: z alone in the WGAN-GP generator, best of several restarts."
    settings = {
        "steps": {
            "description": "Adam steps over z per restart.",
            "type": "integer",
            "minimum": 1,
            "default": 1600,
        },
        "lr": {
            "description": "Learning rate.",
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 5.0e-2,
        },
        "restarts": {
            "description": "Random restarts; the lowest measurement loss wins.",
            "type": "integer",
            "minimum": 1,
            "default": 3,
        },
    }
    model = "gan"
    label = "GAN (CSGM)"
    style = {"color": "0.0", "linestyle": "--", "marker": "s"}
    order = 20

    @classmethod
    def restarts(cls, settings: Mapping[str, Any]) -> int:
        return int(settings["restarts"])

    @classmethod
    def run(cls, task: RecoveryTask) -> StageResult:
        return search(task, task.settings, working_copy(task.model, "stored", task.y.device))


def search(task: RecoveryTask, settings: Mapping[str, Any], net: nn.Module) -> StageResult:
    """All restarts of all images as one z-only batch (row r * N + i), then the winners.

    settings: CSGM's (steps, lr, restarts); net: a ``working_copy`` of the generator on
    the device of ``task.y``.
    """
    y, seeds = task.y, task.seeds
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
        task.operator,
        y.repeat(restarts, 1),
        z0,
        steps=settings["steps"],
        lr=settings["lr"],
        desc=f"csgm z ({restarts} restarts)",
        **task.options,
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
