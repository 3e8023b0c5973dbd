"""The recover job on tiny files: IAGAN continues the CSGM job's own result, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_tiny_data

from lowshot import jobs
from lowshot.io import read_recovery, save_gan
from lowshot.models import Generator, init_dcgan_weights

RUNTIME = jobs.Runtime(seed=0, device="cpu", precision="fp32", latent_dim=128, threads=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """images.h5 and splits.h5 of four random faces (two test images), and a small GAN."""
    root = tmp_path_factory.mktemp("job")
    write_tiny_data(root, 4, test=[0, 1], gan_corpus=[2, 3], shots={2: [2, 3]})
    generator = Generator(128, width=8)
    init_dcgan_weights(generator, torch.Generator().manual_seed(3))
    save_gan(root / "generator.h5", generator.eval())
    return {
        "images": root / "images.h5",
        "splits": root / "splits.h5",
        "gan": root / "generator.h5",
    }


def recover(files: dict[str, Path], method: str, settings: dict, output: Path, **start) -> Path:
    jobs.recover_job(
        files["images"],
        files["splits"],
        files["gan"],
        output=output,
        problem="cs-0.1",
        method=method,
        positions=(0, 2),
        settings=settings,
        noise_std=0.0,
        runtime=RUNTIME,
        **start,
    )
    return output


def test_iagan_starts_from_the_csgm_job_result_bit_for_bit(files, tmp_path) -> None:
    csgm = recover(files, "csgm", {"steps": 3, "restarts": 2}, tmp_path / "csgm.h5")
    # Without the back-projection, which would change even the 0-step result's image.
    joint = {"joint_theta_lr": 1e-3, "joint_z_lr": 1e-2, "back_project": "never"}
    first = recover(
        files, "iagan", {**joint, "joint_steps": 0}, tmp_path / "iagan0.h5", start_h5=csgm
    )
    later = recover(
        files, "iagan", {**joint, "joint_steps": 2}, tmp_path / "iagan2.h5", start_h5=csgm
    )
    (c, _), (f, _), (t, _) = (read_recovery(path) for path in (csgm, first, later))
    # IAGAN's first stage is the CSGM job's result itself: same z, same image, same loss.
    for field in ("z", "recovered", "measurement_loss", "iterations", "restarts", "diverged"):
        assert np.array_equal(f[field], c[field]), field
    assert np.isfinite(c["z"]).all() and c["z"].shape == (2, 128)
    # The image-adaptive stage then moves from there, and counts its steps on top.
    assert not np.array_equal(t["z"], c["z"])
    assert (t["iterations"] == c["iterations"] + 2).all()
    assert (t["restarts"] == 2).all()


def test_a_start_file_of_other_images_is_an_error(files, tmp_path) -> None:
    csgm = recover(files, "csgm", {"steps": 1, "restarts": 1}, tmp_path / "csgm.h5")
    with pytest.raises(ValueError, match="holds images"):
        jobs.read_start(csgm, ["000001.jpg", "000000.jpg"])
    with pytest.raises(ValueError, match="needs the recovery file of csgm"):
        recover(files, "iagan", {"joint_steps": 1}, tmp_path / "iagan.h5")
