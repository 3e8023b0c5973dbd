"""Training: settings from the config schema, low-shot pre-training fits real faces,
WGAN-GP, resuming from checkpoints (equal to uninterrupted runs), generator files, sample
grids, logs. The Gaussian prior: tests/test_gaussian.py."""

from __future__ import annotations

import copy
import io
import zipfile
from dataclasses import FrozenInstanceError, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lowshot import jobs
from lowshot.config import schema_defaults
from lowshot.io import load_gan, load_lowshot, save_gan, save_lowshot
from lowshot.losses import median_bandwidth
from lowshot.metrics import psnr
from lowshot.training import (
    LOWSHOT_SELECTION_KEYS,
    TrainingRun,
    lowshot_settings,
    pretrain_lowshot,
    sample_grid,
    train_wgan_gp,
    write_log_csv,
)
from lowshot.training.pretrain import pretraining_codes

FACES_ZIP = (
    Path(__file__).resolve().parents[1].parent / "shared/data/celeba/celeba-test-faces-64.zip"
)
WIDTH = 8  # narrow networks keep the resume tests fast; the fitting test uses more

pytestmark = pytest.mark.usefixtures("one_thread")


def run_of(seed: int, width: int = WIDTH, **mechanics: Any) -> TrainingRun:
    """How a test training runs: the schema's latent size on the CPU in fp32, narrow and
    quiet, with ``seed`` and ``mechanics`` (checkpoint_path, stop_after)."""
    return TrainingRun(
        latent_dim=schema_defaults("model")["latent_dim"],
        seed=seed,
        device="cpu",
        precision="fp32",
        progress=False,
        width=width,
        **mechanics,
    )


def lowshot_config(**overrides: object) -> dict:
    """The schema's ``lowshot`` section with ``overrides``."""
    return {**schema_defaults("lowshot"), **overrides}


def gan_config(**overrides: object) -> dict:
    """The schema's ``gan`` section with ``overrides``."""
    return {**schema_defaults("gan"), **overrides}


def _read_faces(n: int) -> torch.Tensor:
    """The first n faces of the shared zip as (n, 3, 64, 64) float in [-1, 1]."""
    assert FACES_ZIP.exists(), f"shared test data missing: {FACES_ZIP}"
    with zipfile.ZipFile(FACES_ZIP) as archive:
        names = sorted(name for name in archive.namelist() if name.endswith(".jpg"))[:n]
        arrays = [
            np.asarray(Image.open(io.BytesIO(archive.read(name))).convert("RGB")) for name in names
        ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    return _read_faces(5)


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


# ---------------------------------------------------------------------------------------
# Settings


def test_trainers_take_exactly_the_schema_sections() -> None:
    # shots and losses choose the models, they do not configure the training: dropped.
    assert set(LOWSHOT_SELECTION_KEYS) < set(schema_defaults("lowshot"))
    assert list(lowshot_settings(lowshot_config())) == [
        key for key in schema_defaults("lowshot") if key not in LOWSHOT_SELECTION_KEYS
    ]


def test_a_run_takes_the_config_values_without_defaults() -> None:
    # latent_dim, seed, device and precision have their one home in the config schema.
    with pytest.raises(TypeError, match="missing 4 required"):
        TrainingRun()  # type: ignore[call-arg]
    run = TrainingRun(latent_dim=128, seed=0, device="cpu", precision="fp32")
    assert (run.checkpoint_path, run.progress, run.stop_after, run.width) == (None, True, None, 64)
    with pytest.raises(FrozenInstanceError):
        run.seed = 1  # type: ignore[misc]


def test_a_missing_or_unknown_setting_is_an_error(faces: torch.Tensor) -> None:
    missing = gan_config()
    del missing["gp_weight"]
    with pytest.raises(ValueError, match=r"gan settings: missing \['gp_weight'\]"):
        train_wgan_gp(_corpus(), missing, run_of(0))
    with pytest.raises(ValueError, match=r"unknown \['progress'\]"):
        train_wgan_gp(_corpus(), gan_config(progress=False), run_of(0))
    training_only = lowshot_settings(lowshot_config())
    del training_only["lr"]
    with pytest.raises(ValueError, match=r"lowshot settings: missing \['lr'\]"):
        pretrain_lowshot(faces, training_only, run_of(0), loss="l2")
    with pytest.raises(ValueError, match=r"unknown \['width'\]"):
        pretrain_lowshot(faces, lowshot_config(width=8), run_of(0), loss="l2")


# ---------------------------------------------------------------------------------------
# Low-shot pre-training


def test_lowshot_pretraining_fits_real_faces(faces: torch.Tensor) -> None:
    run = run_of(3, width=16)
    start = pretrain_lowshot(faces, lowshot_config(iterations=0, lr=3e-3), run, loss="l2")
    settings = lowshot_config(iterations=100, log_every=50, lr=3e-3)
    result = pretrain_lowshot(faces, settings, run, loss="l2")
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
    # l2 pairs G(z_i) with x_i: both the paired and the nearest-example PSNR are logged.
    assert set(result.log[0]) == {"step", "loss", "fit_psnr", "nearest_psnr"}
    assert result.log[-1]["nearest_psnr"] >= result.log[-1]["fit_psnr"] - 1e-6  # rounding


def test_lowshot_mmd_uses_the_median_bandwidth(faces: torch.Tensor) -> None:
    run = run_of(0)
    result = pretrain_lowshot(faces, lowshot_config(iterations=2, log_every=1), run, loss="mmd")
    assert result.bandwidth == pytest.approx(median_bandwidth(faces))
    fixed = pretrain_lowshot(
        faces, lowshot_config(mmd_bandwidth=123.0, iterations=1), run, loss="mmd"
    )
    assert fixed.bandwidth == 123.0
    assert np.isfinite([row["loss"] for row in result.log]).all()
    # The unbiased MMD ignores the pairs i = i': only the nearest-example PSNR is logged.
    assert set(result.log[0]) == {"step", "loss", "nearest_psnr"}
    with pytest.raises(ValueError):
        pretrain_lowshot(faces, lowshot_config(iterations=1), run, loss="l1")


def test_cuda_graphs_change_nothing_on_the_cpu(faces: torch.Tensor) -> None:
    settings = lowshot_config(iterations=3, log_every=1)
    plain = pretrain_lowshot(faces, settings, run_of(0), loss="mmd")
    graphed = pretrain_lowshot(faces, settings, run_of(0, cuda_graphs=True), loss="mmd")
    assert torch.equal(plain.codes, graphed.codes)
    for name, tensor in plain.generator.state_dict().items():
        assert torch.equal(tensor, graphed.generator.state_dict()[name]), name
    assert plain.log == graphed.log


def test_training_jobs_pass_the_configs_cuda_graphs() -> None:
    for cuda_graphs in (False, True):
        runtime = jobs.Runtime(0, "cpu", "fp32", 128, threads=1, cuda_graphs=cuda_graphs)
        run = jobs._training_run(runtime, "cpu", 7, "checkpoint.pt", {"progress": False})
        assert (run.cuda_graphs, run.seed, run.precision) == (cuda_graphs, 7, "fp32")


def test_lowshot_resumes_to_the_uninterrupted_result(faces: torch.Tensor, tmp_path: Path) -> None:
    settings = lowshot_config(iterations=6, log_every=1, checkpoint_every=2)
    reference = pretrain_lowshot(faces, settings, run_of(7), loss="mmd")
    checkpoint = tmp_path / "lowshot.ckpt"
    stop = run_of(7, checkpoint_path=checkpoint, stop_after=5)
    stopped = pretrain_lowshot(faces, settings, stop, loss="mmd")
    assert not stopped.finished and stopped.step == 5 and checkpoint.exists()
    resumed = pretrain_lowshot(faces, settings, run_of(7, checkpoint_path=checkpoint), loss="mmd")
    assert resumed.finished and resumed.start_step == 4  # the last checkpoint, not step 0
    _assert_same_state(resumed.generator, reference.generator)
    assert torch.equal(resumed.codes, reference.codes)
    assert torch.equal(resumed.mean, reference.mean)
    assert torch.equal(resumed.covariance, reference.covariance)
    assert resumed.log == reference.log
    # A checkpoint from another run is refused, not mixed in.
    with pytest.raises(ValueError, match="another run"):
        pretrain_lowshot(faces, settings, run_of(8, checkpoint_path=checkpoint), loss="mmd")


# ---------------------------------------------------------------------------------------
# WGAN-GP


def test_lowshot_models_start_paired() -> None:
    """One theta_0 for every (loss, S) of a seed, and nested initial codes."""
    faces = _read_faces(10)
    five = pretraining_codes(3, 5, 16)
    assert torch.equal(pretraining_codes(3, 10, 16)[:5], five)
    assert not torch.equal(pretraining_codes(4, 5, 16), five)
    start = {"iterations": 0}
    l2 = pretrain_lowshot(faces[:5], lowshot_config(**start), run_of(3), loss="l2")
    mmd = pretrain_lowshot(faces[:10], lowshot_config(**start), run_of(3), loss="mmd")
    pairs = zip(l2.generator.named_parameters(), mmd.generator.parameters(), strict=True)
    for (name, a), b in pairs:
        assert torch.equal(a, b), name
    assert mmd.codes.shape == (10, 128) and torch.equal(mmd.codes[:5], l2.codes)


def _corpus(n: int = 12) -> torch.Tensor:
    return torch.randint(0, 256, (n, 64, 64, 3), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8
    )


GAN_SETTINGS = gan_config(
    iterations=4,
    batch_size=4,
    critic_steps=2,
    checkpoint_every=2,
    log_every=1,
    calibration_samples=64,
)
GAN_RUN = run_of(11)


def test_wgan_gp_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    corpus = _corpus()
    reference = train_wgan_gp(corpus, GAN_SETTINGS, GAN_RUN)
    assert reference.finished and [row["step"] for row in reference.log] == [1, 2, 3, 4]
    assert set(reference.log[0]) == {
        "step",
        "critic_loss",
        "generator_loss",
        "gradient_penalty",
        "wasserstein",
    }
    checkpoint = tmp_path / "gan.ckpt"
    stop = replace(GAN_RUN, checkpoint_path=checkpoint, stop_after=3)
    stopped = train_wgan_gp(corpus, GAN_SETTINGS, stop)
    assert not stopped.finished and stopped.step == 3
    resumed = train_wgan_gp(corpus, GAN_SETTINGS, replace(GAN_RUN, checkpoint_path=checkpoint))
    assert resumed.finished and resumed.start_step == 2  # the last checkpoint, not step 0
    _assert_same_state(resumed.generator, reference.generator)
    _assert_same_state(resumed.critic, reference.critic)
    assert resumed.log == reference.log
    # The stopped run's networks differ from the finished ones (training went on).
    assert not torch.equal(stopped.critic.net[0].weight, reference.critic.net[0].weight)
    with pytest.raises(ValueError, match="another run"):
        train_wgan_gp(
            corpus, {**GAN_SETTINGS, "batch_size": 3}, replace(GAN_RUN, checkpoint_path=checkpoint)
        )


def test_wgan_gp_accepts_float_or_uint8_images() -> None:
    corpus = _corpus()
    as_float = corpus.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    settings = {**GAN_SETTINGS, "iterations": 1, "critic_steps": 1}
    from_uint8 = train_wgan_gp(corpus, settings, GAN_RUN)
    from_float = train_wgan_gp(as_float, settings, GAN_RUN)
    _assert_same_state(from_uint8.critic, from_float.critic)
    assert from_uint8.generator.norm == "stored" and not from_uint8.generator.training


# ---------------------------------------------------------------------------------------
# Files, grids, logs


def test_lowshot_file_round_trip(faces: torch.Tensor, tmp_path: Path) -> None:
    result = pretrain_lowshot(faces, lowshot_config(iterations=1), run_of(0), loss="mmd")
    path = tmp_path / "model.h5"
    save_lowshot(path, result, {"seed": 5, "shots": 5})
    model = load_lowshot(path)
    _assert_same_state(model.generator, result.generator)
    assert torch.equal(model.codes, result.codes)
    assert torch.equal(model.mean, result.mean)
    assert torch.equal(model.covariance, result.covariance)
    attrs = model.attrs
    assert attrs["loss"] == "mmd" and attrs["seed"] == 5 and attrs["shots"] == 5
    assert attrs["mmd_bandwidth"] == pytest.approx(result.bandwidth)
    assert attrs["covariance_shrinkage"] == result.shrinkage == 0.1
    assert model.generator.norm == "stored" and not model.generator.training
    with torch.no_grad():
        assert torch.equal(model.generator(model.codes), result.generator(result.codes))


def test_gan_file_round_trip(tmp_path: Path) -> None:
    settings = {**GAN_SETTINGS, "iterations": 1, "critic_steps": 1}
    result = train_wgan_gp(_corpus(), settings, GAN_RUN)
    path = tmp_path / "generator.h5"
    save_gan(path, result.generator, {"iterations": 1})
    generator = load_gan(path)
    _assert_same_state(generator, result.generator)
    assert generator.norm == "stored" and not generator.training
    with pytest.raises(ValueError, match="not a low-shot model"):
        load_lowshot(path)


def test_sample_grid_is_seeded_uint8(faces: torch.Tensor) -> None:
    result = pretrain_lowshot(faces, lowshot_config(iterations=1), run_of(0), loss="l2")
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
