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
- ``build(spec, config_seed=, device=)``: the operator, with its ``A`` and ``A_adjoint``;
- ``pseudo_inverse(r)``: A⁺ r, the minimum-norm image u with A u = r, which
  ``back_project(x, y) = x + A⁺(y - A x)`` uses (IAGAN's last step). Each built-in family
  gives it exactly and cheaply (a closed form, or a factor of A Aᵀ computed once); the
  base class's fallback, for a family that does not, is conjugate gradients on A Aᵀ,
  which raises an error naming the family when it does not converge.

Noise is a separate object (``GaussianNoise``), applied the same way to every operator.
Images are (N, 3, 64, 64) float tensors in [-1, 1]; measurements are flat (N, m).
"""

from __future__ import annotations

import abc
import math
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

    def pseudo_inverse(self, r: torch.Tensor) -> torch.Tensor:
        """A⁺ r, the Moore-Penrose pseudo-inverse: r (N, m) -> (N, 3, 64, 64), per image the
        minimum-norm u with A u = r (A of full row rank m, which every built-in family has).

        Fallback for families that do not give their own: ``conjugate_gradient_pseudo_inverse``
        (CG on A Aᵀ v = r, u = Aᵀ v), generic but iterative; it raises ``RuntimeError``
        naming the family when it does not converge. A family with a closed form or a
        cheap factorisation overrides this with it.
        """
        return conjugate_gradient_pseudo_inverse(self, r)

    def back_project(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x + A⁺(y - A x): x (N, 3, 64, 64), y (N, m) -> (N, 3, 64, 64), not clipped.

        Per image the point of the affine set {u : A u = y} nearest to x (its orthogonal
        projection there): A of the result is y, an x with A x = y is returned unchanged,
        and projecting twice is projecting once. With noiseless y the true image lies in
        that set, so the result is never farther from it than x is (nor after clipping to
        [-1, 1], a projection onto another convex set that holds it). Not under
        ``torch.no_grad``: the caller decides.
        """
        check_back_projection(self, x, y)
        return x + self.pseudo_inverse(y - self.A(x))

    @classmethod
    def input_image(cls, truth: np.ndarray) -> np.ndarray | None:
        """Figure 2's input row for uint8 test images (K, 64, 64, 3), or None."""
        del truth
        return None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)


def check_back_projection(operator: Operator, x: torch.Tensor, y: torch.Tensor) -> None:
    """``ValueError`` unless x is (N, 3, 64, 64) and y (N, m) for ``operator``'s m."""
    if tuple(x.shape[1:]) != IMAGE_SHAPE or tuple(y.shape) != (x.shape[0], operator.m):
        raise ValueError(
            f"{operator.name} back-projection: images (N, {', '.join(map(str, IMAGE_SHAPE))}) "
            f"and measurements (N, {operator.m}), not {tuple(x.shape)} and {tuple(y.shape)}"
        )


# The generic pseudo-inverse's conjugate gradients (our choices): stop when the recursive
# residual of A Aᵀ v = r is below CG_TOLERANCE * ||r|| per image; accept the result when
# the true residual, recomputed (the recursion drifts from it in float32), is below
# CG_ACCEPT * ||r||, 10x below the 1e-4 relative that tests ask of A(back_project(x, y))
# = y. At most CG_MAX_ITERATIONS steps: CG needs about sqrt(kappa) * ln(2 / tol) / 2 of
# them for a condition number kappa of A Aᵀ, so 300 cover kappa up to about 1,000. An
# operator with A Aᵀ = c I needs one.
CG_TOLERANCE = 1e-6
CG_ACCEPT = 1e-5
CG_MAX_ITERATIONS = 300


def conjugate_gradient_pseudo_inverse(operator: Operator, r: torch.Tensor) -> torch.Tensor:
    """A⁺ r for any operator through its ``A`` and ``A_adjoint``: r (N, m) -> (N, 3, 64, 64).

    Solves A Aᵀ v = r by conjugate gradients, every image its own (batched) system, and
    returns Aᵀ v, the minimum-norm solution of A u = r when A has full row rank.
    ``RuntimeError`` naming the operator's family when the true residual of some image is
    above ``CG_ACCEPT * ||r||`` after at most ``CG_MAX_ITERATIONS`` steps (A Aᵀ singular
    or badly conditioned): that family should give its own ``pseudo_inverse``.
    """
    if r.ndim != 2 or r.shape[1] != operator.m:
        raise ValueError(f"{operator.name} pseudo-inverse: r must be (N, {operator.m})")

    def gram(v: torch.Tensor) -> torch.Tensor:
        return operator.A(operator.A_adjoint(v))

    # An image whose r is not finite (a diverged recovery) gets NaN, the others their solve.
    finite = torch.isfinite(r).all(dim=1)
    r = torch.where(finite[:, None], r, torch.zeros_like(r))
    size = r.norm(dim=1)
    target = (CG_TOLERANCE * size).square()
    v = torch.zeros_like(r)
    residual = r.clone()
    direction = residual.clone()
    power = residual.square().sum(dim=1)
    for _ in range(CG_MAX_ITERATIONS):
        if bool((power <= target).all()):
            break
        image = gram(direction)
        curvature = (direction * image).sum(dim=1)
        # An image already converged (or with r = 0) takes no step: no 0 / 0.
        step = torch.where(power > target, power / curvature, torch.zeros_like(power))
        v = v + step[:, None] * direction
        residual = residual - step[:, None] * image
        new_power = residual.square().sum(dim=1)
        ratio = torch.where(power > 0, new_power / power, torch.zeros_like(power))
        direction = residual + ratio[:, None] * direction
        power = new_power
    # The recursion's residual drifts from the true one in float32: check the true one.
    if not bool(((r - gram(v)).norm(dim=1) <= CG_ACCEPT * size).all()):
        raise RuntimeError(
            f"problem family {type(operator).kind!r} ({type(operator).__name__}): its "
            f"pseudo-inverse, by conjugate gradients on A Aᵀ (the base class's fallback), "
            f"did not converge in {CG_MAX_ITERATIONS} steps; give the family its own "
            "pseudo_inverse (or run IAGAN with back_project: never)"
        )
    solution = operator.A_adjoint(v)
    return torch.where(finite[:, None, None, None], solution, torch.full_like(solution, math.nan))


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
