"""The WGAN-GP generator's validation curve (gan.validate_every, lowshot/training/validation.py):
the curve's steps and finite PSNRs, nothing written and training unchanged when it is off
or on, the curve continued by a resumed run, early stopping (gan.patience) that a resumed
run keeps, the best point's generator saved with patience on (also after a resume, and
when training reaches the end) and the last step's with it off, and the config and rule
plumbing."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from lowshot import jobs
from lowshot.config import ConfigError, schema_defaults, validate_config
from lowshot.io import load_gan
from lowshot.training import (
    GAN_VALIDATION_KEYS,
    TrainingRun,
    gan_rule_settings,
    loop,
    train_wgan_gp,
    with_validation_defaults,
)
from lowshot.training import validation as gan_validation

RUNTIME = jobs.Runtime(seed=0, device="cpu", precision="fp32", latent_dim=128, threads=1)
QUIET = {"width": 8, "progress": False}
TINY = {
    "iterations": 5,
    "batch_size": 4,
    "critic_steps": 1,
    "checkpoint_every": 2,
    "log_every": 1,
    "calibration_samples": 16,
    "validation_faces": 2,
    "validation_steps": 3,
}

pytestmark = pytest.mark.usefixtures("one_thread")


def gan_config(**overrides: Any) -> dict[str, Any]:
    return {**schema_defaults("gan"), **TINY, **overrides}


def run_of(**mechanics: Any) -> TrainingRun:
    return TrainingRun(latent_dim=128, seed=5, device="cpu", precision="fp32", **QUIET, **mechanics)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """Eight random uint8 faces: rows 0-5 the GAN corpus, 6-7 the validation faces."""
    return np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def store(faces: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("store")
    ids = [f"{i:06d}.jpg" for i in range(len(faces))]
    string = h5py.string_dtype()
    with h5py.File(root / "images.h5", "w") as handle:
        handle["images"] = faces
        handle.create_dataset("ids", data=np.array(ids, dtype=object), dtype=string)
    with h5py.File(root / "splits.h5", "w") as handle:
        handle["test"] = np.array([6], np.int64)
        handle.create_dataset("test_ids", data=np.array(ids[6:7], dtype=object), dtype=string)
        handle["validation"] = np.array([6, 7], np.int64)
        handle.create_dataset("validation_ids", data=np.array(ids[6:8], dtype=object), dtype=string)
        handle["gan_corpus"] = np.arange(6, dtype=np.int64)
        handle["shots/S2"] = np.array([0, 1], np.int64)
    return {"images": root / "images.h5", "splits": root / "splits.h5"}


def train_job(store: dict[str, Path], out: Path, settings: dict[str, Any]) -> dict[str, Path]:
    out.mkdir()
    paths = {
        "generator_out": out / "generator.h5",
        "losses_out": out / "losses.csv",
        "samples_out": out / "samples.png",
        "validation_out": out / "validation.csv",
        "checkpoint": out / "checkpoint.pt",
    }
    jobs.train_gan_job(
        store["images"], store["splits"], settings=settings, runtime=RUNTIME, **paths, **QUIET
    )
    return paths


def read_curve(path: Path) -> list[dict[str, float]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def test_the_job_writes_the_curve_and_trains_as_without_it(store, tmp_path) -> None:
    on = train_job(store, tmp_path / "on", gan_config(validate_every=2))
    curve = read_curve(on["validation_out"])
    # Every validate_every steps and at the last one; finite PSNRs on [0, 1] images.
    assert [row["step"] for row in curve] == [2, 4, 5]
    assert list(curve[0]) == list(gan_validation.COLUMNS)
    assert all(math.isfinite(row["psnr"]) and 0 < row["psnr"] < 100 for row in curve)
    assert all(row["diverged"] == 0 for row in curve)
    assert not on["checkpoint"].exists()

    off = train_job(store, tmp_path / "off", gan_config(validate_every=0))
    assert not off["validation_out"].exists()  # off: nothing written
    # The curve is measured on copies: training is bit for bit the same.
    assert_same_state(load_gan(on["generator_out"]), load_gan(off["generator_out"]))
    assert on["losses_out"].read_bytes() == off["losses_out"].read_bytes()


def test_off_leaves_training_and_its_checkpoint_as_before(faces, tmp_path) -> None:
    # validate_every=0: no validation faces needed, no curve, no validation in the
    # checkpoint, the same networks as a run that never had the keys' values changed.
    settings = gan_config(validate_every=0)
    checkpoint = tmp_path / "off.pt"
    plain = train_wgan_gp(faces[:6], settings, run_of(checkpoint_path=checkpoint, stop_after=2))
    assert plain.validation == [] and not plain.stopped_early
    saved = torch.load(checkpoint, weights_only=True)
    assert "validation" not in saved and "validation" not in saved["settings"]
    assert "stopped_early" not in saved
    other = train_wgan_gp(
        faces[:6], gan_config(validate_every=0, validation_faces=5, patience=3), run_of()
    )
    reference = train_wgan_gp(faces[:6], settings, run_of())
    assert_same_state(other.generator, reference.generator)
    with pytest.raises(ValueError, match="validation faces"):
        train_wgan_gp(faces[:6], gan_config(validate_every=1), run_of())


def test_a_resumed_run_continues_the_curve(faces, tmp_path) -> None:
    settings = gan_config(validate_every=1, iterations=4)
    reference = train_wgan_gp(faces[:6], settings, run_of(), validation_images=faces[6:])
    assert [row["step"] for row in reference.validation] == [1, 2, 3, 4]
    checkpoint = tmp_path / "gan.pt"
    seen: list[list[dict[str, float]]] = []
    stopped = train_wgan_gp(
        faces[:6],
        settings,
        run_of(checkpoint_path=checkpoint, stop_after=3),
        validation_images=faces[6:],
        on_validation=seen.append,
    )
    assert not stopped.finished and [len(rows) for rows in seen] == [1, 2, 3]
    resumed = train_wgan_gp(
        faces[:6],
        settings,
        run_of(checkpoint_path=checkpoint),
        validation_images=faces[6:],
        on_validation=seen.append,
    )
    # Resumed from step 2's checkpoint: points 1-2 come from it, 3-4 are measured again.
    assert resumed.start_step == 2 and resumed.finished
    assert [len(rows) for rows in seen[3:]] == [3, 4]
    assert resumed.validation == reference.validation
    assert_same_state(resumed.generator, reference.generator)
    # Other validation settings make another run: its checkpoint is not mixed in.
    with pytest.raises(ValueError, match="another run"):
        train_wgan_gp(
            faces[:6],
            {**settings, "validation_steps": 4},
            run_of(checkpoint_path=checkpoint),
            validation_images=faces[6:],
        )


def test_patience_stops_early_and_a_resumed_stop_stays_stopped(
    faces, tmp_path, monkeypatch
) -> None:
    scores = iter([10.0, 12.0, 11.0, 11.5, 13.0, 14.0, 15.0, 16.0])

    def scripted(self, generator, calibration, step):
        return {"step": step, "psnr": next(scores), "psnr_std": 0.0, "diverged": 0}

    monkeypatch.setattr(gan_validation.GanValidation, "__call__", scripted)
    settings = gan_config(validate_every=1, iterations=8, checkpoint_every=3, patience=2)
    checkpoint = tmp_path / "gan.pt"
    run = run_of(checkpoint_path=checkpoint)
    result = train_wgan_gp(faces[:6], settings, run, validation_images=faces[6:])
    # Best at step 2 (12 dB); steps 3 and 4 do not beat it: stop after step 4.
    assert result.stopped_early and result.finished and result.step == 4
    assert [row["psnr"] for row in result.validation] == [10.0, 12.0, 11.0, 11.5]
    assert result.log[-1]["step"] == 4  # the stopping step is logged
    assert result.generator.norm == "stored"  # calibrated like a finished run
    again = train_wgan_gp(faces[:6], settings, run, validation_images=faces[6:])
    assert again.stopped_early and again.start_step == 4 and again.step == 4
    assert again.validation == result.validation
    assert_same_state(again.generator, result.generator)


def script_scores(monkeypatch, scores: dict[int, float]) -> dict[int, dict[str, torch.Tensor]]:
    """Make each validation point score ``scores[step]``; returns, by step, the state of
    the generator that point scores (a calibrated copy, as ``GanValidation`` makes)."""
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def scripted(self, generator, calibration, step):
        model = copy.deepcopy(generator)
        loop.calibrate_batch_norm(model, calibration)
        snapshots[step] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"step": step, "psnr": scores[step], "psnr_std": 0.0, "diverged": 0}

    monkeypatch.setattr(gan_validation.GanValidation, "__call__", scripted)
    return snapshots


def assert_state_is(model: torch.nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert state.keys() == snapshot.keys()
    for key in state:
        assert torch.equal(state[key], snapshot[key]), key


def states_differ(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[key], b[key]) for key in a)


def test_patience_saves_the_best_points_generator(faces, tmp_path, monkeypatch) -> None:
    snapshots = script_scores(monkeypatch, {1: 10.0, 2: 12.0, 3: 11.0, 4: 11.0})
    settings = gan_config(validate_every=1, iterations=8, checkpoint_every=3, patience=2)
    checkpoint = tmp_path / "gan.pt"
    result = train_wgan_gp(
        faces[:6], settings, run_of(checkpoint_path=checkpoint), validation_images=faces[6:]
    )
    # Best at step 2; steps 3 and 4 do not beat it: stop after step 4, save step 2's.
    assert result.stopped_early and result.step == 4 and result.saved_step == 2
    assert states_differ(snapshots[2], snapshots[4])
    assert_state_is(result.generator, snapshots[2])
    assert [row["saved"] for row in result.validation] == [0, 1, 0, 0]
    assert [row["psnr"] for row in result.validation] == [10.0, 12.0, 11.0, 11.0]
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["best"]["step"] == 2
    # The stopped run's checkpoint gives the same generator back.
    again = train_wgan_gp(
        faces[:6], settings, run_of(checkpoint_path=checkpoint), validation_images=faces[6:]
    )
    assert again.start_step == 4 and again.saved_step == 2
    assert_state_is(again.generator, snapshots[2])


def test_a_resumed_run_keeps_the_best_generator(faces, tmp_path, monkeypatch) -> None:
    snapshots = script_scores(monkeypatch, {1: 10.0, 2: 12.0, 3: 11.0, 4: 11.0})
    settings = gan_config(validate_every=1, iterations=8, checkpoint_every=3, patience=2)
    reference = train_wgan_gp(faces[:6], settings, run_of(), validation_images=faces[6:])
    best = snapshots[2]
    checkpoint = tmp_path / "gan.pt"
    killed = train_wgan_gp(
        faces[:6],
        settings,
        run_of(checkpoint_path=checkpoint, stop_after=3),
        validation_images=faces[6:],
    )
    # Killed after step 3: not finished, the generator is step 3's, no "saved" yet.
    assert not killed.finished and killed.saved_step == 3
    assert all("saved" not in row for row in killed.validation)
    assert torch.load(checkpoint, weights_only=True)["best"]["step"] == 2
    snapshots.clear()
    resumed = train_wgan_gp(
        faces[:6], settings, run_of(checkpoint_path=checkpoint), validation_images=faces[6:]
    )
    # Resumed at step 3 (its checkpoint holds step 2's generator): only step 4 is scored.
    assert resumed.start_step == 3 and sorted(snapshots) == [4]
    assert resumed.stopped_early and resumed.step == 4 and resumed.saved_step == 2
    assert_state_is(resumed.generator, best)
    assert_same_state(resumed.generator, reference.generator)
    assert resumed.validation == reference.validation


def test_reaching_the_end_saves_the_best_and_patience_0_the_last(
    faces, tmp_path, monkeypatch
) -> None:
    snapshots = script_scores(monkeypatch, {1: 10.0, 2: 12.0, 3: 11.0, 4: 11.5})
    on = train_wgan_gp(
        faces[:6],
        gan_config(validate_every=1, iterations=4, patience=3),
        run_of(),
        validation_images=faces[6:],
    )
    assert on.finished and not on.stopped_early and on.saved_step == 2
    assert_state_is(on.generator, snapshots[2])
    assert [row["saved"] for row in on.validation] == [0, 1, 0, 0]

    # patience 0: the curve is only a record; the last step's generator, bit for bit
    # that of a run without the curve, and the checkpoint holds no best generator.
    checkpoint = tmp_path / "off.pt"
    off = train_wgan_gp(
        faces[:6],
        gan_config(validate_every=1, iterations=4, patience=0),
        run_of(checkpoint_path=checkpoint),
        validation_images=faces[6:],
    )
    assert off.finished and off.saved_step == 4
    assert_state_is(off.generator, snapshots[4])
    assert states_differ(snapshots[2], snapshots[4])
    assert all(list(row) == list(gan_validation.COLUMNS) for row in off.validation)
    saved = torch.load(checkpoint, weights_only=True)
    assert "best" not in saved and "keeps" not in saved["settings"]["validation"]
    plain = train_wgan_gp(faces[:6], gan_config(validate_every=0, iterations=4), run_of())
    assert_same_state(off.generator, plain.generator)
    assert plain.saved_step == 4


def test_no_finite_point_saves_the_last_step(faces, monkeypatch) -> None:
    snapshots = script_scores(monkeypatch, {1: math.nan, 2: math.nan})
    result = train_wgan_gp(
        faces[:6],
        gan_config(validate_every=1, iterations=4, patience=2),
        run_of(),
        validation_images=faces[6:],
    )
    assert result.stopped_early and result.step == 2 and result.saved_step == 2
    assert_state_is(result.generator, snapshots[2])
    assert [row["saved"] for row in result.validation] == [0, 1]


def test_the_job_saves_the_best_generator_and_marks_it(store, tmp_path, monkeypatch) -> None:
    snapshots = script_scores(monkeypatch, {2: 12.0, 4: 11.0, 5: 11.0})
    paths = train_job(store, tmp_path / "best", gan_config(validate_every=2, patience=2))
    curve = read_curve(paths["validation_out"])
    # The curve's columns, then "saved": the point whose generator generator.h5 holds.
    assert list(curve[0]) == [*gan_validation.COLUMNS, "saved"]
    assert [(row["step"], row["saved"]) for row in curve] == [(2, 1), (4, 0), (5, 0)]
    assert_state_is(load_gan(paths["generator_out"]), snapshots[2])
    assert states_differ(snapshots[2], snapshots[5])


def test_stale_counts_points_since_the_best() -> None:
    curve = gan_validation.ValidationCurve()
    assert not curve.stale(1)
    for value in (1.0, 3.0, 2.0, math.nan, 3.0):
        curve.rows.append({"step": 0, "psnr": value})
    assert curve.best() == 1
    assert curve.stale(3) and not curve.stale(4) and not curve.stale(0)


def test_config_and_rule_plumbing() -> None:
    defaults = schema_defaults("gan")
    assert defaults["validate_every"] == 0 and defaults["patience"] == 0  # off by default
    # Off: the rule's params are those of before the keys existed (no rerun of a GAN).
    assert set(gan_rule_settings(defaults)) == set(defaults) - set(GAN_VALIDATION_KEYS)
    assert with_validation_defaults(gan_rule_settings(defaults)) == defaults
    on = {**defaults, "validate_every": 100}
    assert gan_rule_settings(on) == on
    with pytest.raises(ConfigError, match=r"gan\.validation_faces"):
        validate_config(
            {"gan": {"validate_every": 10, "validation_faces": 30}, "split": {"n_validation": 20}}
        )
    validate_config({"gan": {"validate_every": 10, "validation_faces": 20}})


def test_the_job_needs_enough_validation_faces(store, tmp_path) -> None:
    with pytest.raises(ValueError, match="validation_faces=3"):
        train_job(store, tmp_path / "few", gan_config(validate_every=2, validation_faces=3))


def test_each_point_scores_a_calibrated_copy(faces) -> None:
    result = train_wgan_gp(faces[:6], gan_config(iterations=1), run_of())
    settings = gan_config(validate_every=1)
    check = gan_validation.GanValidation(faces[6:], settings, run_of(), torch.device("cpu"))
    before = {k: v.clone() for k, v in result.generator.state_dict().items()}
    codes = [torch.randn(8, 128, generator=torch.Generator().manual_seed(0))]
    row = check(result.generator, codes, 1)
    after = result.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # left unchanged
    assert row["step"] == 1 and math.isfinite(row["psnr"]) and row["diverged"] == 0
