"""PSNR and SSIM per image on [0, 1] from [-1, 1] inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from lowshot.metrics import PSNR_CAP_DB, nearest_psnr, psnr, ssim


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_psnr_of_constant_offsets_is_known() -> None:
    truth = torch.zeros(3, 3, 64, 64)  # 0.5 on [0, 1]
    # Offsets on [0, 1] of 0.1, 0.01 and 0.25 -> MSE 1e-2, 1e-4, 1/16.
    offsets = torch.tensor([0.1, 0.01, 0.25]).reshape(3, 1, 1, 1)
    estimate = truth + 2 * offsets
    values = psnr(estimate, truth)
    assert isinstance(values, np.ndarray) and values.dtype == np.float64
    assert values.shape == (3,)
    assert values == pytest.approx([20.0, 40.0, 10 * np.log10(16)], abs=1e-4)


def test_psnr_of_identical_images_is_capped() -> None:
    x = _images(2, 0)
    assert psnr(x, x) == pytest.approx([PSNR_CAP_DB, PSNR_CAP_DB])
    assert PSNR_CAP_DB == 100.0


def test_psnr_clamps_to_the_valid_range() -> None:
    truth = torch.ones(1, 3, 8, 8)  # 1.0 on [0, 1]
    overshoot = torch.full((1, 3, 8, 8), 3.0)  # 2.0 on [0, 1], clamped to 1.0
    assert psnr(overshoot, truth) == pytest.approx([PSNR_CAP_DB])
    half = torch.zeros(1, 3, 8, 8)
    assert psnr(half, truth) == pytest.approx([10 * np.log10(4)])


def test_psnr_is_per_image_and_accepts_numpy() -> None:
    truth = _images(2, 1)
    estimate = truth.clone()
    estimate[1] += 0.2
    values = psnr(estimate.numpy(), truth.numpy())
    assert values[0] == pytest.approx(PSNR_CAP_DB)
    assert values[1] < 40
    with pytest.raises(ValueError):
        psnr(estimate[:1], truth)


def test_ssim_matches_scikit_image() -> None:
    truth = _images(2, 2)
    noise = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    estimate = (truth + 0.2 * noise).clamp(-1, 1)
    values = ssim(estimate, truth)
    assert values.shape == (2,) and values.dtype == np.float64
    for i in range(2):
        a = ((estimate[i].permute(1, 2, 0).double().numpy()) + 1) / 2
        b = ((truth[i].permute(1, 2, 0).double().numpy()) + 1) / 2
        expected = structural_similarity(b, a, channel_axis=-1, data_range=1.0)
        assert values[i] == pytest.approx(expected, rel=1e-12)
    assert 0 < values.max() < 1
    assert ssim(truth, truth) == pytest.approx([1.0, 1.0])


def test_nearest_psnr_is_the_best_pairing_whatever_the_order() -> None:
    rng = torch.Generator().manual_seed(0)
    examples = torch.rand(4, 3, 8, 8, generator=rng) * 2 - 1
    generated = examples[[2, 0, 3, 1]] + 0.05 * torch.randn(4, 3, 8, 8, generator=rng)
    nearest = nearest_psnr(generated, examples)
    every = np.array([[psnr(g[None], e[None])[0] for g in generated] for e in examples])
    np.testing.assert_allclose(nearest, every.max(axis=1), rtol=1e-9)
    assert (nearest >= psnr(generated, examples) - 1e-9).all()  # never below the paired one
    assert (nearest > psnr(generated, examples) + 5).all()  # here the pairing is shuffled
    assert (nearest_psnr(examples[[1, 0, 3, 2]], examples) == PSNR_CAP_DB).all()
    with pytest.raises(ValueError, match="cannot compare"):
        nearest_psnr(generated[:, :, :4], examples)
