"""benchmarks/sweep.py on tiny files: one tuning procedure, the same budget for every method."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from conftest import write_tiny_data

from lowshot.io import save_gan, save_lowshot
from lowshot.methods import resolve_settings
from lowshot.methods.lowshot import RECIPE
from lowshot.models import INITS, Generator, init_dcgan_weights

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
    write_tiny_data(root, 3, test=[0], validation=[1], gan_corpus=[2], shots={1: [2]})
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
        *extra,
    ]
    return sweep.main(argv)


def runs_of(summary: dict, method: str) -> list[dict]:
    return [run for run in summary["runs"] if run["method"] == method]


def test_every_method_gets_the_same_budget_each_rate_its_own_search_and_the_bound(
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
        "untrained",
        "csgm",
        "iagan",
        "--problems",
        "cs-0.1",
        "--budget",
        "3",
    )
    printed = capsys.readouterr().out
    assert json.loads(printed.strip().splitlines()[-1]) == json.loads(json.dumps(summary))
    methods = ["untrained", "csgm", "iagan", "lowshot-mmd-S2"]
    # A method bounded by another is tuned after it; every method has exactly 3 runs.
    assert [r["method"] for r in summary["runs"]] == [m for m in methods for _ in range(3)]
    assert summary["images"] == ["000001.jpg"] and summary["skipped"] == {}
    assert "csgm" in summary["starts"]["iagan"]
    assert summary["tuned"]["lowshot-mmd-S2"] == ["z_lr", "joint_theta_lr", "joint_z_lr"]
    assert summary["tuned"]["untrained"] == ["lr", "init"]
    # Each rate is searched on its own: run 0 is the start (the test config's CSGM lr
    # 0.05), then its neighbours by a factor of 10, one setting changed at a time.
    assert [r["settings"] for r in runs_of(summary, "csgm")] == [
        {"lr": 0.05},
        {"lr": 0.005},
        {"lr": 0.5},
    ]
    low = [r["settings"] for r in runs_of(summary, "lowshot-mmd-S2")]
    start = low[0]
    assert (start["z_lr"], start["joint_z_lr"]) == (RECIPE["z_lr"], RECIPE["joint_z_lr"])
    assert [sum(run[k] != start[k] for k in start) for run in low[1:]] == [1, 1]
    # The paper's bound: every low-shot joint theta lr below the untrained lr chosen.
    untrained_lr = summary["chosen"]["untrained"]["settings"]["lr"]
    assert all(run["joint_theta_lr"] < untrained_lr for run in low)
    assert summary["bounds"]["lowshot-mmd-S2"] == [
        f"joint_theta_lr < {untrained_lr:g}",
        "joint_steps <= 2",
    ]
    for run in summary["runs"]:
        assert np.isfinite(run["mean_psnr"]) and run["mean_psnr"] == run["psnr"]["cs-0.1"]
    for method in methods:
        # The chosen run is the last incumbent: each run replaced it only when it scored
        # more than the minimum gain above it (none diverged here).
        incumbent, *others = runs_of(summary, method)
        for run in others:
            if run["mean_psnr"] > incumbent["mean_psnr"] + sweep.DEFAULT_MIN_GAIN:
                incumbent = run
        assert summary["chosen"][method]["index"] == incumbent["index"]
    assert sum("*" in line for line in printed.splitlines() if line.startswith("  ")) >= 4


def test_a_categorical_setting_tries_its_values_and_missing_models_skip_a_method(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_sweep(
        files,
        "--methods",
        "untrained",
        "csgm",
        "--problems",
        "colorization",
        "--budget",
        "3",
        "--tune",
        "untrained=init",
    )
    # The start is the default init, then the others in the schema's order.
    start = resolve_settings("untrained", None)["init"]
    assert [r["settings"] for r in summary["runs"]] == [
        {"init": init} for init in [start, *(i for i in INITS if i != start)]
    ]
    assert "--gan not given" in summary["skipped"]["csgm"]
    assert "note: csgm skipped" in capsys.readouterr().out


def synthetic(optimum: float, best_init: str) -> tuple[list[dict], object]:
    """An evaluate function of a known score: log-distance of ``lr`` to ``optimum`` and a
    1 dB bonus for ``best_init``; it records what it is called with."""
    calls: list[dict] = []

    def evaluate(settings: dict) -> object:
        calls.append(dict(settings))
        run = sweep.Run("m", "m", len(calls) - 1, dict(settings))
        score = 30 - abs(math.log10(settings["lr"] / optimum)) + (settings["init"] == best_init)
        run.psnr["p"] = np.array([score])
        run.diverged["p"] = np.array([False])
        return run

    return calls, evaluate


def test_compass_search_spends_exactly_its_budget_and_refines_its_step() -> None:
    dims = [sweep.Dimension("lr"), sweep.Dimension("init", ("a", "b", "c"))]
    calls, evaluate = synthetic(optimum=3e-3, best_init="c")
    runs = sweep.compass_search(evaluate, {"lr": 1e-3, "init": "a"}, dims, 9)
    assert len(calls) == 9 and len({json.dumps(c, sort_keys=True) for c in calls}) == 9
    assert calls[:5] == [
        {"lr": 1e-3, "init": "a"},
        {"lr": 1e-4, "init": "a"},
        {"lr": 1e-2, "init": "a"},
        {"lr": 1e-3, "init": "b"},
        {"lr": 1e-3, "init": "c"},
    ]
    # No factor of 10 improved lr: its step is halved to a factor of 10 ** 0.5.
    assert calls[5:7] == [{"lr": 0.000316228, "init": "c"}, {"lr": 0.00316228, "init": "c"}]
    assert sweep.choose(runs).settings == {"lr": 0.00316228, "init": "c"}
    # A bound is never broken, and the start is moved inside it first.
    bound = sweep.Bound("lr", "<", 1e-3, "test")
    start = sweep.feasible_start({"lr": 1e-2, "init": "a"}, [bound], 1.0)
    assert start == {"lr": 1e-4, "init": "a"}
    calls, evaluate = synthetic(optimum=3e-3, best_init="a")
    sweep.compass_search(evaluate, start, dims, 6, allowed=bound.holds)
    assert len(calls) == 6 and all(c["lr"] < 1e-3 for c in calls)


def test_choose_disqualifies_diverged_runs_and_keeps_the_earlier_of_a_tie() -> None:
    def run(index: int, value: float, diverged: bool) -> object:
        result = sweep.Run("m", "m", index, {})
        result.psnr["p"] = np.array([value])
        result.diverged["p"] = np.array([diverged])
        return result

    runs = [run(0, 20.0, False), run(1, 25.0, True), run(2, 21.0, False)]
    assert sweep.choose(runs).index == 2
    assert sweep.choose([run(0, 20.0, False), run(1, 20.0, False)]).index == 0
    # A gain below the minimum keeps the incumbent: noise does not pick the settings.
    assert sweep.DEFAULT_MIN_GAIN == 0.2
    assert sweep.choose([run(0, 20.0, False), run(1, 20.15, False)]).index == 0
    assert sweep.choose([run(0, 20.0, False), run(1, 20.25, False)]).index == 1
    assert sweep.choose([run(0, 20.0, False), run(1, 20.15, False)], min_gain=0.1).index == 1
    # Each run is compared with the incumbent of its time, as the search moves.
    steps = [run(0, 20.0, False), run(1, 20.15, False), run(2, 20.3, False)]
    assert sweep.choose(steps).index == 2
    assert sweep.choose([run(0, 20.0, False), run(1, 20.3, False), run(2, 20.45, False)]).index == 1
    assert [d.key for d in sweep.dimensions("lowshot")] == ["z_lr", "joint_theta_lr", "joint_z_lr"]
    assert sweep.dimensions("untrained")[1].values == ("dcgan", "pytorch-0.4", "pytorch")
    with pytest.raises(ValueError, match="has no settings"):
        sweep.dimensions("csgm", ["lrr"])
    assert sweep.parse_tune(["untrained=init,lr"]) == {"untrained": ["init", "lr"]}


def test_a_latent_search_met_again_is_reused_with_the_same_result(files: dict[str, Path]) -> None:
    from lowshot.io import load_lowshot
    from lowshot.methods import engine, recover
    from lowshot.methods import lowshot as lowshot_method
    from lowshot.problems.colorization import Colorization

    model = load_lowshot(files["model"])
    operator = Colorization()
    y = torch.randn(2, operator.m, generator=torch.Generator().manual_seed(0))

    def once(theta_lr: float) -> torch.Tensor:
        settings = {**STEPS["lowshot"], "joint_theta_lr": theta_lr}
        result = recover("lowshot", operator, y, seeds=[1, 2], settings=settings, model=model)
        return result.images

    with sweep.memoised_latent_searches() as store:
        first, second = once(1e-4), once(1e-5)
        assert len(store) == 1  # the second run reused the first one's latent search
    assert lowshot_method.search_latent is engine.search_latent  # restored on exit
    assert torch.equal(first, once(1e-4)) and not torch.equal(first, second)


def test_score_only_runs_the_config_as_it_is_even_outside_a_bound(
    files: dict[str, Path], tmp_path: Path
) -> None:
    config = yaml.safe_load(files["config"].read_text())
    config["recover"]["lowshot"] = {**STEPS["lowshot"], "joint_theta_lr": 1e-3}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(config))
    summary = run_sweep(
        {**files, "config": tmp_path / "old.yaml"},
        "--lowshot-model",
        str(files["model"]),
        "--methods",
        "lowshot",
        "--problems",
        "colorization",
        "--score-only",
    )
    assert summary["score_only"] and summary["budget"] == 1
    assert [r["settings"]["joint_theta_lr"] for r in summary["runs"]] == [1e-3]
