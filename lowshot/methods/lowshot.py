"""The paper's method: a generator pre-trained on S examples (eq. 1), z alone (eq. 2) from
the Gaussian fitted to its codes, then z and theta jointly (eq. 3)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lowshot.gaussian import gaussian_from_normal
from lowshot.methods.base import (
    REPLICATE_NUMBER,
    MethodSpec,
    RecoveryMethod,
    RecoveryTask,
    register,
    replicate_suffix,
)
from lowshot.methods.engine import (
    StageResult,
    joint_stage_settings,
    latent_search_settings,
    optimise_joint,
    search_latent,
    stack_parameters,
    standard_normal,
    working_copy,
)
from lowshot.seeds import derive_seed

# Replicate 1 (the paper's one model per S) has no suffix; replicate r >= 2 has "-r<r>"
# in the method name and "_r<r>" in the model folder (``replicate_suffix``).
_NAME = re.compile(
    rf"^lowshot-(?P<loss>l2|mmd)-S(?P<shots>[0-9]+)(?:-r(?P<replicate>{REPLICATE_NUMBER}))?$"
)
_LOSS_ORDER = {"mmd": 0, "l2": 1}
_LOSS_LABELS = {"mmd": "MMD", "l2": "ℓ2"}


@register
class Lowshot(RecoveryMethod):
    """``lowshot-<loss>-S<shots>[-r<r>]``: one instance per pre-trained model of the config
    (``lowshot.losses`` x ``lowshot.shots`` x ``lowshot.replicates``).

    The latent search (eq. 2) has ``restarts`` starts z = mean + L eps_r, eps_r ~ N(0, I)
    from the image's seed (sub-stream ("restart", r)), (mean, L L^T) the Gaussian fitted to
    the model's codes, ``z_steps`` Adam steps on z at ``z_lr`` with theta fixed each, the
    lowest final measurement loss winning; then ``joint_steps`` steps on z (``joint_z_lr``)
    and a per-image theta (``joint_theta_lr``) from there (eq. 3). Both stages follow the
    recipes every method shares (``lowshot.methods.engine``): the same search budget as
    CSGM, the same joint stage as IAGAN. Every low-shot model of a replicate draws the same
    eps per (problem, image) (``seed_name``), so differences across S and loss are paired. The
    generator runs with its stored batch-norm statistics.
    """

    kind = "lowshot"
    description = "Low-shot recovery: z alone (eq. 2), then z and theta jointly (eq. 3)."
    settings = {**latent_search_settings("z_"), **joint_stage_settings("joint_")}
    model = "lowshot"
    order = 0

    @classmethod
    def method_names(cls, config: Mapping[str, Any]) -> list[str]:
        """``lowshot-<loss>-S<shots>`` per loss and S, then the same with ``-r<r>`` for
        every replicate r = 2 .. ``lowshot.replicates`` (default 1: none)."""
        lowshot = config["lowshot"]
        return [
            f"lowshot-{loss}-S{shots}{replicate_suffix(replicate, '-')}"
            for replicate in range(1, lowshot.get("replicates", 1) + 1)
            for loss in lowshot["losses"]
            for shots in sorted(lowshot["shots"])
        ]

    @classmethod
    def parse(cls, name: str) -> MethodSpec | None:
        match = _NAME.match(name)
        if not match:
            return None
        replicate = int(match["replicate"]) if match["replicate"] else 1
        return MethodSpec(cls.kind, name, match["loss"], int(match["shots"]), replicate)

    @classmethod
    def seed_name(cls, spec: MethodSpec) -> str:
        """``lowshot`` for replicate 1, ``lowshot-r<r>`` for replicate r: every model of a
        replicate (any loss and S) starts recovery from the same eps per (problem, image),
        so comparisons across S and loss are paired within a replicate, and replicates
        are independent draws."""
        return cls.kind + replicate_suffix(spec.replicate or 1, "-")

    @classmethod
    def restarts(cls, settings: Mapping[str, Any]) -> int:
        return int(settings["restarts"])

    @classmethod
    def method_label(cls, spec: MethodSpec) -> str:
        """``10-shot (MMD)``; replicate r >= 2 ``10-shot (MMD, r2)``."""
        loss = _LOSS_LABELS.get(spec.loss or "", spec.loss)
        replicate = "" if (spec.replicate or 1) == 1 else f", r{spec.replicate}"
        return f"{spec.shots}-shot ({loss}{replicate})"

    @classmethod
    def line_style(cls, spec: MethodSpec, siblings: Sequence[MethodSpec]) -> dict[str, Any]:
        """Light to dark with the number of shots: more data, darker line."""
        import seaborn as sns

        shots = sorted({s.shots for s in siblings if s.shots is not None})
        palette = sns.color_palette("flare", n_colors=max(len(shots), 1))
        return {"color": palette[shots.index(spec.shots)], "linestyle": "-", "marker": "o"}

    @classmethod
    def sort_key(cls, spec: MethodSpec) -> tuple[Any, ...]:
        return (_LOSS_ORDER.get(spec.loss or "", 9), spec.shots or 0, spec.replicate or 1)

    @classmethod
    def run(cls, task: RecoveryTask) -> StageResult:
        model, settings, y = task.model, task.settings, task.y
        net = working_copy(model.generator, "stored", y.device)
        starts = [
            initial_codes(model.mean, model.covariance, task.seeds, restart)
            for restart in range(settings["restarts"])
        ]
        first = search_latent(
            net,
            task.operator,
            y,
            starts,
            steps=settings["z_steps"],
            lr=settings["z_lr"],
            desc="lowshot z",
            **task.options,
        )
        return optimise_joint(
            net,
            stack_parameters(net, y.shape[0]),
            task.operator,
            y,
            first.z,
            steps=settings["joint_steps"],
            theta_lr=settings["joint_theta_lr"],
            z_lr=settings["joint_z_lr"],
            previous=first,
            desc="lowshot joint",
            **task.options,
        )


def model_folder(spec: MethodSpec) -> str:
    """The folder under ``results/models/lowshot/`` of a low-shot instance's model:
    ``<loss>_S<shots>``, ``<loss>_S<shots>_r<r>`` for replicate r >= 2 (its suffix is the
    rule pretrain_lowshot's ``replicate`` wildcard, ``REPLICATE_FOLDER_SUFFIX``)."""
    return f"{spec.loss}_S{spec.shots}{replicate_suffix(spec.replicate or 1, '_')}"


def initial_codes(
    mean: torch.Tensor, covariance: torch.Tensor, seeds: Sequence[int], restart: int = 0
) -> torch.Tensor:
    """A start of the latent search per image: mean + L eps, eps ~ N(0, I) drawn in float64
    from the image's sub-stream ("restart", restart) -> (N, latent) float32 on the CPU."""
    eps = standard_normal(
        [derive_seed(s, "restart", restart) for s in seeds], len(mean), torch.float64
    )
    return gaussian_from_normal(mean, covariance, eps)
