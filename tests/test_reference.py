"""lowshot.reference and benchmarks/grid_report.py on a small fake results tree.

The tree holds tables written by the project's own writers (``lowshot.tables``,
``lowshot.claims``) from a tiny metrics table, and benchmark TSVs and job logs whose
times are set with ``os.utime``, so every span, sum and peak is known exactly.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from lowshot import claims, reference, tables
from lowshot.methods import parse_method
from lowshot.problems import parse_problem

REPO = Path(__file__).resolve().parents[1]
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
CUDA = "2026-01-01 00:00:00,000 INFO lowshot.devices: device: cuda:0 (NVIDIA H100 80GB HBM3)\n"

# job path under benchmarks/ (and logs/) -> (seconds, end as epoch seconds, max_rss or
# "-", the log's text or None for no log).
JOBS: dict[str, tuple[float, float, str, str | None]] = {
    "extract_images/extract_images": (10, 1010, "100.00", "extracted 8 images\n"),
    "split_data/split_data": (5, 1020, "50.00", None),
    "train_gan/train_gan": (
        300,
        1320,
        "3000.00",
        CUDA + "x: peak memory: 2000 MiB\nx: peak reserved memory: 2500 MiB\n",
    ),
    "recover/cs-0.1/untrained/shard0": (
        100,
        1200,
        "900.00",
        CUDA + "x: untrained on cs-0.1: 3 images, peak memory 500 MiB\n"
        "x: peak reserved memory: 600 MiB\n",
    ),
    "recover/cs-0.1/lowshot-mmd-S10/shard0": (
        100,
        1250,
        "950.00",
        CUDA + "x: peak memory 650 MiB\nx: peak memory 700 MiB\nx: peak reserved memory: 800 MiB\n",
    ),
    # No reserved line (a log of before that line existed): its allocated peak counts.
    "recover/cs-0.1/lowshot-mmd-S10/shard1": (50, 1400, "990.00", CUDA + "peak memory 900 MiB\n"),
    "collect_metrics/collect_metrics": (4, 1410, "-", "done\n"),
    "my_plugin_rule/extra": (1, 1500, "10.00", None),
}


def load_grid_report() -> ModuleType:
    path = REPO / "benchmarks" / "grid_report.py"
    spec = importlib.util.spec_from_file_location("grid_report", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["grid_report"] = module
    spec.loader.exec_module(module)
    return module


def metrics_rows(method: str, offset: float) -> pd.DataFrame:
    """Three images of cs-0.1 recovered by ``method`` (``METRIC_COLUMNS``)."""
    problem, spec = parse_problem("cs-0.1"), parse_method(method)
    psnr = np.array([20.0, 22.0, 21.0]) + offset
    return pd.DataFrame(
        {
            "problem": problem.name,
            "problem_kind": problem.kind,
            "ratio": problem.ratio,
            "method": method,
            "method_kind": spec.kind,
            "loss": spec.loss,
            "shots": pd.array([spec.shots] * 3, dtype="Int64"),
            "replicate": pd.array([spec.replicate] * 3, dtype="Int64"),
            "image_id": ["000001.jpg", "000002.jpg", "000003.jpg"],
            "psnr": psnr,
            "ssim": psnr / 100,
            "measurement_loss": 0.5,
            "diverged": False,
            "iterations": 10,
            "restarts": 1,
            "seconds": 0.25,
            "seed": np.arange(3),
            "noise_std": 0.0,
        }
    )[tables.METRIC_COLUMNS]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run's tables, Figures 1 and 2, benchmarks and logs (``JOBS``)."""
    root = tmp_path_factory.mktemp("reference") / "results"
    metrics = pd.concat(
        [metrics_rows("untrained", 0.0), metrics_rows("lowshot-mmd-S10", 1.5)], ignore_index=True
    )
    summary = tables.summarize(metrics)
    tables.write_metrics_csv(metrics, root / "tables" / "metrics.csv")
    tables.write_summary_csv(summary, root / "tables" / "psnr_summary.csv")
    tables.write_summary_markdown(summary, root / "tables" / "psnr_summary.md")
    claimed = claims.check_claims(metrics, alpha=0.05, margin_db=1.0)
    claims.write_claims_csv(claimed, root / "tables" / "claims.csv")
    (root / "figures").mkdir()
    for name in ("figure1.png", "figure2.png"):
        (root / "figures" / name).write_bytes(b"\x89PNG fake " + name.encode())
    for job, (seconds, end, rss, log) in JOBS.items():
        tsv = root / "benchmarks" / f"{job}.tsv"
        tsv.parent.mkdir(parents=True, exist_ok=True)
        tsv.write_text(f"{HEADER}\n{seconds:.2f}\t0:00:00\t{rss}\t1\t1\t1\t0\t0\t0\t0\n")
        os.utime(tsv, (end, end))
        if log is not None:
            path = root / "logs" / f"{job}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(log)
    return root


@pytest.fixture
def written(results: Path, tmp_path: Path) -> Path:
    out = tmp_path / "reference"
    reference.write_reference(
        results, out, {"device": "test card", "config": str(REPO / "config.yaml")}
    )
    return out


def test_parse_job_log_takes_the_last_lines() -> None:
    parsed = reference.parse_job_log(JOBS["recover/cs-0.1/lowshot-mmd-S10/shard0"][3])
    assert parsed == {
        "peak_memory_mib": 700.0,
        "peak_reserved_mib": 800.0,
        "device": "cuda:0 (NVIDIA H100 80GB HBM3)",
    }
    cpu = reference.parse_job_log("x: device: cpu (1 torch threads)\nx: peak memory: 42 MiB\n")
    assert cpu["device"] == "cpu" and cpu["peak_memory_mib"] == 42.0
    assert math.isnan(cpu["peak_reserved_mib"])


def test_the_reserved_line_jobs_log_on_cuda_parses_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    from lowshot import devices

    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device: 1234 * 2**20)
    with caplog.at_level(logging.INFO, logger="lowshot.devices"):
        devices.log_peak_memory(torch.device("cpu"), allocated=False)
        assert caplog.text == ""
        devices.log_peak_memory(torch.device("cuda"), allocated=False)
    assert reference.parse_job_log(caplog.text)["peak_reserved_mib"] == 1234
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lowshot.devices"):
        devices.log_peak_memory(torch.device("cpu"))
    cpu = reference.parse_job_log(caplog.text)
    assert cpu["peak_memory_mib"] > 0 and math.isnan(cpu["peak_reserved_mib"])


def test_stage_times_are_exact(results: Path) -> None:
    stages = reference.stage_times(results).set_index("stage")
    assert list(stages.index) == ["data", "train_gan", "recover", "report", "my_plugin_rule"]
    assert list(stages.reset_index().columns) == reference.STAGE_COLUMNS
    data, gan, recover = stages.loc["data"], stages.loc["train_gan"], stages.loc["recover"]
    assert (data["jobs"], data["span_s"], data["job_s_total"], data["job_s_max"]) == (
        2,
        20,
        15,
        10,
    )
    assert data["rules"] == "extract_images split_data" and data["devices"] == ""
    assert math.isnan(data["peak_memory_mib"]) and data["max_rss_mb"] == 100
    assert (gan["start_s"], gan["end_s"], gan["span_s"]) == (20, 320, 300)
    assert (gan["peak_memory_mib"], gan["peak_reserved_mib"]) == (2000, 2500)
    # Recoveries from 1100 to 1400; two of them overlap from 1150 to 1200.
    assert (recover["jobs"], recover["span_s"], recover["job_s_total"]) == (3, 300, 250)
    assert (recover["job_s_max"], recover["max_parallel"]) == (100, 2)
    assert (recover["peak_memory_mib"], recover["peak_reserved_mib"]) == (900, 800)
    assert recover["max_rss_mb"] == 990 and recover["devices"].startswith("cuda:0")
    report = stages.loc["report"]
    assert (report["jobs"], report["span_s"]) == (1, 4) and math.isnan(report["max_rss_mb"])
    assert stages.loc["my_plugin_rule", "jobs"] == 1


def test_grid_totals_sum_the_jobs_running_at_once(results: Path) -> None:
    grid = reference.grid_totals(reference.job_times(results), wall_seconds=600.0)
    assert (grid["jobs"], grid["span_s"], grid["job_s_total"]) == (8, 500, 570)
    assert grid["max_parallel"] == 3  # train_gan and two recoveries, 1150 to 1200
    # The same moment on the card: 2500 + 600 + 800 MiB reserved.
    assert grid["concurrent_gpu_mib"] == 3900
    assert (grid["peak_memory_mib"], grid["peak_reserved_mib"]) == (2000, 2500)
    assert grid["wall_seconds"] == 600.0


def test_concurrent_peak_does_not_count_touching_intervals() -> None:
    assert reference.concurrent_peak([0, 10], [10, 20], [5, 7]) == 7
    assert reference.concurrent_peak([0, 5], [10, 20], [5, float("nan")]) == 5
    assert reference.max_parallel([], []) == 0


def test_written_reference_passes_its_check(results: Path, written: Path) -> None:
    assert reference.check_reference(written) == []
    names = {p.relative_to(written).as_posix() for p in written.rglob("*") if p.is_file()}
    assert names == {
        "tables/metrics.csv",
        "tables/psnr_summary.csv",
        "tables/psnr_summary.md",
        "tables/claims.csv",
        "figures/figure1.png",
        "figures/figure2.png",
        "stages.csv",
        "provenance.json",
        "config.yaml",
    }
    record = json.loads((written / "provenance.json").read_text())
    assert set(reference.PROVENANCE_KEYS) <= set(record)
    assert record["device"] == "test card" and record["wall_seconds"] is None
    assert record["config"] == str(REPO / "config.yaml")
    assert len(record["commit"]) == 40 and isinstance(record["dirty"], bool)
    assert [row["stage"] for row in record["stages"]][:2] == ["data", "train_gan"]
    assert pd.read_csv(written / "stages.csv")["jobs"].sum() == len(JOBS)
    assert not list(written.parent.glob(".reference.*")), "staging folder left behind"


def test_check_reports_a_renamed_and_a_missing_column(written: Path) -> None:
    summary_csv = written / "tables" / "psnr_summary.csv"
    summary_csv.write_text(summary_csv.read_text().replace("psnr_mean", "psnr_average", 1))
    metrics_csv = written / "tables" / "metrics.csv"
    pd.read_csv(metrics_csv).drop(columns=["seed"]).to_csv(metrics_csv, index=False)
    problems = reference.check_reference(written)
    assert "tables/psnr_summary.csv: missing columns ['psnr_mean']" in problems
    assert (
        "tables/psnr_summary.csv: columns the current writer does not produce ['psnr_average']"
        in problems
    )
    assert "tables/metrics.csv: missing columns ['seed']" in problems
    assert "tables/metrics.csv: SHA-256 differs from provenance.json's" in problems


def test_check_reports_reordered_columns_and_a_missing_table(written: Path) -> None:
    claims_csv = written / "tables" / "claims.csv"
    table = pd.read_csv(claims_csv)
    table[list(reversed(table.columns))].to_csv(claims_csv, index=False)
    (written / "tables" / "metrics.csv").unlink()
    problems = reference.check_reference(written)
    assert any(p.startswith("tables/claims.csv: columns [") for p in problems), problems
    assert "tables/metrics.csv: missing" in problems


def test_check_reports_a_missing_provenance_key(written: Path) -> None:
    path = written / "provenance.json"
    record = json.loads(path.read_text())
    del record["commit"]
    path.write_text(json.dumps(record))
    assert reference.check_reference(written) == ["provenance.json: no 'commit'"]


def test_write_refuses_to_overwrite_unless_told(results: Path, written: Path) -> None:
    (written / "stray.txt").write_text("from an earlier reference")
    with pytest.raises(FileExistsError):
        reference.write_reference(results, written, {})
    assert (written / "stray.txt").is_file()
    reference.write_reference(results, written, {}, overwrite=True)
    assert not (written / "stray.txt").exists()
    assert reference.check_reference(written) == []
    # The device defaults to what the job logs name.
    record = json.loads((written / "provenance.json").read_text())
    assert record["device"] == "cuda:0 (NVIDIA H100 80GB HBM3)"


def test_write_needs_a_finished_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"psnr_summary\.csv"):
        reference.write_reference(tmp_path, tmp_path / "out", {})
    assert not (tmp_path / "out").exists()


def test_grid_report_prints_the_table_and_writes_a_checked_reference(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid_report = load_grid_report()
    out, figures = tmp_path / "ref", tmp_path / "grid.json"
    argv = ["--results", str(results), "--wall-seconds", "600", "--json", str(figures)]
    assert grid_report.main([*argv, "--reference", str(out), "--device", "H100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| stage | jobs | wall time (span) |")
    assert "| `train_gan` | 1 | 5 min 00 s | 2,000 MiB allocated, 2,500 MiB reserved |" in (
        "\n".join(lines)
    )
    assert lines[-2].startswith("| whole grid | 8 | 10 min 00 s (jobs' span 8 min 20 s)")
    printed = json.loads(lines[-1])
    assert printed == json.loads(figures.read_text())
    assert printed["grid"]["concurrent_gpu_mib"] == 3900 and printed["reference_problems"] == []
    assert json.loads((out / "provenance.json").read_text())["wall_seconds"] == 600
    # A second reference into the same folder is refused, with a message.
    assert grid_report.main([*argv, "--reference", str(out)]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert reference.check_reference(out) == []
