"""IAGAN (Abu Hussein et al. 2019): CSGM, then image-adaptive joint tuning of z and theta."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lowshot.methods import csgm
from lowshot.methods.base import RecoveryMethod, RecoveryTask, register
from lowshot.methods.engine import StageResult, optimise_joint, stack_parameters, working_copy


@register
class IAGAN(RecoveryMethod):
    """CSGM with the ``csgm`` settings (its own seeds), then ``joint_steps`` Adam steps on z
    and a per-image copy of the WGAN-GP theta at ``joint_lr`` from the winning z."""

    kind = "iagan"
    description = "IAGAN: CSGM, then z and theta jointly (image-adaptive)."
    settings = {
        "joint_steps": {
            "description": "Adam steps over z and theta after CSGM.",
            "type": "integer",
            "minimum": 0,
            "default": 350,
        },
        "joint_lr": {
            "description": "Learning rate of the joint steps.",
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 1.0e-4,
        },
    }
    settings_from = ("csgm",)
    model = "gan"
    label = "IAGAN"
    style = {"color": "0.25", "linestyle": "-.", "marker": "D"}
    order = 30

    @classmethod
    def restarts(cls, settings: Mapping[str, Any]) -> int:
        return int(settings["csgm"]["restarts"])

    @classmethod
    def run(cls, task: RecoveryTask) -> StageResult:
        net = working_copy(task.model, "stored", task.y.device)
        first = csgm.search(task, task.settings["csgm"], net)
        return optimise_joint(
            net,
            stack_parameters(net, task.y.shape[0]),
            task.operator,
            task.y,
            first.z,
            steps=task.settings["joint_steps"],
            lr=task.settings["joint_lr"],
            previous=first,
            desc="iagan joint",
            **task.options,
        )
