"""Back-projection x + A⁺(y - A x), every problem family's and IAGAN's use of it.

Every registered family (built-in or a plugin loaded in the process) must give an exact
back-projection: it meets the measurements, it is the orthogonal projection onto
{u : A u = y} (idempotent, leaves such a u alone, its correction orthogonal to that set),
and on real faces with noiseless y it never moves an estimate away from the truth.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lowshot import metrics
from lowshot.data.sources import decode_image, open_source
from lowshot.images import to_float
from lowshot.methods import recover, resolve_settings
from lowshot.methods.engine import measurement_loss
from lowshot.methods.iagan import back_projects
from lowshot.models import Generator, init_dcgan_weights
from lowshot.problems import (
    IMAGE_SHAPE,
    PROBLEMS,
    Operator,
    ProblemSpec,
    make_operator,
    parse_problem,
)
from lowshot.problems.base import CG_MAX_ITERATIONS, conjugate_gradient_pseudo_inverse
from lowshot.problems.compressed_sensing import GaussianCS
from lowshot.seeds import derive_seed

pytestmark = pytest.mark.usefixtures("one_thread")

# One problem of each registered family (small ones: the CS Cholesky factor of m/n = 0.1
# takes about a second here). A new family fails test_every_family_has_an_example until it
# is added, so that the tests below cover it.
EXAMPLES = {
    "compressed_sensing": "cs-0.1",
    "noisy_cs": "cs-0.05-noise1",
    "colorization": "colorization",
    "inpainting": "inpaint-0.3",
    "super_resolution": "sr-x4",
    "denoising": "denoise",
    "occlusion": "occlude-16",  # the README's example problem (tests/readme_text.py)
}
# What "exact" means for A(back_project(x, y)) = y: relative to ||y||, float32 rounding.
TOLERANCE = 1e-4


@functools.cache
def example(kind: str) -> Operator:
    """The example operator of family ``kind``, built once (CS factors it once)."""
    return make_operator(parse_problem(EXAMPLES[kind]), config_seed=0)


def uniform_images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, *IMAGE_SHAPE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def relative(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row ||a - b|| / ||b|| over all but the first axis."""
    return (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)


@pytest.fixture(scope="module")
def faces(shared_celeba: Path) -> torch.Tensor:
    """The first four shared test faces, (4, 3, 64, 64) in [-1, 1]."""
    with open_source(shared_celeba / "celeba-test-faces-64.zip") as (names, read):
        chosen = [name for name in names if name.endswith(".jpg")][:4]
        pixels = np.stack([np.asarray(decode_image(read(name))) for name in chosen])
    return to_float(pixels)


def check_exact_projection(operator: Operator) -> None:
    """The properties of the orthogonal projection onto {u : A u = y}, noiseless y."""
    truth, x = uniform_images(3, 1), uniform_images(3, 2) * 1.5  # x partly outside [-1, 1]
    y = operator.A(truth)
    projected = operator.back_project(x, y)
    assert projected.shape == x.shape and projected.dtype == x.dtype
    assert (relative(operator.A(projected), y) < TOLERANCE).all()
    # Idempotent, and an image that meets y is left alone.
    assert (relative(operator.back_project(projected, y), projected) < TOLERANCE).all()
    assert (relative(operator.back_project(truth, y), truth) < TOLERANCE).all()
    # Orthogonal: the correction is orthogonal to the set (here to projected - truth, a
    # null-space direction), i.e. the minimum-norm one; any other A⁺ breaks this.
    # (Denoising's set is one point: there ``inside`` is 0.)
    correction, inside = (projected - x).flatten(1), (projected - truth).flatten(1)
    product = (correction * inside).sum(1).abs()
    assert (product <= TOLERANCE * correction.norm(dim=1) * inside.norm(dim=1)).all()


def test_every_family_has_an_example() -> None:
    missing = sorted(set(PROBLEMS.names()) - set(EXAMPLES))
    assert not missing, f"add an example problem of {missing} to EXAMPLES"


@pytest.mark.parametrize("kind", PROBLEMS.names())
def test_back_projection_is_the_exact_projection(kind: str) -> None:
    check_exact_projection(example(kind))


def test_the_readme_problem_back_projects_through_the_generic_fallback(readme_examples) -> None:
    operator = make_operator(parse_problem(EXAMPLES["occlusion"]), config_seed=0)
    # It gives no pseudo-inverse of its own: the base class's conjugate gradients.
    assert type(operator).pseudo_inverse is Operator.pseudo_inverse
    check_exact_projection(operator)


def test_closed_forms_are_what_the_families_say() -> None:
    x, truth = uniform_images(2, 3), uniform_images(2, 4)
    inpaint = make_operator(parse_problem("inpaint-0.3"), config_seed=0)
    y = inpaint.A(truth)
    observed = inpaint.A_adjoint(torch.ones_like(y)).bool()
    projected = inpaint.back_project(x, y)
    # Inpainting: the observed pixels set to y, the others untouched, bit for bit.
    assert torch.equal(projected[observed], truth[observed])
    assert torch.equal(projected[~observed], x[~observed])
    # Denoising: y itself, whatever x.
    denoise = make_operator(parse_problem("denoise"), config_seed=0)
    noisy = truth.flatten(1) + 0.1
    assert torch.equal(denoise.back_project(x, noisy), noisy.reshape(x.shape))
    # Super-resolution: the correction is constant on each f x f block.
    sr = make_operator(parse_problem("sr-x4"), config_seed=0)
    correction = sr.back_project(x, sr.A(truth)) - x
    blocks = correction.reshape(2, 3, 16, 4, 16, 4)
    assert (blocks.amax(dim=(3, 5)) - blocks.amin(dim=(3, 5))).abs().max() < 1e-6


def test_back_projection_rejects_mismatched_shapes() -> None:
    operator = example("colorization")
    with pytest.raises(ValueError, match="colorization back-projection"):
        operator.back_project(uniform_images(2, 0), torch.zeros(3, operator.m))
    with pytest.raises(ValueError, match="back-projection"):
        operator.back_project(uniform_images(2, 0), torch.zeros(2, operator.m + 1))


def test_cs_factor_is_computed_once() -> None:
    operator = example("compressed_sensing")
    factor = operator.gram_factor()
    assert factor.dtype == torch.float64 and factor.shape == (operator.m, operator.m)
    assert operator.gram_factor() is factor


def test_generic_fallback_agrees_with_the_cholesky_solve() -> None:
    operator = GaussianCS(0.05, seed=derive_seed(0, "operator", "cs-0.05"))
    r = operator.A(uniform_images(2, 5))
    exact = operator.pseudo_inverse(r)
    generic = conjugate_gradient_pseudo_inverse(operator, r)
    assert (relative(generic, exact) < TOLERANCE).all()
    # A non-finite residual (a diverged image) gives NaN for that image only.
    r[1, 0] = float("nan")
    partly = conjugate_gradient_pseudo_inverse(operator, r)
    assert torch.isnan(partly[1]).all() and torch.allclose(partly[0], generic[0])


class DoubledRows(Operator):
    """A Aᵀ singular: the top half observed twice. Never registered."""

    kind = "doubled_rows"
    m = 2 * 3 * 32 * 64

    def __init__(self) -> None:
        self.name, self.device = "doubled", torch.device("cpu")

    @classmethod
    def problem_names(cls, section: Mapping[str, Any]) -> list[str]:
        return []

    @classmethod
    def parse(cls, name: str) -> ProblemSpec | None:
        return None

    @classmethod
    def build(cls, spec: ProblemSpec, *, config_seed: int, device: Any) -> Operator:
        return cls()

    def A(self, x: torch.Tensor) -> torch.Tensor:
        top = x[:, :, :32].flatten(1)
        return torch.cat([top, top], dim=1)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        first, second = y.chunk(2, dim=1)
        top = (first + second).reshape(y.shape[0], 3, 32, 64)
        return torch.cat([top, torch.zeros_like(top)], dim=2)


def test_generic_fallback_names_the_family_when_it_cannot_solve() -> None:
    operator = DoubledRows()
    # Measurements that no image gives (the two copies differ): no solution to converge to.
    r = torch.randn(1, operator.m, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match=f"'doubled_rows'.*{CG_MAX_ITERATIONS} steps"):
        operator.pseudo_inverse(r)


def blurred(faces: torch.Tensor) -> torch.Tensor:
    """Each face through a 3 x 3 box filter (the mean of each pixel's neighbourhood)."""
    return F.avg_pool2d(faces, 3, stride=1, padding=1, count_include_pad=False)


def noisy(faces: torch.Tensor) -> torch.Tensor:
    """Each face plus N(0, 0.2²) noise, clipped to [-1, 1]."""
    noise = torch.randn(faces.shape, generator=torch.Generator().manual_seed(7))
    return (faces + 0.2 * noise).clamp(-1, 1)


@pytest.mark.parametrize("kind", sorted(set(PROBLEMS.names()) & set(EXAMPLES)))
def test_back_projection_never_lowers_psnr_on_real_faces(kind: str, faces: torch.Tensor) -> None:
    # With noiseless y the face lies in {u : A u = y} and in [-1, 1]: projecting onto
    # either convex set never moves an estimate away from it, so the PSNR (which clips
    # too) cannot drop. Three estimates per face: blurred, noisy, and another face.
    operator = example(kind)
    y = operator.A(faces)
    gains = []
    for estimate in (blurred(faces), noisy(faces), faces.roll(1, dims=0)):
        before = metrics.psnr(estimate, faces)
        after = metrics.psnr(operator.back_project(estimate, y).clamp(-1, 1), faces)
        # 1e-4 dB: float32 rounding of an image ~30 dB from its face, nothing more.
        assert (after >= before - 1e-4).all(), (kind, before, after)
        gains.append(after - before)
    # And it does move them closer: measured here, every image gained at least 0.20 dB
    # (noisy_cs at m/n = 0.05 and sr-x4 on blurred faces; colorization 1.8 dB and more).
    assert np.mean(gains) > 0.1


def small_gan() -> Generator:
    generator = Generator(128, width=8)
    init_dcgan_weights(generator, torch.Generator().manual_seed(1))
    return generator.eval()


def test_iagan_back_projects_by_default_and_records_the_returned_loss(
    faces: torch.Tensor,
) -> None:
    assert resolve_settings("iagan", None)["back_project"] == "noiseless"
    operator = GaussianCS(0.05, seed=derive_seed(0, "operator", "cs-0.05"))
    y = operator.A(faces[:2])
    generator = small_gan()
    seeds = [derive_seed(0, "csgm", "cs-0.05", i) for i in range(2)]
    start = recover(
        "csgm",
        operator,
        y,
        seeds=seeds,
        settings={"steps": 3, "restarts": 1},
        model=generator,
        progress=False,
    )
    joint = {"joint_steps": 2, "joint_theta_lr": 1e-3, "joint_z_lr": 1e-4}

    def iagan(back_project: str | None, noise_std: float = 0.0):
        settings = joint if back_project is None else {**joint, "back_project": back_project}
        return recover(
            "iagan",
            operator,
            y,
            seeds=seeds,
            settings=settings,
            model=generator,
            progress=False,
            start=start,
            noise_std=noise_std,
        )

    plain, projected = iagan("never"), iagan(None)
    # The default is the image-adaptive result back-projected, then clipped.
    expected = operator.back_project(plain.images, y).clamp(-1, 1)
    torch.testing.assert_close(projected.images, expected, rtol=0, atol=1e-5)
    assert projected.images.abs().max() <= 1
    # Here no pixel of the back-projection left [-1, 1], so the clip changed nothing and
    # the returned images meet the noiseless measurements.
    assert operator.back_project(plain.images, y).abs().max() <= 1
    assert (relative(operator.A(projected.images), y) < TOLERANCE).all()
    assert (relative(operator.A(plain.images), y) > 0.1).all()  # which they did not before
    # The recorded loss is the returned image's; far below the un-projected one here.
    recorded = measurement_loss(operator, projected.images, y).double().numpy()
    np.testing.assert_allclose(projected.measurement_loss, recorded, rtol=1e-5)
    assert (projected.measurement_loss < 0.5 * plain.measurement_loss).all()
    # z, steps and flags are the image-adaptive stage's.
    assert torch.equal(projected.z, plain.z)
    assert np.array_equal(projected.iterations, plain.iterations)
    assert not projected.diverged.any()
    # Under noise the default keeps the image-adaptive result; "always" projects onto the
    # noisy y, as IAGAN's main.py does.
    noisy_default, noisy_always = iagan(None, noise_std=0.1), iagan("always", noise_std=0.1)
    assert torch.equal(noisy_default.images, plain.images)
    torch.testing.assert_close(noisy_always.images, projected.images, rtol=0, atol=0)


def test_iagan_back_projection_setting_is_checked() -> None:
    assert back_projects("noiseless", 0.0) and not back_projects("noiseless", 0.05)
    assert back_projects("always", 0.05) and not back_projects("never", 0.0)
    with pytest.raises(ValueError, match="back_project must be one of"):
        back_projects("true", 0.0)
