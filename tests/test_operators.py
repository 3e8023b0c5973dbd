"""Measurement operators: luma against PIL, seeded Gaussian matrices, adjoints, the
per-image noise object, and the problem registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lowshot.images import to_float
from lowshot.problems import (
    PROBLEMS,
    GaussianNoise,
    Operator,
    ProblemSpec,
    make_operator,
    measure,
    noise_std,
    parse_problem,
    register,
)
from lowshot.problems.base import standard_noise
from lowshot.problems.colorization import Colorization
from lowshot.problems.compressed_sensing import GaussianCS, gaussian_matrix
from lowshot.seeds import derive_seed


def _random_uint8(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8)


def _random_images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_luma_matches_pil_convert_l() -> None:
    images = _random_uint8(4, seed=0)
    y = Colorization().A(to_float(images))
    ours = (Colorization.as_image(y)[:, 0].numpy() + 1.0) * 127.5
    pil = np.stack(
        [np.asarray(Image.fromarray(im).convert("L"), dtype=np.float64) for im in images]
    )
    assert ours.shape == pil.shape == (4, 64, 64)
    assert np.abs(ours - pil).max() <= 1.0  # 1/255 on [0, 1]
    # Figure 2's input row is PIL's luma itself.
    assert np.array_equal(Colorization.input_image(images), pil.astype(np.uint8))


def test_luma_commutes_with_range_map() -> None:
    unit = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    operator = Colorization()
    torch.testing.assert_close(operator(2 * unit - 1), 2 * operator(unit) - 1)
    assert operator(unit).shape == (2, operator.m) == (2, 64 * 64)


def test_same_seed_same_matrix_other_seed_other_matrix() -> None:
    a = GaussianCS(0.01, seed=7)
    b = GaussianCS(0.01, seed=7)
    c = GaussianCS(0.01, seed=8)
    assert torch.equal(a.matrix, b.matrix)
    assert not torch.allclose(a.matrix, c.matrix)
    # Other ratio, same seed: the first rows are the same stream, the shapes differ.
    assert GaussianCS(0.02, seed=7).matrix.shape == (246, 12288)


def test_matrix_entries_are_standard_normal() -> None:
    A = gaussian_matrix(300, 1000, seed=3)
    assert A.shape == (300, 1000)
    assert abs(A.mean().item()) < 0.01
    assert abs(A.std().item() - 1.0) < 0.01
    # Row chunks continue one stream (a chunk re-seeded would repeat the first rows).
    assert not torch.allclose(A[0], A[256])


@pytest.mark.parametrize(
    ("ratio", "n", "m"),
    [(0.01, 12288, 123), (0.1, 12288, 1229), (0.05, 1000, 50), (0.333, 1000, 333), (1e-6, 1000, 1)],
)
def test_number_of_measurements(ratio: float, n: int, m: int) -> None:
    operator = GaussianCS(ratio, seed=0, n=n)
    assert operator.m == m == max(1, round(ratio * n))
    assert operator.matrix.shape == (m, n)


def test_compressed_sensing_forward_is_flattened_matmul() -> None:
    operator = GaussianCS(0.01, seed=1)
    x = _random_images(2, seed=2)
    expected = torch.stack([operator.matrix @ image.reshape(-1) for image in x])
    torch.testing.assert_close(operator.A(x), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("operator", [GaussianCS(0.05, seed=3), Colorization()])
def test_adjoint_passes_the_dot_product_test(operator: Operator) -> None:
    x = _random_images(3, seed=8).double()
    y = torch.randn(3, operator.m, generator=torch.Generator().manual_seed(9)).double()
    if isinstance(operator, GaussianCS):
        operator.matrix = operator.matrix.double()
    lhs = (operator.A(x) * y).sum(dim=1)
    rhs = (x * operator.A_adjoint(y)).flatten(1).sum(dim=1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-8)
    assert operator.A_adjoint(y).shape == x.shape


def test_invalid_ratio_and_noise_are_rejected() -> None:
    with pytest.raises(ValueError, match="ratio"):
        GaussianCS(0.0, seed=0)
    with pytest.raises(ValueError, match="ratio"):
        GaussianCS(1.5, seed=0)
    for std in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="noise_std"):
            GaussianNoise(std)


@pytest.mark.parametrize("operator", [GaussianCS(0.01, seed=4), Colorization()])
def test_noise_of_an_image_does_not_depend_on_its_batch(operator: Operator) -> None:
    noise = GaussianNoise(0.5)
    x = _random_images(3, seed=5)
    seeds = [11, 12, 13]
    batch = measure(operator, noise, x, seeds)
    alone = measure(operator, noise, x[1:2], seeds[1:2])
    reordered = measure(operator, noise, x[[2, 1]], [13, 12])
    # The noise is bitwise the same; the noiseless part may differ by matmul rounding
    # between batch sizes, far below the noise level.
    assert torch.equal(standard_noise(seeds, operator.m)[1], standard_noise([12], operator.m)[0])
    torch.testing.assert_close(batch[1], alone[0], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(batch[1], reordered[1], rtol=1e-5, atol=1e-3)
    noise_part = batch - operator.A(x)
    assert not torch.allclose(noise_part[0], noise_part[1])
    assert abs(noise_part.std().item() - 0.5) < 0.05
    # Another seed for the same image gives other noise.
    assert not torch.allclose(measure(operator, noise, x[1:2], [99])[0], batch[1])


def test_noiseless_measurements_equal_forward() -> None:
    operator = Colorization()
    x = _random_images(2, seed=6)
    assert torch.equal(measure(operator, GaussianNoise(0.0), x, [1, 2]), operator.A(x))
    with pytest.raises(ValueError, match="seeds"):
        measure(operator, GaussianNoise(0.0), x, [1])


def test_make_operator_dispatches_on_problem_kind() -> None:
    cs = make_operator(parse_problem("cs-0.01"), config_seed=3)
    assert isinstance(cs, GaussianCS)
    assert cs.name == "cs-0.01" and cs.m == 123
    assert cs.seed == derive_seed(3, "operator", "cs-0.01")
    again = make_operator(parse_problem("cs-0.01"), config_seed=3)
    assert torch.equal(cs.matrix, again.matrix)
    other_config = make_operator(parse_problem("cs-0.01"), config_seed=4)
    assert not torch.allclose(cs.matrix, other_config.matrix)
    color = make_operator(parse_problem("colorization"), config_seed=3)
    assert isinstance(color, Colorization) and color.name == "colorization"
    with pytest.raises(ValueError, match=r"unknown problem name 'deblurring'.*colorization"):
        parse_problem("deblurring")
    config = {"problems": {"compressed_sensing": {"noise_std": 0.1}}}
    assert noise_std(config, "cs-0.5") == 0.1


def test_a_new_operator_is_one_registered_class() -> None:
    @register
    class Identity(Operator):
        kind = "identity-test"

        def __init__(self, device: str | torch.device) -> None:
            self.name, self.m, self.device = "identity-test", 3 * 64 * 64, torch.device(device)

        @classmethod
        def problem_names(cls, section):
            return ["identity-test"]

        @classmethod
        def parse(cls, name):
            return ProblemSpec(cls.kind, name) if name == "identity-test" else None

        @classmethod
        def build(cls, spec, *, config_seed, device):
            return cls(device)

        def A(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)

        def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
            return y.reshape(-1, 3, 64, 64)

    try:
        operator = make_operator(parse_problem("identity-test"), config_seed=0)
        x = _random_images(1, seed=7)
        assert isinstance(operator, Identity)
        assert torch.equal(measure(operator, GaussianNoise(), x, [0]), x.flatten(1))

        class Impostor(Identity):
            kind = "identity-test"

        with pytest.raises(ValueError, match="registered twice"):
            register(Impostor)
    finally:
        PROBLEMS.unregister("identity-test")
    assert "identity-test" not in PROBLEMS
