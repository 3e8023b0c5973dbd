"""Colorization (the paper's §3): y = the ITU-R 601-2 luma of each pixel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from lowshot.problems.base import IMAGE_SHAPE, Operator, ProblemSpec, register

# ITU-R 601-2 luma weights (R, G, B): what PIL's ``Image.convert('L')`` applies.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


@register
class Colorization(Operator):
    """Colorization: y = 0.299 R + 0.587 G + 0.114 B per pixel (problem name ``colorization``).

    Output (N, 64 * 64), the grey image flattened row-major (``as_image`` reshapes it to
    (N, 1, 64, 64)). The weights sum to 1, so luma commutes with the affine map
    u -> 2u - 1 between [0, 1] and [-1, 1]: the luma of an image in [-1, 1] is the [-1, 1]
    version of its luma in [0, 1], and y stays in [-1, 1]. This is the transform of PIL's
    ``Image.convert('L')`` (which in addition rounds to uint8).

    Per pixel A is the row w = (0.299, 0.587, 0.114), so A Aᵀ = ||w||² I and the
    pseudo-inverse is closed-form: A⁺ r = w r / ||w||² at each pixel.
    """

    kind = "colorization"
    description = (
        "Colorization, A the ITU-R 601-2 luma transform (PIL convert('L'); the paper's §3)."
    )
    settings = {
        "enabled": {
            "description": "Run the colorization problem.",
            "type": "boolean",
            "default": True,
        },
    }
    order = 10
    input_label = "Grayscale input"

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.name = "colorization"
        self.m = IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
        self.weights = torch.tensor(LUMA_WEIGHTS, device=self.device)

    @classmethod
    def problem_names(cls, section: Mapping[str, Any]) -> list[str]:
        return ["colorization"] if section["enabled"] else []

    @classmethod
    def parse(cls, name: str) -> ProblemSpec | None:
        return ProblemSpec(cls.kind, name) if name == "colorization" else None

    @classmethod
    def build(
        cls, spec: ProblemSpec, *, config_seed: int, device: str | torch.device
    ) -> Colorization:
        del spec, config_seed  # one deterministic operator: nothing to seed
        return cls(device=device)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, 64, 64) -> luma (N, 4096), in [-1, 1] when x is."""
        return torch.einsum("nchw,c->nhw", x, self.weights.to(x.dtype)).flatten(1)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """y (N, 4096) -> each channel c of the image is weight_c * y: (N, 3, 64, 64)."""
        return self.weights.to(y.dtype)[None, :, None, None] * self.as_image(y)

    def pseudo_inverse(self, r: torch.Tensor) -> torch.Tensor:
        """r (N, 4096) -> (N, 3, 64, 64): channel c of each pixel is w_c r / ||w||²."""
        weights = self.weights.to(r.dtype)
        return self.A_adjoint(r) / weights.square().sum()

    @staticmethod
    def as_image(y: torch.Tensor) -> torch.Tensor:
        """Measurements (N, 4096) -> grey images (N, 1, 64, 64)."""
        return y.reshape(y.shape[0], 1, IMAGE_SHAPE[1], IMAGE_SHAPE[2])

    @classmethod
    def input_image(cls, truth: np.ndarray) -> np.ndarray:
        """uint8 (K, 64, 64, 3) -> their PIL luma (K, 64, 64) uint8, the grayscale input."""
        from PIL import Image  # for figures only: recovery jobs need no PIL

        return np.stack([np.asarray(Image.fromarray(image).convert("L")) for image in truth])
