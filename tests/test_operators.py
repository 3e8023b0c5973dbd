"""Measurement operators: luma against PIL, seeded Gaussian matrices, per-image noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lowshot.config import Problem, parse_problem
from lowshot.operators import (
    OPERATORS,
    Colorization,
    GaussianCS,
    Operator,
    gaussian_matrix,
    make_operator,
    noise,
    register,
)
from lowshot.seeds import derive_seed


def _random_uint8(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8)


def _to_model_range(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 64, 64, 3) -> float (N, 3, 64, 64) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _random_images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_luma_matches_pil_convert_l() -> None:
    images = _random_uint8(4, seed=0)
    y = Colorization().forward(_to_model_range(images))
    ours = (Colorization.as_image(y)[:, 0].numpy() + 1.0) * 127.5
    pil = np.stack(
        [np.asarray(Image.fromarray(im).convert("L"), dtype=np.float64) for im in images]
    )
    assert ours.shape == pil.shape == (4, 64, 64)
    assert np.abs(ours - pil).max() <= 1.0  # 1/255 on [0, 1]


def test_luma_commutes_with_range_map() -> None:
    unit = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    operator = Colorization()
    torch.testing.assert_close(operator(2 * unit - 1), 2 * operator(unit) - 1)
    assert operator(unit).shape == (2, operator.m) == (2, 64 * 64)


def test_same_seed_same_matrix_other_seed_other_matrix() -> None:
    a = GaussianCS(0.01, seed=7)
    b = GaussianCS(0.01, seed=7)
    c = GaussianCS(0.01, seed=8)
    assert torch.equal(a.A, b.A)
    assert not torch.allclose(a.A, c.A)
    # Other ratio, same seed: the first rows are the same stream, the shapes differ.
    assert GaussianCS(0.02, seed=7).A.shape == (246, 12288)


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
    assert operator.A.shape == (m, n)


def test_compressed_sensing_forward_is_flattened_matmul() -> None:
    operator = GaussianCS(0.01, seed=1)
    x = _random_images(2, seed=2)
    expected = torch.stack([operator.A @ image.reshape(-1) for image in x])
    torch.testing.assert_close(operator.forward(x), expected, rtol=1e-4, atol=1e-3)


def test_invalid_ratio_and_noise_are_rejected() -> None:
    with pytest.raises(ValueError, match="ratio"):
        GaussianCS(0.0, seed=0)
    with pytest.raises(ValueError, match="ratio"):
        GaussianCS(1.5, seed=0)
    with pytest.raises(ValueError, match="noise_std"):
        Colorization(noise_std=-1.0)


@pytest.mark.parametrize("operator", [GaussianCS(0.01, seed=4, noise_std=0.5), Colorization(0.5)])
def test_noise_of_an_image_does_not_depend_on_its_batch(operator: Operator) -> None:
    x = _random_images(3, seed=5)
    seeds = [11, 12, 13]
    batch = operator.measure(x, seeds)
    alone = operator.measure(x[1:2], seeds[1:2])
    reordered = operator.measure(x[[2, 1]], [13, 12])
    # The noise is bitwise the same; the noiseless part may differ by matmul rounding
    # between batch sizes, far below the noise level.
    assert torch.equal(noise(seeds, operator.m)[1], noise(seeds[1:2], operator.m)[0])
    torch.testing.assert_close(batch[1], alone[0], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(batch[1], reordered[1], rtol=1e-5, atol=1e-3)
    noise_part = batch - operator.forward(x)
    assert not torch.allclose(noise_part[0], noise_part[1])
    assert abs(noise_part.std().item() - 0.5) < 0.05
    # Another seed for the same image gives other noise.
    assert not torch.allclose(operator.measure(x[1:2], [99])[0], batch[1])


def test_noiseless_measurements_equal_forward() -> None:
    operator = Colorization()
    x = _random_images(2, seed=6)
    assert torch.equal(operator.measure(x, [1, 2]), operator.forward(x))
    with pytest.raises(ValueError, match="seeds"):
        operator.measure(x, [1])


def test_make_operator_dispatches_on_problem_kind() -> None:
    cs = make_operator(parse_problem("cs-0.01"), config_seed=3, noise_std=0.1)
    assert isinstance(cs, GaussianCS)
    assert cs.name == "cs-0.01" and cs.m == 123 and cs.noise_std == 0.1
    assert cs.seed == derive_seed(3, "operator", "cs-0.01")
    again = make_operator(parse_problem("cs-0.01"), config_seed=3)
    assert torch.equal(cs.A, again.A)
    other_config = make_operator(parse_problem("cs-0.01"), config_seed=4)
    assert not torch.allclose(cs.A, other_config.A)
    color = make_operator(parse_problem("colorization"), config_seed=3)
    assert isinstance(color, Colorization) and color.name == "colorization"
    with pytest.raises(ValueError, match="no operator"):
        make_operator(Problem("deblurring"), config_seed=0)


def test_a_new_operator_is_one_registered_class() -> None:
    @register("identity-test")
    class Identity(Operator):
        def __init__(self, noise_std: float, device: str | torch.device) -> None:
            self.name, self.m, self.noise_std = "identity-test", 3 * 64 * 64, noise_std
            self.device = torch.device(device)

        @classmethod
        def from_problem(cls, problem, *, config_seed, noise_std, device):
            return cls(noise_std, device)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)

    try:
        operator = make_operator(Problem("identity-test"), config_seed=0)
        x = _random_images(1, seed=7)
        assert isinstance(operator, Identity)
        assert torch.equal(operator.measure(x, [0]), x.flatten(1))
        with pytest.raises(ValueError, match="already registered"):
            register("identity-test")(Identity)
    finally:
        del OPERATORS["identity-test"]
