"""Inpainting (beyond the paper): y = the observed pixels of the image, the rest is lost."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from lowshot.problems._names import parse_numbers
from lowshot.problems.base import (
    IMAGE_SHAPE,
    Operator,
    ProblemSpec,
    check_back_projection,
    register,
)
from lowshot.seeds import derive_seed, seeded_generator

_HEIGHT, _WIDTH = IMAGE_SHAPE[1], IMAGE_SHAPE[2]
_PIXELS = _HEIGHT * _WIDTH
_FRACTION = re.compile(r"inpaint-(?P<fraction>[0-9.eE+-]+)")
_BOX = re.compile(r"inpaint-box(?P<size>[0-9]+)")


@register
class Inpainting(Operator):
    """Inpainting with a fixed pixel mask, the same for every image and method of a problem.

    Two shapes of mask, each a problem name:

    - ``inpaint-<fraction>`` (e.g. ``inpaint-0.5``): ``round(fraction * 4096)`` (at least
      1) of the 64 x 64 pixel positions observed, drawn uniformly without replacement:
      the first of ``torch.randperm(4096)`` from a CPU generator seeded
      ``derive_seed(config_seed, "operator", name)``, so the mask is the same on every
      device, and another per config seed and per fraction. ``ratio`` is the fraction.
    - ``inpaint-box<size>`` (e.g. ``inpaint-box32``): every pixel observed but a centred
      ``size`` x ``size`` square (rows and columns ``(64 - size) / 2`` up to, not
      including, ``(64 + size) / 2``; ``size`` even). The size is in the name, because
      the name alone defines a problem (``build`` sees no settings). ``ratio`` None.

    ``mask`` is (64, 64) bool, True where observed; an observed pixel keeps all 3
    channels. A(x) = ``x[:, :, mask]`` flattened: (N, 3 * k) for k observed pixels,
    channel-major, pixels in row-major order; values stay in [-1, 1]. A_adjoint puts y
    back at the observed pixels, zeros elsewhere (A A^T = I). Both gather and scatter
    through ``observed``, the k flat pixel indices found once: static shapes and no host
    synchronisation, so a step that measures can be captured as a CUDA graph (indexing
    by the boolean mask calls ``nonzero``, whose output size only the host can learn).

    So A⁺ = A^T, and ``back_project(x, y)`` is x with its observed pixels set to y.
    """

    kind = "inpainting"
    description = (
        "Inpainting, y the observed pixels: a random pixel mask (inpaint-<fraction>) or a "
        "missing centred square (inpaint-box<size>); beyond the paper."
    )
    settings = {
        "fractions": {
            "description": (
                "Observed fractions of the 64x64 pixel positions, each in (0, 1): one "
                "random-mask problem inpaint-<fraction> each, e.g. [0.1, 0.3, 0.5]. Default "
                "none (our choice: the paper has no inpainting, so its grid is unchanged)."
            ),
            "type": "array",
            "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "uniqueItems": True,
            "default": [],
        },
        "box": {
            "description": (
                "Run inpaint-box<box_size>, a centred square missing. Default false (our "
                "choice: the paper has no inpainting, so its grid is unchanged)."
            ),
            "type": "boolean",
            "default": False,
        },
        "box_size": {
            "description": (
                "Side in pixels of the missing centred square, even so that the square is "
                "exactly centred. Default 32 (our choice: half the side, a quarter of the "
                "image, about the centre of the face)."
            ),
            "type": "integer",
            "minimum": 2,
            "maximum": _HEIGHT - 2,
            "multipleOf": 2,
            "default": 32,
        },
    }
    order = 20
    parameter_label = "observed fraction of the pixels"

    def __init__(self, name: str, mask: torch.Tensor, device: str | torch.device = "cpu") -> None:
        if mask.shape != (_HEIGHT, _WIDTH) or mask.dtype != torch.bool:
            raise ValueError(
                f"inpainting mask must be bool {(_HEIGHT, _WIDTH)}, "
                f"not {mask.dtype} {tuple(mask.shape)}"
            )
        observed = int(mask.sum())
        if observed == 0:
            raise ValueError(f"inpainting {name}: the mask observes no pixel")
        self.name = name
        self.device = torch.device(device)
        self.mask = mask.to(self.device)
        # (k,) int64: the observed pixels' row-major flat indices, ascending (nonzero's
        # order), so that index_select returns them in the order x[:, :, mask] does.
        self.observed = mask.flatten().nonzero().squeeze(1).to(self.device)
        self.m = IMAGE_SHAPE[0] * observed

    @classmethod
    def problem_names(cls, section: Mapping[str, Any]) -> list[str]:
        names = [f"inpaint-{float(fraction):g}" for fraction in sorted(section["fractions"])]
        if section["box"]:
            names.append(f"inpaint-box{int(section['box_size'])}")
        return names

    @classmethod
    def parse(cls, name: str) -> ProblemSpec | None:
        box = parse_numbers(_BOX, name)
        if box is not None:
            return ProblemSpec(cls.kind, f"inpaint-box{int(box['size'])}")
        numbers = parse_numbers(_FRACTION, name)
        if numbers is None:
            return None
        fraction = numbers["fraction"]
        return ProblemSpec(cls.kind, f"inpaint-{fraction:g}", fraction)

    @classmethod
    def label(cls, spec: ProblemSpec) -> str:
        box = parse_numbers(_BOX, spec.name)
        if box is not None:
            size = int(box["size"])
            return f"inpainting box {size}×{size}"
        if spec.ratio is None:
            raise ValueError(f"problem {spec.name!r} has no observed fraction")
        return f"inpainting {100 * spec.ratio:g} %"

    @classmethod
    def build(
        cls, spec: ProblemSpec, *, config_seed: int, device: str | torch.device
    ) -> Inpainting:
        box = parse_numbers(_BOX, spec.name)
        if box is not None:
            return cls(spec.name, box_mask(int(box["size"])), device=device)
        if spec.ratio is None:
            raise ValueError(f"problem {spec.name!r} has no observed fraction")
        seed = derive_seed(config_seed, "operator", spec.name)
        return cls(spec.name, random_mask(spec.ratio, seed), device=device)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, 64, 64) -> its observed pixels (N, m), m = 3 * observed pixels."""
        return x.flatten(2).index_select(2, self.observed).flatten(1)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """y (N, m) -> (N, 3, 64, 64): y at the observed pixels, 0 elsewhere."""
        n, channels = y.shape[0], IMAGE_SHAPE[0]
        values = y.reshape(n, channels, self.observed.shape[0])
        image = y.new_zeros(n, channels, _PIXELS).index_copy(2, self.observed, values)
        return image.reshape(n, *IMAGE_SHAPE)

    def pseudo_inverse(self, r: torch.Tensor) -> torch.Tensor:
        """r (N, m) -> (N, 3, 64, 64): A^T r, since A A^T = I."""
        return self.A_adjoint(r)

    def back_project(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (N, 3, 64, 64) with its observed pixels set to y (N, m), exactly: x - A^T A x
        zeroes them (A^T A x copies them), + A^T y fills them in."""
        check_back_projection(self, x, y)
        return x - self.A_adjoint(self.A(x)) + self.A_adjoint(y.to(x.dtype))


def random_mask(fraction: float, seed: int) -> torch.Tensor:
    """(64, 64) bool, True at ``round(fraction * 4096)`` (at least 1) pixels drawn without
    replacement from a CPU generator seeded ``seed``: a function of (fraction, seed) only.
    ``fraction`` in (0, 1)."""
    if not 0 < fraction < 1:
        raise ValueError(f"inpainting: observed fraction must be in (0, 1), not {fraction}")
    observed = max(1, round(fraction * _PIXELS))
    order = torch.randperm(_PIXELS, generator=seeded_generator(seed))
    mask = torch.zeros(_PIXELS, dtype=torch.bool)
    mask[order[:observed]] = True
    return mask.reshape(_HEIGHT, _WIDTH)


def box_mask(size: int) -> torch.Tensor:
    """(64, 64) bool, False on the centred ``size`` x ``size`` square (``size`` even, in
    [2, 62]), True elsewhere."""
    if size % 2 or not 2 <= size <= _HEIGHT - 2:
        raise ValueError(f"inpainting: box size must be even and in [2, {_HEIGHT - 2}], not {size}")
    start = (_HEIGHT - size) // 2
    mask = torch.ones(_HEIGHT, _WIDTH, dtype=torch.bool)
    mask[start : start + size, start : start + size] = False
    return mask
