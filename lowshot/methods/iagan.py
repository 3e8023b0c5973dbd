"""IAGAN (Abu Hussein et al. 2019): CSGM, then image-adaptive joint tuning of z and theta,
then the back-projection onto {x : A x = y}."""

from __future__ import annotations

import torch

from lowshot.methods.base import RecoveryMethod, RecoveryTask, register
from lowshot.methods.engine import (
    StageResult,
    joint_stage_settings,
    measurement_loss,
    optimise_joint,
    stack_parameters,
    working_copy,
)
from lowshot.problems import Operator

# The values of IAGAN's ``back_project`` setting.
BACK_PROJECTION = ("noiseless", "always", "never")


@register
class IAGAN(RecoveryMethod):
    """Continues the CSGM job's own result (``starts_from``: same problem, same images,
    its winning z), so that IAGAN - CSGM per image is the image-adaptive stage alone, and
    the CSGM work is not done twice. Then ``joint_steps`` Adam steps on z (``joint_z_lr``)
    and a per-image copy of the WGAN-GP theta (``joint_theta_lr``), IAGAN's own recipe
    from its authors' code (``lowshot.methods.engine.JOINT_STAGE``; no other method
    shares it).

    With ``back_project`` ("noiseless", the default: on noiseless problems, as IAGAN's
    code returns it; see the setting) the image returned is that stage's image x
    back-projected, x + A⁺(y - A x) (``Operator.back_project``),
    clipped to [-1, 1]; its ``measurement_loss`` is that returned image's, and ``z`` stays
    the image-adaptive stage's code (the back-projected image is no G(z))."""

    kind = "iagan"
    description = (
        "IAGAN: CSGM's result, then z and theta jointly (image-adaptive), then the "
        "back-projection x + A⁺(y - A x)."
    )
    settings = {
        **joint_stage_settings(),
        "back_project": {
            "description": (
                "When to return the image-adaptive result back-projected, x + A⁺(y - A x) "
                "with A⁺ the pseudo-inverse (the nearest image with A x = y; each "
                "problem's exact Operator.back_project), clipped to [-1, 1]: 'noiseless' "
                "(default) on problems without measurement noise, 'always', or 'never'. "
                "IAGAN's code (github shadyabh/IAGAN, main.py) returns I_IA_BP = A_dagY + "
                "I_IA - A_dag(A(I_IA)), A_dagY = A_dag(y), and saves it clipped to the "
                "generator's range (IAGAN.py, save_imag); their A_dag is the adjoint for "
                "their partial-FFT CS and bicubic up-sampling for their super-resolution, "
                "here A⁺ is each problem's exact pseudo-inverse. On the paper's noiseless "
                "grid 'noiseless' and 'always' are the same. Ours: not under noise by "
                "default, where their code projects onto the noisy y too ('always'): that "
                "fits the noise exactly in A's row space (for denoising it returns y)."
            ),
            "type": "string",
            "enum": list(BACK_PROJECTION),
            "default": "noiseless",
        },
    }
    starts_from = "csgm"
    model = "gan"
    label = "IAGAN"
    style = {"color": "0.25", "linestyle": "-.", "marker": "D"}
    order = 30

    @classmethod
    def run(cls, task: RecoveryTask) -> StageResult:
        net = working_copy(task.model, "stored", task.y.device)
        first = StageResult.from_result(task.start, task.y.device)
        adapted = optimise_joint(
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
        if not back_projects(task.settings["back_project"], task.noise_std):
            return adapted
        return back_projected(adapted, task.operator, task.y)


def back_projects(when: str, noise_std: float) -> bool:
    """Whether IAGAN back-projects: ``when`` one of ``BACK_PROJECTION``, ``noise_std`` >= 0
    the problem's noise level."""
    if when not in BACK_PROJECTION:
        raise ValueError(f"back_project must be one of {BACK_PROJECTION}, not {when!r}")
    return when == "always" or (when == "noiseless" and noise_std == 0)


def back_projected(stage: StageResult, operator: Operator, y: torch.Tensor) -> StageResult:
    """``stage`` with its images (N, 3, 64, 64) replaced by their back-projection onto
    {x : A x = y} (y (N, m)), clipped to [-1, 1], and its loss by theirs, 0.5 ||A x - y||^2
    (N,); z, iterations and divergence flags unchanged. An image that never had a finite
    iterate (NaN) stays NaN."""
    with torch.no_grad():
        images = operator.back_project(stage.images, y).clamp(-1.0, 1.0)
        loss = measurement_loss(operator, images, y)
    return StageResult(
        images=images,
        z=stage.z,
        loss=loss,
        iterations=stage.iterations,
        diverged=stage.diverged,
    )
