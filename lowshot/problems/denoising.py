"""Denoising (beyond the paper): A the identity, y = x + eta."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lowshot.config import ConfigError
from lowshot.problems.base import (
    IMAGE_SHAPE,
    IMAGE_SIZE,
    Operator,
    ProblemSpec,
    check_back_projection,
    register,
)


@register
class Denoising(Operator):
    """Denoising: A = identity, y = vec(x) + eta (problem name ``denoise``).

    y (N, 12288) is the image flattened channel-major, in [-1, 1] before the noise. The
    noise is the section's ``noise_std``, as for every problem, and its schema default is
    0: the user sets ``problems.denoising.noise_std`` (e.g. 0.1). Asking for denoising
    with noise_std 0 (y = x, nothing to recover) is a config error. ``ratio`` None.

    A⁺ = A = I, so ``back_project(x, y)`` is y itself, whatever x: under noise, the noisy
    observation.
    """

    kind = "denoising"
    description = (
        "Denoising, A the identity: set problems.denoising.noise_std > 0 (the default 0 "
        "leaves nothing to remove); beyond the paper."
    )
    settings = {
        "enabled": {
            "description": (
                "Run the denoising problem (needs noise_std > 0). Default false (our "
                "choice: the paper has no denoising, so its grid is unchanged)."
            ),
            "type": "boolean",
            "default": False,
        },
    }
    order = 40

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.name = "denoise"
        self.m = IMAGE_SIZE

    @classmethod
    def problem_names(cls, section: Mapping[str, Any]) -> list[str]:
        """``["denoise"]`` when enabled; ``ConfigError`` when enabled without noise."""
        if not section["enabled"]:
            return []
        if section["noise_std"] == 0:
            raise ConfigError(
                "problems.denoising.noise_std: 0 leaves denoising nothing to do (y = x); "
                "set it > 0 (e.g. 0.1) or problems.denoising.enabled: false"
            )
        return ["denoise"]

    @classmethod
    def parse(cls, name: str) -> ProblemSpec | None:
        return ProblemSpec(cls.kind, name) if name == "denoise" else None

    @classmethod
    def label(cls, spec: ProblemSpec) -> str:
        return "denoising"

    @classmethod
    def build(cls, spec: ProblemSpec, *, config_seed: int, device: str | torch.device) -> Denoising:
        del spec, config_seed  # one deterministic operator: nothing to seed
        return cls(device=device)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, 64, 64) -> vec(x) (N, 12288)."""
        return x.flatten(1)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """y (N, 12288) -> the image (N, 3, 64, 64)."""
        return y.reshape(y.shape[0], *IMAGE_SHAPE)

    def pseudo_inverse(self, r: torch.Tensor) -> torch.Tensor:
        """r (N, 12288) -> the image (N, 3, 64, 64): A⁺ = I."""
        return self.A_adjoint(r)

    def back_project(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y as images (N, 3, 64, 64), exactly (x + (y - x) would round): the only image
        with A u = y."""
        check_back_projection(self, x, y)
        return self.A_adjoint(y).to(x.dtype).clone()
