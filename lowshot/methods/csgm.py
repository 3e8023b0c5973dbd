"""CSGM (Bora et al. 2017): latent search in the WGAN-GP generator, best of several restarts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lowshot.methods.base import RecoveryMethod, RecoveryTask, register
from lowshot.methods.engine import (
    StageResult,
    latent_search_settings,
    search_latent,
    standard_normal,
    working_copy,
)
from lowshot.seeds import derive_seed


@register
class CSGM(RecoveryMethod):
    """``restarts`` starts z ~ N(0, I) per image (sub-stream ("restart", r)), ``steps`` Adam
    steps on z at ``lr`` each, all restarts of all images in one batch; per image the
    restart with the lowest final measurement loss wins. The recipe is CSGM's own, from its
    authors' CelebA script (``lowshot.methods.engine.LATENT_SEARCH``)."""

    kind = "csgm"
    description = "CSGM: z alone in the WGAN-GP generator, best of several restarts."
    settings = latent_search_settings()
    model = "gan"
    label = "GAN (CSGM)"
    style = {"color": "0.0", "linestyle": "--", "marker": "s"}
    order = 20

    @classmethod
    def restarts(cls, settings: Mapping[str, Any]) -> int:
        return int(settings["restarts"])

    @classmethod
    def run(cls, task: RecoveryTask) -> StageResult:
        net = working_copy(task.model, "stored", task.y.device)
        starts = [
            standard_normal([derive_seed(s, "restart", r) for s in task.seeds], net.latent_dim)
            for r in range(task.settings["restarts"])
        ]
        return search_latent(
            net,
            task.operator,
            task.y,
            starts,
            steps=task.settings["steps"],
            lr=task.settings["lr"],
            desc="csgm z",
            **task.options,
        )
