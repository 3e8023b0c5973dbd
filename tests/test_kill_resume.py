"""The training jobs survive a real kill: SIGKILL mid-run, rerun, same result.

Each training job (``train_gan_job``, ``pretrain_lowshot_job``, what the rules
``train_gan`` and ``pretrain_lowshot`` run) is started in a forked child process with an
iteration count it cannot finish, and killed with SIGKILL once it has written a
checkpoint, as Slurm preemption or a node failure would. The rerun (Snakemake's
``--rerun-incomplete``) then runs the same job with the iteration count of a reference
run: it must log that it resumed from the checkpoint's step, not from step 0, and its
outputs must equal those of the uninterrupted reference run bit for bit (CPU, same seeds).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from multiprocessing.process import BaseProcess as Process
from pathlib import Path

import numpy as np
import pytest
import torch

from lowshot import data, jobs
from lowshot.config import schema_defaults
from lowshot.io import read_h5
from lowshot.logs import setup_rule_logging

pytestmark = pytest.mark.slow

# The jobs' run options (``training.TrainingRun``): narrow networks (seconds per run, same
# code paths), quietly.
OPTIONS = {"width": 8, "progress": False}
GAN_SETTINGS = {
    **schema_defaults("gan"),
    "batch_size": 4,
    "critic_steps": 2,
    "checkpoint_every": 2,
    "log_every": 1,
    "calibration_samples": 16,
}
LOWSHOT_SETTINGS = {**schema_defaults("lowshot"), "checkpoint_every": 2, "log_every": 1}
RUNTIME = jobs.Runtime(seed=3, device="cpu", precision="fp32", latent_dim=128, threads=1)
NEVER_ENDS = 10**9  # iterations of the run that gets killed
KILL_TIMEOUT_S = 900
FORK = multiprocessing.get_context("fork")


@pytest.fixture(scope="module")
def store(shared_celeba: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 40-face image store and its split (3 test images, shots 5, GAN corpus 30)."""
    folder = tmp_path_factory.mktemp("store")
    images, splits = folder / "images.h5", folder / "splits.h5"
    data.extract_images(
        shared_celeba / "celeba-test-faces-64.zip", images, max_images=40, progress=False
    )
    data.split_data(images, splits, n_test=3, shots=[5], gan_corpus_size=30, seed=0)
    return {"images": images, "splits": splits}


def job_arguments(kind: str, out: Path, iterations: int) -> dict:
    """Keyword arguments of the job function ``kind`` writing into ``out``."""
    common = {"runtime": RUNTIME, **OPTIONS}
    if kind == "train_gan_job":
        return {
            **common,
            "generator_out": str(out / "generator.h5"),
            "losses_out": str(out / "losses.csv"),
            "samples_out": str(out / "samples.png"),
            "checkpoint": str(out / "checkpoint.pt"),
            "settings": {**GAN_SETTINGS, "iterations": iterations},
        }
    return {
        **common,
        "loss": "mmd",
        "shots": 5,
        "model_out": str(out / "model.h5"),
        "losses_out": str(out / "losses.csv"),
        "checkpoint": str(out / "checkpoint.pt"),
        "settings": {**LOWSHOT_SETTINGS, "iterations": iterations},
    }


def run_job(kind: str, store: dict[str, Path], out: Path, iterations: int) -> None:
    """Body of the child process: the job function, logging to ``out / 'job.log'``."""
    setup_rule_logging(out / "job.log")
    getattr(jobs, kind)(store["images"], store["splits"], **job_arguments(kind, out, iterations))


def start_job(kind: str, store: dict[str, Path], out: Path, iterations: int) -> Process:
    """Run ``lowshot.jobs.<kind>`` in a child process that logs to ``out / 'job.log'``.

    The child is forked: it inherits the imported torch instead of importing it again,
    which costs minutes on a slow CPU; it is as separate a process as a fresh one for
    SIGKILL, files and exit codes.
    """
    out.mkdir(exist_ok=True)
    process = FORK.Process(target=run_job, args=(kind, store, out, iterations))
    process.start()
    return process


def checkpoint_step(path: Path) -> int | None:
    """The step of a complete checkpoint file, None while there is none."""
    if not path.exists():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=False)["step"])


def kill_after_checkpoint(process: Process, checkpoint: Path) -> int:
    """SIGKILL ``process`` once ``checkpoint`` exists; return the checkpoint's step."""
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while checkpoint_step(checkpoint) is None:
        assert process.is_alive(), "the job ended before writing a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within the time limit"
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    assert process.exitcode == -signal.SIGKILL
    step = checkpoint_step(checkpoint)
    assert step is not None and step >= 2
    return step


@pytest.mark.parametrize(
    ("kind", "result_file"),
    [("train_gan_job", "generator.h5"), ("pretrain_lowshot_job", "model.h5")],
)
def test_killed_training_resumes_to_the_uninterrupted_result(
    kind: str, result_file: str, store: dict[str, Path], tmp_path: Path
) -> None:
    killed_dir = tmp_path / "killed"
    step = kill_after_checkpoint(
        start_job(kind, store, killed_dir, NEVER_ENDS), killed_dir / "checkpoint.pt"
    )
    assert not (killed_dir / result_file).exists()
    iterations = step + 3  # the rerun must train past the checkpoint

    rerun = start_job(kind, store, killed_dir, iterations)
    rerun.join(timeout=KILL_TIMEOUT_S)
    assert rerun.exitcode == 0
    log = (killed_dir / "job.log").read_text()
    assert f"at step {step}" in log and "resuming from checkpoint" in log, log
    assert not (killed_dir / "checkpoint.pt").exists()  # removed once the outputs exist

    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    getattr(jobs, kind)(
        store["images"], store["splits"], **job_arguments(kind, reference_dir, iterations)
    )
    resumed, _ = read_h5(killed_dir / result_file)
    reference, _ = read_h5(reference_dir / result_file)
    assert resumed.keys() == reference.keys() and resumed
    for name in reference:
        np.testing.assert_array_equal(resumed[name], reference[name], err_msg=name)
    assert (killed_dir / "losses.csv").read_text() == (reference_dir / "losses.csv").read_text()
