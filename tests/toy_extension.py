"""A toy method and a toy problem, each one class registered from this file alone.

``tests/test_extension.py`` names this file in the config's ``plugins`` and runs both
through the workflow: nothing in the package, the rules or the schema file names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lowshot import methods, problems
from lowshot.methods.base import RecoveryTask
from lowshot.methods.engine import StageResult, measurement_loss
from lowshot.problems import IMAGE_SHAPE, IMAGE_SIZE, Operator, ProblemSpec


@methods.register
class ToyBackProjection(methods.RecoveryMethod):
    """x = clip(scale * A^T y / m): for Gaussian A, E[A^T A] = m I, so a crude estimate."""

    kind = "toy-backprojection"
    description = "Toy: the clipped, scaled back-projection A^T y."
    settings = {
        "scale": {
            "description": "Factor on A^T y / m.",
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 1.0,
        },
    }
    label = "Toy back-projection"
    style = {"color": "tab:green", "linestyle": "-", "marker": "x"}

    @classmethod
    def run(cls, task: RecoveryTask) -> StageResult:
        operator, y = task.operator, task.y
        n = y.shape[0]
        x = (task.settings["scale"] * operator.A_adjoint(y) / operator.m).clamp(-1.0, 1.0)
        loss = measurement_loss(operator, x, y)
        return StageResult(
            images=x,
            z=torch.zeros(n, task.latent_dim, device=y.device),
            loss=loss,
            iterations=torch.zeros(n, dtype=torch.int64, device=y.device),
            diverged=~torch.isfinite(loss),
        )


@problems.register
class ToyHalfImage(Operator):
    """Observe the top half of the image (rows 0-31), the bottom half is lost."""

    kind = "toy_half"
    description = "Toy: the top half of the image."
    settings = {"enabled": {"description": "Run it.", "type": "boolean", "default": False}}

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.name, self.m, self.device = "toy-half", IMAGE_SIZE // 2, torch.device(device)

    @classmethod
    def problem_names(cls, section: Mapping[str, Any]) -> list[str]:
        return ["toy-half"] if section["enabled"] else []

    @classmethod
    def parse(cls, name: str) -> ProblemSpec | None:
        return ProblemSpec(cls.kind, name) if name == "toy-half" else None

    @classmethod
    def label(cls, spec: ProblemSpec) -> str:
        return "toy: top half"

    @classmethod
    def build(cls, spec: ProblemSpec, *, config_seed: int, device: str | torch.device):
        return cls(device)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :32, :].flatten(1)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        top = y.reshape(y.shape[0], IMAGE_SHAPE[0], 32, IMAGE_SHAPE[2])
        return torch.cat([top, torch.zeros_like(top)], dim=2)
