"""What every inverse problem y = A x + eta shares: the operator class, its spec, noise.

A problem *family* is one ``Operator`` subclass in one file of this package (or a
plugin) decorated with ``@register``. The class owns everything about its problems:

- ``kind``: its name in the registry and its config section ``problems.<kind>``;
- ``settings``: the JSON-schema properties of that section, each with its default
  (``noise_std`` is added to every section by ``lowshot.config``);
- ``problem_names(section)``: the problems a config asks for, e.g. ``cs-0.1``;
- ``parse(name)``: the ``ProblemSpec`` of one of its names, or None;
- ``label(spec)``: the name shown in tables and figures;
- ``noise_std(spec, section)``: the problem's noise level, by default the section's
  ``noise_std``;
- ``build(spec, config_seed=, device=)``: the operator, with its ``A`` and ``A_adjoint``.

Noise is a separate object (``GaussianNoise``), applied the same way to every operator.
Images are (N, 3, 64, 64) float tensors in [-1, 1]; measurements are flat (N, m).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from lowshot.registry import Registry
from lowshot.seeds import seeded_generator

IMAGE_SHAPE = (3, 64, 64)
IMAGE_SIZE = 3 * 64 * 64

PROBLEMS: Registry[type[Operator]] = Registry("problem", "lowshot.problems")
register = PROBLEMS.register


@dataclass(frozen=True)
class ProblemSpec:
    """One problem: its family ``kind``, its ``name`` (the workflow's wildcard) and
    ``ratio``, the family's numeric parameter on Figure 1's x axis (m/n for compressed
    sensing), None when the family has none."""

    kind: str
    name: str
    ratio: float | None = None


class Operator(abc.ABC):
    """A linear measurement operator A, batched over images.

    Class attributes describe the family (module docstring); an instance is one problem:
    ``name`` (e.g. ``cs-0.1``), ``m`` measurements per image, ``n`` pixels per image
    (3 * 64 * 64), ``device``.
    """

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    settings: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    # Position of the family in tables (smaller first).
    order: ClassVar[int] = 100
    # How Figure 1 names the x axis when it plots this family (its ``ratio``).
    parameter_label: ClassVar[str] = "parameter"
    # Figure 2's second row (the measurement shown as an image), when the family has one.
    input_label: ClassVar[str | None] = None

    name: str
    m: int
    n: int = IMAGE_SIZE
    device: torch.device

    @classmethod
    @abc.abstractmethod
    def problem_names(cls, section: Mapping[str, Any]) -> list[str]:
        """The problems that the config section ``problems.<kind>`` asks for, in order."""

    @classmethod
    @abc.abstractmethod
    def parse(cls, name: str) -> ProblemSpec | None:
        """The spec of ``name`` when it is one of this family's names, else None."""

    @classmethod
    def label(cls, spec: ProblemSpec) -> str:
        """The problem's name in tables and figures."""
        return spec.name

    @classmethod
    def noise_std(cls, spec: ProblemSpec, section: Mapping[str, Any]) -> float:
        """The measurement-noise std (>= 0, in the images' [-1, 1] units) of problem
        ``spec``, given its validated config section ``problems.<kind>``.

        Default: the section's ``noise_std``, one level for every problem of the family.
        A family whose problems differ in their noise (a noise sweep) overrides this.
        """
        del spec
        return float(section["noise_std"])

    @classmethod
    @abc.abstractmethod
    def build(cls, spec: ProblemSpec, *, config_seed: int, device: str | torch.device) -> Operator:
        """The operator of ``spec``; its random parts derive from ``config_seed``."""

    @abc.abstractmethod
    def A(self, x: torch.Tensor) -> torch.Tensor:
        """Noiseless measurements: x (N, 3, 64, 64) -> (N, m), differentiable."""

    @abc.abstractmethod
    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """The adjoint: y (N, m) -> (N, 3, 64, 64), with <A x, y> = <x, A_adjoint y>."""

    @classmethod
    def input_image(cls, truth: np.ndarray) -> np.ndarray | None:
        """Figure 2's input row for uint8 test images (K, 64, 64, 3), or None."""
        del truth
        return None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)


@dataclass(frozen=True)
class GaussianNoise:
    """Additive N(0, std^2) measurement noise, the same for every operator.

    Image i's noise is drawn from a CPU generator seeded ``seeds[i]``, so it is the same
    on every device and whatever the batch; every method must see the same y for an
    image, so callers derive the seeds from (config seed, problem, image id).
    """

    std: float = 0.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.std) or self.std < 0:
            raise ValueError(f"noise_std must be finite and >= 0, not {self.std}")

    def __call__(self, y: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """y (N, m) plus noise; y itself when std is 0."""
        if len(seeds) != y.shape[0]:
            raise ValueError(f"noise: {y.shape[0]} measurement rows but {len(seeds)} seeds")
        if self.std == 0:
            return y
        return y + self.std * standard_noise(seeds, y.shape[1]).to(y.device)


def standard_noise(seeds: Sequence[int], m: int) -> torch.Tensor:
    """Standard normal (len(seeds), m), row i from a CPU generator seeded seeds[i]."""
    rows = [torch.randn(m, generator=seeded_generator(s)) for s in seeds]
    return torch.stack(rows) if rows else torch.empty(0, m)


def measure(
    operator: Operator, noise: GaussianNoise, x: torch.Tensor, seeds: Sequence[int]
) -> torch.Tensor:
    """y = A x + eta (N, m) float32 for the true images x, without gradients."""
    if len(seeds) != x.shape[0]:
        raise ValueError(f"measure: {x.shape[0]} images but {len(seeds)} seeds")
    with torch.no_grad():
        y = operator.A(x).float()
    return noise(y, seeds)
