"""Gaussian compressed sensing (the paper's §3): y = A vec(x), A with i.i.d. N(0, 1) entries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from lowshot.problems.base import IMAGE_SHAPE, IMAGE_SIZE, Operator, ProblemSpec, register
from lowshot.seeds import derive_seed, seeded_generator

# Rows of A drawn per chunk: A is built chunk by chunk on the CPU and copied into place,
# so the peak is A plus one chunk, not A twice. A fixed constant, so A depends only on
# (seed, m, n), never on the device.
_CHUNK_ROWS = 256
# Columns of A per float64 block when forming A Aᵀ: the float64 copy held at once is
# m x 1024 (50 MB at m/n = 0.5), not all of A.
_GRAM_COLUMNS = 1024
_NAME = re.compile(r"^cs-(?P<ratio>[0-9.eE+-]+)$")


@register
class GaussianCS(Operator):
    """Gaussian compressed sensing at compression ratio m/n (problem names ``cs-<ratio>``).

    m = round(ratio * n), at least 1. ``vec`` is ``x.flatten(1)`` (channel-major C, H, W
    order). A is drawn from a CPU generator seeded with ``seed`` in row chunks of
    ``_CHUNK_ROWS`` and copied to ``device``: the same (seed, ratio) gives the same A on
    every device. One A serves every image and method of a problem; ``build`` seeds it
    with ``derive_seed(config_seed, "operator", problem name)``.

    ``pseudo_inverse`` r -> Aᵀ (A Aᵀ)⁻¹ r solves with the Cholesky factor of A Aᵀ, formed
    and factored in float64 on first use and kept (``gram_factor``): two triangular
    solves and one product with A per call. A Gaussian A has full row rank.
    """

    kind = "compressed_sensing"
    description = "Gaussian compressed sensing, A with i.i.d. N(0, 1) entries (the paper's §3)."
    settings = {
        "ratios": {
            "description": "Compression ratios m/n, each in (0, 1] (the paper's Figure 1 axis).",
            "type": "array",
            "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "uniqueItems": True,
            "default": [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5],
        },
    }
    order = 0
    parameter_label = "compression ratio m/n"

    def __init__(
        self,
        ratio: float,
        seed: int,
        n: int = IMAGE_SIZE,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not 0 < ratio <= 1:
            raise ValueError(f"compression ratio must be in (0, 1], not {ratio}")
        self.ratio = float(ratio)
        self.seed = int(seed)
        self.n = int(n)
        self.m = max(1, round(self.ratio * self.n))
        self.device = torch.device(device)
        self.name = f"cs-{self.ratio:g}"
        self.matrix = gaussian_matrix(self.m, self.n, self.seed, device=self.device, dtype=dtype)
        self._gram_factor: torch.Tensor | None = None

    @classmethod
    def problem_names(cls, section: Mapping[str, Any]) -> list[str]:
        return [f"cs-{float(ratio):g}" for ratio in sorted(section["ratios"])]

    @classmethod
    def parse(cls, name: str) -> ProblemSpec | None:
        match = _NAME.match(name)
        if not match:
            return None
        try:
            ratio = float(match["ratio"])
        except ValueError:
            return None
        return ProblemSpec(cls.kind, f"cs-{ratio:g}", ratio)

    @classmethod
    def label(cls, spec: ProblemSpec) -> str:
        return f"m/n = {spec.ratio:g}"

    @classmethod
    def build(
        cls, spec: ProblemSpec, *, config_seed: int, device: str | torch.device
    ) -> GaussianCS:
        if spec.ratio is None:
            raise ValueError(f"problem {spec.name!r} has no compression ratio")
        return cls(spec.ratio, derive_seed(config_seed, "operator", spec.name), device=device)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, 64, 64) -> A vec(x) as (N, m)."""
        return x.flatten(1) @ self.matrix.T

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """y (N, m) -> A^T y as (N, 3, 64, 64)."""
        return (y @ self.matrix).reshape(y.shape[0], *IMAGE_SHAPE)

    def gram_factor(self) -> torch.Tensor:
        """The lower Cholesky factor L (m, m) float64 of A Aᵀ = L Lᵀ, computed once.

        float64 because A Aᵀ squares A's condition number (about 34 at m/n = 0.5, growing
        without bound as m/n -> 1): a float32 factor would leave A(back_project(x, y)) - y
        at the level of the measurements' rounding times that number.
        """
        if self._gram_factor is None:
            gram = torch.zeros(self.m, self.m, device=self.device, dtype=torch.float64)
            for start in range(0, self.n, _GRAM_COLUMNS):
                block = self.matrix[:, start : start + _GRAM_COLUMNS].double()
                gram.addmm_(block, block.T)
            self._gram_factor = torch.linalg.cholesky(gram)
        return self._gram_factor

    def pseudo_inverse(self, r: torch.Tensor) -> torch.Tensor:
        """r (N, m) -> Aᵀ (A Aᵀ)⁻¹ r (N, 3, 64, 64), in r's dtype: the solve in float64
        (``gram_factor``), the product with Aᵀ in A's dtype."""
        solved = torch.cholesky_solve(r.double().T, self.gram_factor()).T
        return self.A_adjoint(solved.to(self.matrix.dtype)).to(r.dtype)


def gaussian_matrix(
    m: int,
    n: int,
    seed: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """An (m, n) matrix of i.i.d. N(0, 1) entries, a function of (m, n, seed) only."""
    generator = seeded_generator(seed)
    matrix = torch.empty(m, n, device=device, dtype=dtype)
    for start in range(0, m, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, m)
        matrix[start:stop] = torch.randn(stop - start, n, generator=generator).to(device, dtype)
    return matrix
