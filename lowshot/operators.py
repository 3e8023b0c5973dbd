"""Measurement operators y = A(x) + noise, batched over images.

Every operator maps images ``x`` of shape (N, 3, 64, 64) in [-1, 1] to flat measurements
``y`` of shape (N, m): ``forward`` is the noiseless map (differentiable, used inside the
recovery losses), ``measure`` adds N(0, noise_std^2) noise drawn per image from that
image's own seed, so an image's measurements never depend on which images share its batch.

Operators are registered by the ``Problem.kind`` they solve (``lowshot.config.Problem``);
``make_operator`` builds the operator of a problem. Adding an operator (inpainting,
super-resolution) is one new class decorated with ``@register("<kind>")`` that implements
``forward`` and ``from_problem``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch

from lowshot.config import Problem
from lowshot.seeds import derive_seed

IMAGE_SHAPE = (3, 64, 64)
IMAGE_SIZE = 3 * 64 * 64

# ITU-R 601-2 luma weights (R, G, B): what PIL's ``Image.convert('L')`` applies.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# Rows of A drawn per chunk: A is built chunk by chunk on the CPU and copied into place,
# so the peak is A plus one chunk, not A twice. A fixed constant, so A depends only on
# (seed, m, n), never on the device.
_CHUNK_ROWS = 256

OPERATORS: dict[str, type[Operator]] = {}


def register(kind: str) -> Callable[[type[Operator]], type[Operator]]:
    """Class decorator: make ``make_operator`` build ``cls`` for problems of ``kind``."""

    def decorate(cls: type[Operator]) -> type[Operator]:
        if kind in OPERATORS:
            raise ValueError(f"an operator is already registered for problem kind {kind!r}")
        cls.kind = kind
        OPERATORS[kind] = cls
        return cls

    return decorate


class Operator(abc.ABC):
    """A linear measurement operator with optional additive Gaussian noise.

    Attributes: ``name`` (the problem name, e.g. ``cs-0.1``), ``m`` (measurements per
    image), ``n`` (pixels per image, 3 * 64 * 64), ``noise_std``, ``device``.
    """

    kind: ClassVar[str] = ""
    name: str
    m: int
    n: int = IMAGE_SIZE
    noise_std: float = 0.0
    device: torch.device

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Noiseless measurements: x (N, 3, 64, 64) in [-1, 1] -> (N, m), differentiable."""

    @classmethod
    @abc.abstractmethod
    def from_problem(
        cls,
        problem: Problem,
        *,
        config_seed: int,
        noise_std: float,
        device: str | torch.device,
    ) -> Operator:
        """The operator of ``problem``; its random parts derive from ``config_seed``."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def measure(self, x: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """Noisy measurements y = A x + eta, eta ~ N(0, noise_std^2 I), as (N, m).

        ``seeds`` holds one seed per image; image i's noise is drawn from a CPU
        ``torch.Generator`` seeded with ``seeds[i]`` (so it is the same on every device
        and whatever the batch). Every method must see the same y for an image, so the
        caller derives these seeds from (config seed, problem, image id), not the method.
        """
        if len(seeds) != x.shape[0]:
            raise ValueError(f"measure: {x.shape[0]} images but {len(seeds)} seeds")
        with torch.no_grad():
            y = self.forward(x).float()
        if self.noise_std > 0:
            y = y + self.noise_std * noise(seeds, self.m).to(y.device)
        return y


def noise(seeds: Sequence[int], m: int) -> torch.Tensor:
    """Standard normal noise (len(seeds), m), row i drawn from a CPU generator seeded seeds[i]."""
    rows = [torch.randn(m, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.stack(rows) if rows else torch.empty(0, m)


@register("compressed_sensing")
class GaussianCS(Operator):
    """Gaussian compressed sensing: y = A vec(x), A (m, n) with i.i.d. N(0, 1) entries.

    m = round(ratio * n), at least 1. ``vec`` is ``x.flatten(1)`` (channel-major C, H, W
    order). A is drawn from a CPU ``torch.Generator`` seeded with ``seed`` in row chunks of
    ``_CHUNK_ROWS`` and copied to ``device``: the same (seed, ratio) gives the same A on
    every device. One A serves every image and method of a (problem, ratio); the pipeline
    seeds it with ``derive_seed(config_seed, "operator", problem name)``.
    """

    def __init__(
        self,
        ratio: float,
        seed: int,
        noise_std: float = 0.0,
        n: int = IMAGE_SIZE,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not 0 < ratio <= 1:
            raise ValueError(f"compression ratio must be in (0, 1], not {ratio}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, not {noise_std}")
        self.ratio = float(ratio)
        self.seed = int(seed)
        self.noise_std = float(noise_std)
        self.n = int(n)
        self.m = max(1, round(self.ratio * self.n))
        self.device = torch.device(device)
        self.name = f"cs-{self.ratio:g}"
        self.A = gaussian_matrix(self.m, self.n, self.seed, device=self.device, dtype=dtype)

    @classmethod
    def from_problem(
        cls,
        problem: Problem,
        *,
        config_seed: int,
        noise_std: float,
        device: str | torch.device,
    ) -> GaussianCS:
        if problem.ratio is None:
            raise ValueError(f"problem {problem} has no compression ratio")
        seed = derive_seed(config_seed, "operator", problem.name)
        return cls(problem.ratio, seed, noise_std=noise_std, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, 64, 64) -> A vec(x) as (N, m)."""
        return x.flatten(1) @ self.A.T


def gaussian_matrix(
    m: int,
    n: int,
    seed: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """An (m, n) matrix of i.i.d. N(0, 1) entries, a function of (m, n, seed) only."""
    generator = torch.Generator().manual_seed(int(seed))
    A = torch.empty(m, n, device=device, dtype=dtype)
    for start in range(0, m, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, m)
        A[start:stop] = torch.randn(stop - start, n, generator=generator).to(device, dtype)
    return A


@register("colorization")
class Colorization(Operator):
    """Colorization: y = the ITU-R 601-2 luma 0.299 R + 0.587 G + 0.114 B of each pixel.

    Output (N, 64 * 64), the grey image flattened row-major (``as_image`` reshapes it to
    (N, 1, 64, 64)). The weights sum to 1, so luma commutes with the affine map
    u -> 2u - 1 between [0, 1] and [-1, 1]: the luma of an image in [-1, 1] is the [-1, 1]
    version of its luma in [0, 1], and y stays in [-1, 1]. This is the transform of PIL's
    ``Image.convert('L')`` (which in addition rounds to uint8).
    """

    def __init__(self, noise_std: float = 0.0, device: str | torch.device = "cpu") -> None:
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, not {noise_std}")
        self.noise_std = float(noise_std)
        self.device = torch.device(device)
        self.name = "colorization"
        self.m = IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
        self.weights = torch.tensor(LUMA_WEIGHTS, device=self.device)

    @classmethod
    def from_problem(
        cls,
        problem: Problem,
        *,
        config_seed: int,
        noise_std: float,
        device: str | torch.device,
    ) -> Colorization:
        del config_seed  # deterministic operator: nothing to seed
        return cls(noise_std=noise_std, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, 64, 64) -> luma (N, 4096), in [-1, 1] when x is."""
        weights = self.weights.to(x.dtype)
        return torch.einsum("nchw,c->nhw", x, weights).flatten(1)

    @staticmethod
    def as_image(y: torch.Tensor) -> torch.Tensor:
        """Measurements (N, 4096) -> grey images (N, 1, 64, 64)."""
        return y.reshape(y.shape[0], 1, IMAGE_SHAPE[1], IMAGE_SHAPE[2])


def make_operator(
    problem: Problem,
    *,
    config_seed: int,
    noise_std: float = 0.0,
    device: str | torch.device = "cpu",
) -> Operator:
    """The operator of ``problem`` (dispatch on ``problem.kind`` via ``OPERATORS``)."""
    try:
        cls = OPERATORS[problem.kind]
    except KeyError:
        raise ValueError(
            f"no operator for problem kind {problem.kind!r}; known: {sorted(OPERATORS)}"
        ) from None
    return cls.from_problem(problem, config_seed=config_seed, noise_std=noise_std, device=device)
