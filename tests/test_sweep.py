"""benchmarks/sweep.py on tiny files: one common step-size factor for every method."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
import yaml

from lowshot.io import save_gan, save_lowshot
from lowshot.models import Generator, init_dcgan_weights

REPO = Path(__file__).resolve().parents[1]
STEPS = {
    "lowshot": {"z_steps": 2, "joint_steps": 1, "restarts": 1},
    "untrained": {"steps": 2, "window": 1},
    "csgm": {"steps": 2, "restarts": 1, "lr": 0.05},
    "iagan": {"joint_steps": 1},
}


def load_sweep() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sweep", REPO / "benchmarks" / "sweep.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sweep"] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


sweep = load_sweep()


def small_generator(seed: int) -> Generator:
    generator = Generator(128, width=8)
    init_dcgan_weights(generator, torch.Generator().manual_seed(seed))
    generator.norm = "stored"
    return generator.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """images.h5 of three random faces (one test, one validation), splits.h5, a small GAN
    and a small low-shot model (2 shots), and a config with a handful of steps."""
    root = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)
    ids = [f"{i:06d}.jpg" for i in range(3)]
    string = h5py.string_dtype()
    with h5py.File(root / "images.h5", "w") as handle:
        handle["images"] = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
        handle.create_dataset("ids", data=np.array(ids, dtype=object), dtype=string)
    with h5py.File(root / "splits.h5", "w") as handle:
        handle["test"] = np.array([0], np.int64)
        handle.create_dataset("test_ids", data=np.array(ids[:1], dtype=object), dtype=string)
        handle["validation"] = np.array([1], np.int64)
        handle.create_dataset("validation_ids", data=np.array(ids[1:2], dtype=object), dtype=string)
        handle["gan_corpus"] = np.array([2], np.int64)
        handle["shots/S1"] = np.array([2], np.int64)
    save_gan(root / "generator.h5", small_generator(1))
    codes = torch.randn(2, 128, generator=torch.Generator().manual_seed(2))
    model = SimpleNamespace(
        generator=small_generator(3),
        codes=codes,
        mean=codes.mean(0),
        covariance=torch.eye(128),
        loss="mmd",
        bandwidth=1.0,
        shrinkage=0.1,
        step=1,
    )
    save_lowshot(root / "model.h5", model)
    config = {"seed": 0, "device": "cpu", "recover": STEPS}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return {
        "images": root / "images.h5",
        "splits": root / "splits.h5",
        "gan": root / "generator.h5",
        "model": root / "model.h5",
        "config": root / "config.yaml",
    }


def run_sweep(files: dict[str, Path], *extra: str) -> dict:
    argv = [
        "--configfile",
        str(files["config"]),
        "--images-h5",
        str(files["images"]),
        "--splits-h5",
        str(files["splits"]),
        "--images",
        "1",
        "--threads",
        "1",
        "--factors",
        "0.1",
        "1",
        *extra,
    ]
    return sweep.main(argv)


def test_every_method_gets_the_same_factors_and_iagan_its_start(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_sweep(
        files,
        "--gan",
        str(files["gan"]),
        "--lowshot-model",
        str(files["model"]),
        "--methods",
        "lowshot",
        "csgm",
        "iagan",
        "--problems",
        "cs-0.1",
    )
    printed = capsys.readouterr().out
    assert json.loads(printed.strip().splitlines()[-1]) == json.loads(json.dumps(summary))
    methods = ["lowshot-mmd-S2", "csgm", "iagan"]
    assert [(r["method"], r["factor"]) for r in summary["runs"]] == [
        (m, f) for m in methods for f in (0.1, 1.0)
    ]
    assert summary["images"] == ["000001.jpg"] and summary["skipped"] == {}
    assert "csgm" in summary["starts"]["iagan"]
    lrs = {(r["method"], r["factor"]): r["learning_rates"] for r in summary["runs"]}
    assert lrs["csgm", 0.1] == {"lr": 0.005} and lrs["csgm", 1.0] == {"lr": 0.05}
    assert lrs["lowshot-mmd-S2", 0.1] == {
        "joint_theta_lr": 1e-4,
        "joint_z_lr": 1e-5,
        "z_lr": 0.01,
    }
    for run in summary["runs"]:
        assert np.isfinite(run["mean_psnr"]) and run["mean_psnr"] == run["psnr"]["cs-0.1"]
    for method in methods:
        best = max(
            (r for r in summary["runs"] if r["method"] == method), key=lambda r: r["mean_psnr"]
        )
        assert summary["chosen"][method]["factor"] == best["factor"]
    # One "*" per method marks its chosen factor in the table.
    rows = [[m, f] for m in methods for f in ("0.1", "1")]
    table = [line for line in printed.splitlines() if line.split()[:2] in rows]
    assert len(table) == 6 and sum("*" in line for line in table) == 3


def test_methods_without_their_model_are_skipped_with_a_note(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_sweep(files, "--methods", "untrained", "csgm", "--problems", "colorization")
    assert [r["method"] for r in summary["runs"]] == ["untrained", "untrained"]
    assert "--gan not given" in summary["skipped"]["csgm"]
    assert "note: csgm skipped" in capsys.readouterr().out


def test_choose_disqualifies_diverged_runs_and_scaled_touches_only_lr() -> None:
    def run(factor: float, value: float, diverged: bool) -> object:
        result = sweep.Run("m", "m", factor, {})
        result.psnr["p"] = np.array([value])
        result.diverged["p"] = np.array([diverged])
        return result

    runs = [run(0.1, 20.0, False), run(1.0, 25.0, True), run(3.0, 21.0, False)]
    assert sweep.choose(runs).factor == 3.0
    assert sweep.choose([run(0.1, 20.0, False), run(1.0, 20.0, False)]).factor == 1.0
    settings = {"lr": 0.1, "z_lr": 0.01, "steps": 10, "momentum": 0.9}
    assert sweep.scaled(settings, 3) == {"lr": 0.3, "z_lr": 0.03, "steps": 10, "momentum": 0.9}
