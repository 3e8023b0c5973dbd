"""Super-resolution (beyond the paper): y = the image box down-sampled by an integer factor."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from lowshot.problems._names import parse_numbers
from lowshot.problems.base import IMAGE_SHAPE, Operator, ProblemSpec, register

_SIDE = IMAGE_SHAPE[1]
# The factors that divide the 64-pixel side, leaving at least 2 x 2 pixels per channel.
FACTORS = (2, 4, 8, 16, 32)
_NAME = re.compile(r"sr-x(?P<factor>[0-9]+)")


@register
class SuperResolution(Operator):
    """Box down-sampling by an integer factor f (problem names ``sr-x<f>``, e.g. ``sr-x2``).

    y = the mean of each f x f block of each channel: the low-resolution image
    (N, 3, 64/f, 64/f) flattened channel-major, m = 3 * (64/f)^2, in [-1, 1] when x is.
    This is PIL's ``Image.resize((64 // f, 64 // f), Image.Resampling.BOX)``
    (without its rounding to uint8). Each row of A holds 1/f^2 at its block's f^2 pixels,
    so A_adjoint spreads each value times 1/f^2 evenly over its block (A A^T = I / f^2).
    The pseudo-inverse is therefore f^2 A^T: each value copied to its block's f^2 pixels
    (nearest-neighbour up-sampling). Nothing is random. ``ratio`` is f (Figure 1's x axis
    when it plots this family).
    """

    kind = "super_resolution"
    description = (
        "Super-resolution, A the mean over each f x f block per channel (PIL's BOX resize); "
        "beyond the paper."
    )
    settings = {
        "factors": {
            "description": (
                "Down-sampling factors f, each dividing 64: one problem sr-x<f> each, e.g. "
                "[2, 4]. Default none (our choice: the paper has no super-resolution, so "
                "its grid is unchanged)."
            ),
            "type": "array",
            "items": {"type": "integer", "enum": list(FACTORS)},
            "uniqueItems": True,
            "default": [],
        },
    }
    order = 30
    parameter_label = "down-sampling factor"

    def __init__(self, factor: int, device: str | torch.device = "cpu") -> None:
        if factor not in FACTORS:
            raise ValueError(f"super-resolution factor must be one of {FACTORS}, not {factor}")
        self.factor = int(factor)
        self.device = torch.device(device)
        self.name = f"sr-x{self.factor}"
        self.low = _SIDE // self.factor
        self.m = IMAGE_SHAPE[0] * self.low * self.low

    @classmethod
    def problem_names(cls, section: Mapping[str, Any]) -> list[str]:
        return [f"sr-x{int(factor)}" for factor in sorted(section["factors"])]

    @classmethod
    def parse(cls, name: str) -> ProblemSpec | None:
        factor = _factor(name)
        return None if factor is None else ProblemSpec(cls.kind, f"sr-x{factor}", float(factor))

    @classmethod
    def label(cls, spec: ProblemSpec) -> str:
        return f"super-resolution ×{spec.ratio:g}"

    @classmethod
    def build(
        cls, spec: ProblemSpec, *, config_seed: int, device: str | torch.device
    ) -> SuperResolution:
        del config_seed  # one deterministic operator: nothing to seed
        factor = _factor(spec.name)
        if factor is None:
            raise ValueError(f"{spec.name!r} is not a super-resolution name sr-x<factor>")
        return cls(factor, device=device)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, 64, 64) -> block means (N, 3 * (64/f)^2)."""
        return F.avg_pool2d(x, self.factor).flatten(1)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """y (N, 3 * (64/f)^2) -> (N, 3, 64, 64), value / f^2 on each pixel of its block."""
        low = y.reshape(y.shape[0], IMAGE_SHAPE[0], self.low, self.low) / self.factor**2
        return low.repeat_interleave(self.factor, dim=2).repeat_interleave(self.factor, dim=3)

    def pseudo_inverse(self, r: torch.Tensor) -> torch.Tensor:
        """r (N, 3 * (64/f)^2) -> (N, 3, 64, 64), each value on every pixel of its block
        (f^2 A^T r, since A A^T = I / f^2)."""
        low = r.reshape(r.shape[0], IMAGE_SHAPE[0], self.low, self.low)
        return low.repeat_interleave(self.factor, dim=2).repeat_interleave(self.factor, dim=3)


def _factor(name: str) -> int | None:
    """The factor f of a name ``sr-x<f>`` (any digits: ``SuperResolution`` checks f), or None."""
    numbers = parse_numbers(_NAME, name)
    return None if numbers is None else int(numbers["factor"])
