"""The precision policy (``lowshot.devices.set_precision``, its one home): ``fp32`` is IEEE
fp32 everywhere (TF32 off in cuDNN and cuBLAS, which torch's own default leaves on for
cuDNN convolutions), ``tf32`` opts in on CUDA, ``bf16`` autocasts on CUDA; the schema
takes exactly those values; every job applies it, logs it in its device line and records
it beside ``effective_precision`` in every file it writes.

No CUDA here: the flags the policy sets are torch's process-wide settings, readable on a
CPU build, and ``torch.device("cuda")`` names a device without touching one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import write_tiny_data

from lowshot import jobs
from lowshot.config import ConfigError, load_schema, validate_config
from lowshot.devices import PRECISIONS, effective_precision, prepare_device, set_precision
from lowshot.io import read_h5, read_recovery, save_gan
from lowshot.methods.engine import optimise_latent
from lowshot.models import Generator, init_dcgan_weights
from lowshot.problems.compressed_sensing import GaussianCS

CUDA = torch.device("cuda")  # a name only: nothing here runs on it
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_thread")


def flags() -> tuple[bool, bool, str]:
    return (
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        torch.get_float32_matmul_precision(),
    )


@pytest.fixture(autouse=True)
def torch_defaults() -> Iterator[None]:
    """Each test starts from torch's own defaults (cuDNN TF32 on, matmul TF32 off) and
    leaves them as it found them."""
    saved = flags()
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved[:2]
    torch.set_float32_matmul_precision(saved[2])


@pytest.mark.parametrize(
    ("precision", "device", "expected_flags", "effective"),
    [
        ("fp32", CUDA, (False, False, "highest"), "fp32"),
        ("tf32", CUDA, (True, True, "high"), "tf32"),
        ("bf16", CUDA, (False, False, "highest"), "bf16"),
        # TF32 and bf16 autocast are CUDA-only: on the CPU every value is IEEE fp32.
        ("fp32", CPU, (False, False, "highest"), "fp32"),
        ("tf32", CPU, (False, False, "highest"), "fp32"),
        ("bf16", CPU, (False, False, "highest"), "fp32"),
    ],
)
def test_the_policy_sets_the_flags(precision, device, expected_flags, effective) -> None:
    assert torch.backends.cudnn.allow_tf32  # torch's default: TF32 convolutions
    assert set_precision(precision, device) == effective
    assert flags() == expected_flags
    assert effective_precision(precision, device) == effective


def test_a_job_device_line_applies_and_logs_the_policy(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lowshot.devices"):
        device = prepare_device("cpu", 1, "fp32")
    assert device == CPU and flags() == (False, False, "highest")
    assert "device: cpu (1 torch threads), precision fp32 (IEEE fp32 everywhere, no TF32)" in (
        caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lowshot.devices"):
        prepare_device("cpu", 1, "tf32")
    assert "precision fp32 (IEEE fp32 everywhere, no TF32; tf32 asked)" in caplog.text


def test_every_stage_applies_its_precision() -> None:
    """A recovery stage called outside a job (a benchmark, a test) gets the policy too."""
    generator = Generator(16, width=4).eval().requires_grad_(False)
    generator.norm = "stored"
    operator = GaussianCS(0.05, seed=1)
    optimise_latent(
        generator, operator, torch.zeros(1, operator.m), torch.zeros(1, 16), steps=1, lr=0.1,
        precision="fp32", progress=False,
    )  # fmt: skip
    assert flags() == (False, False, "highest")


def test_the_schema_takes_the_policys_values_only() -> None:
    assert load_schema()["properties"]["precision"]["enum"] == list(PRECISIONS)
    assert PRECISIONS == ("fp32", "tf32", "bf16")
    assert validate_config({"precision": "tf32"})["precision"] == "tf32"
    assert validate_config({})["precision"] == "fp32"
    with pytest.raises(
        ConfigError, match=r"precision: unknown value 'fp16'; known: fp32, tf32, bf16"
    ):
        validate_config({"precision": "fp16"})
    with pytest.raises(ValueError, match="precision must be one of fp32, tf32, bf16"):
        set_precision("fp16", CPU)


# --- every output file records it -----------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """images.h5 and splits.h5 of six random faces (two test, a 2-shot subset and a GAN
    corpus of four), and a small GAN."""
    root = tmp_path_factory.mktemp("precision")
    write_tiny_data(root, 6, test=[0, 1], gan_corpus=[2, 3, 4, 5], shots={2: [2, 3]})
    generator = Generator(16, width=4)
    init_dcgan_weights(generator, torch.Generator().manual_seed(3))
    save_gan(root / "generator.h5", generator.eval())
    return {
        "images": root / "images.h5",
        "splits": root / "splits.h5",
        "gan": root / "generator.h5",
    }


RUNTIME = jobs.Runtime(seed=0, device="cpu", precision="tf32", latent_dim=16, threads=1)
TINY = {"width": 4, "progress": False}


def written_attrs(kind: str, files: dict[str, Path], out: Path) -> dict:
    """The root attributes of the file job ``kind`` writes, run tiny with precision tf32."""
    from lowshot.config import schema_defaults

    common = {"runtime": RUNTIME}
    if kind == "recover":
        output = out / "shard0.h5"
        jobs.recover_job(
            files["images"], files["splits"], files["gan"], output=output, problem="cs-0.1",
            method="csgm", positions=(0, 2), settings={"steps": 1, "restarts": 1},
            noise_std=0.0, **common,
        )  # fmt: skip
        return read_recovery(output)[1]
    if kind == "train_gan":
        settings = {
            **schema_defaults("gan"), "iterations": 1, "batch_size": 2, "critic_steps": 1,
            "calibration_samples": 4,
        }  # fmt: skip
        jobs.train_gan_job(
            files["images"], files["splits"], generator_out=out / "generator.h5",
            losses_out=out / "losses.csv", samples_out=out / "samples.png",
            checkpoint=out / "gan.pt", settings=settings, **common, **TINY,
        )  # fmt: skip
        return read_h5(out / "generator.h5")[1]
    if kind == "pretrain_lowshot":
        jobs.pretrain_lowshot_job(
            files["images"], files["splits"], loss="l2", shots=2, model_out=out / "model.h5",
            losses_out=out / "losses.csv", checkpoint=out / "lowshot.pt",
            settings={**schema_defaults("lowshot"), "iterations": 1}, **common, **TINY,
        )  # fmt: skip
        return read_h5(out / "model.h5")[1]
    jobs.fit_learned_reg_job(
        files["images"], files["splits"], shots=2, stats_out=out / "stats.h5",
        fits_out=out / "fits.csv", settings={"steps": 1}, **common, **TINY,
    )  # fmt: skip
    return read_h5(out / "stats.h5")[1]


@pytest.mark.parametrize("kind", ["recover", "train_gan", "pretrain_lowshot", "fit_learned_reg"])
def test_every_job_records_the_precision_beside_what_ran(
    kind: str, files: dict[str, Path], tmp_path: Path
) -> None:
    attrs = written_attrs(kind, files, tmp_path)
    # tf32 asked, on the CPU: IEEE fp32 is what ran.
    assert attrs["precision"] == "tf32"
    assert attrs["effective_precision"] == "fp32"
    assert attrs["device"] == "cpu" and attrs["cuda_graphs"] in (False, 0)
