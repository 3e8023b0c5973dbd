"""IAGAN (Abu Hussein et al. 2019): CSGM, then image-adaptive joint tuning of z and theta."""

from __future__ import annotations

from lowshot.methods.base import RecoveryMethod, RecoveryTask, register
from lowshot.methods.engine import (
    StageResult,
    joint_stage_settings,
    optimise_joint,
    stack_parameters,
    working_copy,
)


@register
class IAGAN(RecoveryMethod):
    """Continues the CSGM job's own result (``starts_from``: same problem, same images,
    its winning z), so that IAGAN - CSGM per image is the image-adaptive stage alone, and
    the CSGM work is not done twice. Then ``joint_steps`` Adam steps on z (``joint_z_lr``)
    and a per-image copy of the WGAN-GP theta (``joint_theta_lr``), the joint recipe that
    every method shares (``lowshot.methods.engine.JOINT_STAGE``, IAGAN's own code)."""

    kind = "iagan"
    description = "IAGAN: CSGM's result, then z and theta jointly (image-adaptive)."
    settings = joint_stage_settings()
    starts_from = "csgm"
    model = "gan"
    label = "IAGAN"
    style = {"color": "0.25", "linestyle": "-.", "marker": "D"}
    order = 30

    @classmethod
    def run(cls, task: RecoveryTask) -> StageResult:
        net = working_copy(task.model, "stored", task.y.device)
        first = StageResult.from_result(task.start, task.y.device)
        return optimise_joint(
            net,
            stack_parameters(net, task.y.shape[0]),
            task.operator,
            task.y,
            first.z,
            steps=task.settings["joint_steps"],
            theta_lr=task.settings["joint_theta_lr"],
            z_lr=task.settings["joint_z_lr"],
            previous=first,
            desc="iagan joint",
            **task.options,
        )
