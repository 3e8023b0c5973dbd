"""Training: low-shot pre-training fits real faces, the Gaussian prior, WGAN-GP, resuming
from checkpoints (equal to uninterrupted runs), generator files, sample grids, logs."""

from __future__ import annotations

import copy
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lowshot.losses import median_bandwidth
from lowshot.metrics import psnr
from lowshot.training import (
    fit_gaussian,
    load_gan,
    load_lowshot,
    pretrain_lowshot,
    sample_gaussian,
    sample_grid,
    save_gan,
    save_lowshot,
    train_wgan_gp,
    write_log_csv,
)

FACES_ZIP = (
    Path(__file__).resolve().parents[1].parent / "shared/data/celeba/celeba-test-faces-64.zip"
)
WIDTH = 8  # narrow networks keep the resume tests fast; the fitting test uses more


def _read_faces(n: int) -> torch.Tensor:
    """The first n faces of the shared zip as (n, 3, 64, 64) float in [-1, 1]."""
    assert FACES_ZIP.exists(), f"shared test data missing: {FACES_ZIP}"
    with zipfile.ZipFile(FACES_ZIP) as archive:
        names = sorted(name for name in archive.namelist() if name.endswith(".jpg"))[:n]
        arrays = [
            np.asarray(Image.open(io.BytesIO(archive.read(name))).convert("RGB")) for name in names
        ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@pytest.fixture(autouse=True)
def one_thread():
    """Run these small networks on one thread: on a shared 2-core machine, two OpenMP
    threads spin-waiting for each other made a training step 50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    return _read_faces(5)


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


# ---------------------------------------------------------------------------------------
# Low-shot pre-training


def test_lowshot_pretraining_fits_real_faces(faces: torch.Tensor) -> None:
    settings = {"loss": "l2", "seed": 3, "width": 16, "lr": 3e-3, "progress": False}
    start = pretrain_lowshot(faces, iterations=0, **settings)
    result = pretrain_lowshot(faces, iterations=100, log_every=50, **settings)
    assert result.finished and result.step == 100 and result.start_step == 0
    with torch.no_grad():
        # Recovery evaluates G(z_i) with the stored statistics, so measure it that way.
        assert start.generator.norm == result.generator.norm == "stored"
        before = psnr(start.generator(start.codes), faces)
        after = psnr(result.generator(result.codes), faces)
        # The calibrated stored statistics reproduce training mode's full-batch output.
        batch_mode = copy.deepcopy(result.generator)
        batch_mode.norm = "batch"
        batch_mode.train()
        assert torch.allclose(batch_mode(result.codes), result.generator(result.codes), atol=1e-4)
    assert after.mean() > before.mean() + 8, (before, after)
    assert (after > before + 4).all(), (before, after)
    assert [row["step"] for row in result.log] == [50, 100]
    assert result.log[-1]["loss"] < result.log[0]["loss"]


def test_lowshot_mmd_uses_the_median_bandwidth(faces: torch.Tensor) -> None:
    result = pretrain_lowshot(
        faces, loss="mmd", iterations=2, width=WIDTH, progress=False, log_every=1
    )
    assert result.bandwidth == pytest.approx(median_bandwidth(faces))
    fixed = pretrain_lowshot(
        faces, loss="mmd", mmd_bandwidth=123.0, iterations=1, width=WIDTH, progress=False
    )
    assert fixed.bandwidth == 123.0
    assert np.isfinite([row["loss"] for row in result.log]).all()
    with pytest.raises(ValueError):
        pretrain_lowshot(faces, loss="l1", iterations=1, width=WIDTH, progress=False)


def test_lowshot_resumes_to_the_uninterrupted_result(faces: torch.Tensor, tmp_path: Path) -> None:
    settings = {
        "loss": "mmd",
        "iterations": 6,
        "seed": 7,
        "width": WIDTH,
        "log_every": 1,
        "checkpoint_every": 2,
        "progress": False,
    }
    reference = pretrain_lowshot(faces, **settings)
    checkpoint = tmp_path / "lowshot.ckpt"
    stopped = pretrain_lowshot(faces, checkpoint_path=checkpoint, stop_after=5, **settings)
    assert not stopped.finished and stopped.step == 5 and checkpoint.exists()
    resumed = pretrain_lowshot(faces, checkpoint_path=checkpoint, **settings)
    assert resumed.finished and resumed.start_step == 4  # the last checkpoint, not step 0
    _assert_same_state(resumed.generator, reference.generator)
    assert torch.equal(resumed.codes, reference.codes)
    assert torch.equal(resumed.mean, reference.mean)
    assert torch.equal(resumed.covariance, reference.covariance)
    assert resumed.log == reference.log
    # A checkpoint from another run is refused, not mixed in.
    with pytest.raises(ValueError, match="another run"):
        pretrain_lowshot(faces, checkpoint_path=checkpoint, **{**settings, "seed": 8})


# ---------------------------------------------------------------------------------------
# The codes' Gaussian


def test_fit_gaussian_shrinkage_formula_and_positive_definite() -> None:
    codes = torch.randn(5, 16, generator=torch.Generator().manual_seed(0)) + 2.0
    shrinkage = 0.1
    mean, covariance = fit_gaussian(codes, shrinkage)
    sample = np.cov(codes.double().numpy(), rowvar=False)  # divisor S - 1
    expected = (1 - shrinkage) * sample + shrinkage * np.trace(sample) / 16 * np.eye(16)
    assert np.allclose(mean.numpy(), codes.double().mean(0).numpy(), atol=1e-6)
    assert np.allclose(covariance.numpy(), expected, atol=1e-5)
    eigenvalues = np.linalg.eigvalsh(covariance.double().numpy())
    assert eigenvalues.min() >= shrinkage * np.trace(sample) / 16 * (1 - 1e-4)
    # Without shrinkage, S = 5 < k = 16 leaves the covariance singular.
    _, singular = fit_gaussian(codes, 0.0)
    assert np.linalg.eigvalsh(singular.double().numpy()).min() < 1e-5
    with pytest.raises(ValueError):
        fit_gaussian(codes, 1.5)


def test_sample_gaussian_is_seeded_and_has_the_right_moments() -> None:
    mean = torch.tensor([1.0, -2.0, 0.5])
    a = torch.tensor([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.2, -0.3, 0.5]])
    covariance = a @ a.T
    draws = sample_gaussian(mean, covariance, 20000, torch.Generator().manual_seed(1))
    assert draws.shape == (20000, 3) and draws.dtype == torch.float32
    assert torch.allclose(draws.mean(0), mean, atol=0.05)
    assert torch.allclose(torch.cov(draws.T), covariance, atol=0.05)
    first = sample_gaussian(mean, covariance, 2, torch.Generator().manual_seed(1))
    assert torch.equal(
        first, sample_gaussian(mean, covariance, 2, torch.Generator().manual_seed(1))
    )
    other = sample_gaussian(mean, covariance, 2, torch.Generator().manual_seed(2))
    assert not torch.equal(first, other)


# ---------------------------------------------------------------------------------------
# WGAN-GP


def _corpus(n: int = 12) -> torch.Tensor:
    return torch.randint(0, 256, (n, 64, 64, 3), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8
    )


GAN_SETTINGS = {
    "iterations": 4,
    "batch_size": 4,
    "critic_steps": 2,
    "seed": 11,
    "width": WIDTH,
    "checkpoint_every": 2,
    "log_every": 1,
    "progress": False,
    "calibration_samples": 64,
}


def test_wgan_gp_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    corpus = _corpus()
    reference = train_wgan_gp(corpus, **GAN_SETTINGS)
    assert reference.finished and [row["step"] for row in reference.log] == [1, 2, 3, 4]
    assert set(reference.log[0]) == {
        "step",
        "critic_loss",
        "generator_loss",
        "gradient_penalty",
        "wasserstein",
    }
    checkpoint = tmp_path / "gan.ckpt"
    stopped = train_wgan_gp(corpus, checkpoint_path=checkpoint, stop_after=3, **GAN_SETTINGS)
    assert not stopped.finished and stopped.step == 3
    resumed = train_wgan_gp(corpus, checkpoint_path=checkpoint, **GAN_SETTINGS)
    assert resumed.finished and resumed.start_step == 2  # the last checkpoint, not step 0
    _assert_same_state(resumed.generator, reference.generator)
    _assert_same_state(resumed.critic, reference.critic)
    assert resumed.log == reference.log
    # The stopped run's networks differ from the finished ones (training went on).
    assert not torch.equal(stopped.critic.net[0].weight, reference.critic.net[0].weight)
    with pytest.raises(ValueError, match="another run"):
        train_wgan_gp(corpus, checkpoint_path=checkpoint, **{**GAN_SETTINGS, "batch_size": 3})


def test_wgan_gp_accepts_float_or_uint8_images() -> None:
    corpus = _corpus()
    as_float = corpus.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    settings = {**GAN_SETTINGS, "iterations": 1, "critic_steps": 1}
    from_uint8 = train_wgan_gp(corpus, **settings)
    from_float = train_wgan_gp(as_float, **settings)
    _assert_same_state(from_uint8.critic, from_float.critic)
    assert from_uint8.generator.norm == "stored" and not from_uint8.generator.training


# ---------------------------------------------------------------------------------------
# Files, grids, logs


def test_lowshot_file_round_trip(faces: torch.Tensor, tmp_path: Path) -> None:
    result = pretrain_lowshot(faces, loss="mmd", iterations=1, width=WIDTH, progress=False)
    path = tmp_path / "model.h5"
    save_lowshot(path, result, {"seed": 5, "shots": 5})
    generator, codes, mean, covariance, attrs = load_lowshot(path)
    _assert_same_state(generator, result.generator)
    assert torch.equal(codes, result.codes)
    assert torch.equal(mean, result.mean) and torch.equal(covariance, result.covariance)
    assert attrs["loss"] == "mmd" and attrs["seed"] == 5 and attrs["shots"] == 5
    assert attrs["mmd_bandwidth"] == pytest.approx(result.bandwidth)
    assert generator.norm == "stored" and not generator.training
    with torch.no_grad():
        assert torch.equal(generator(codes), result.generator(result.codes))


def test_gan_file_round_trip(tmp_path: Path) -> None:
    result = train_wgan_gp(_corpus(), **{**GAN_SETTINGS, "iterations": 1, "critic_steps": 1})
    path = tmp_path / "generator.h5"
    save_gan(path, result.generator, {"iterations": 1})
    generator = load_gan(path)
    _assert_same_state(generator, result.generator)
    assert generator.norm == "stored" and not generator.training
    with pytest.raises(ValueError, match="not a low-shot model"):
        load_lowshot(path)


def test_sample_grid_is_seeded_uint8(faces: torch.Tensor) -> None:
    result = pretrain_lowshot(faces, iterations=1, width=WIDTH, progress=False)
    grid = sample_grid(result.generator, 5, seed=0, mean=result.mean, covariance=result.covariance)
    assert grid.dtype == np.uint8
    assert grid.shape == (2 * 64 + 3 * 2, 3 * 64 + 4 * 2, 3)  # 2 rows x 3 columns, padding 2
    assert np.array_equal(
        grid, sample_grid(result.generator, 5, 0, mean=result.mean, covariance=result.covariance)
    )
    assert not np.array_equal(grid, sample_grid(result.generator, 5, seed=1))
    assert (grid[:2] == 255).all()  # the padding


def test_write_log_csv(tmp_path: Path) -> None:
    rows = [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 1.5, "psnr": 20.25}]
    path = tmp_path / "log.csv"
    write_log_csv(path, rows)
    assert path.read_text().splitlines() == ["step,loss,psnr", "1,2.5,", "2,1.5,20.25"]
    frame = pd.read_csv(path)
    assert frame["loss"].tolist() == [2.5, 1.5] and frame["psnr"].isna().tolist() == [True, False]
