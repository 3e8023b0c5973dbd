"""The throughput benchmarks that benchmarks/gpu_run.sh runs on a GPU still run: each
variant, tiny sizes, on the CPU. Figures are printed, never asserted on (timings vary);
what is checked is what the benchmarks compute besides time."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"benchmark_{name}"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("one_thread")
def test_recovery_benchmark_runs_every_path(capsys: pytest.CaptureFixture[str]) -> None:
    figures = load("recovery").main(
        [
            "--images",
            "2",
            "--steps",
            "2",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--joint-path",
            "gemm",
            "vmap",
            "before",
            "--cuda-graphs",
        ]
    )
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["joint_path"] == "gemm"
    assert "CUDA graphs: skipped" in out
    rows = {(row["stage"], row["path"]): row for row in figures["runs"]}
    assert set(rows) == {("zonly", "-"), ("joint", "gemm"), ("joint", "vmap"), ("joint", "before")}
    for (stage, _), row in rows.items():
        assert row["speedup"] > 0 and row["gflop_per_image_step"] > 0
        if stage == "joint":  # every batched path recovers what the per-image loop does
            assert row["max_abs_diff_vs_loop"] < 1e-4


@pytest.mark.usefixtures("one_thread")
def test_training_benchmark_runs_both_trainers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    summary = load("training").main(
        [
            "--device",
            "cpu",
            "--threads",
            "1",
            "--width",
            "8",
            "--gan-batch",
            "4",
            "--shots",
            "5",
            "--losses",
            "l2",
            "--warmup",
            "1",
            "--windows",
            "1",
            "--window-steps",
            "1",
            "--cuda-graphs",
        ]
    )
    assert "CUDA graphs: skipped" in capsys.readouterr().out
    trainers = [row["trainer"] for row in summary["rows"]]
    assert trainers == ["wgan-gp", "lowshot"]
    assert all(row["iterations_per_s"] > 0 and row["flops_per_step"] > 0 for row in summary["rows"])


def test_the_recovery_benchmark_times_steps_after_the_warm_up_and_capture_only() -> None:
    """``StepTimer`` (what a graphed run's rate counts): of a stage's calls through
    ``lowshot.cuda_graphs.stepper``, only those after the first ``skip`` (the eager
    warm-up and the capture, on CUDA) are timed: here slow first steps stay out."""
    import time

    import torch

    from lowshot import cuda_graphs

    recovery = load("recovery")
    durations = [0.3, 0.3, 0.01, 0.01]  # two "warm-up" steps, then two timed ones

    def stage() -> None:
        step_number = iter(durations)
        run = cuda_graphs.stepper(lambda: time.sleep(next(step_number)), torch.device("cpu"), False)
        for _ in durations:
            run()

    timer = recovery.StepTimer(torch.device("cpu"), skip=2)
    with timer.timing(steps=4):
        stage()
    assert timer.seconds is not None and 0.02 <= timer.seconds < 0.3
    with pytest.raises(ValueError, match="needs more than 2"), timer.timing(steps=2):
        pass
    with pytest.raises(RuntimeError, match="fewer than 5 steps"), timer.timing(steps=5):
        stage()
