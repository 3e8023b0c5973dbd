"""Aggregation of recovery files into the metrics table and the PSNR summary."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lowshot import tables
from lowshot.io import write_recovery
from lowshot.methods import parse_method
from lowshot.problems import parse_problem

# Two-sided 95% Student-t quantiles from a printed t table (df -> t_{0.975, df}).
T_975 = {2: 4.303, 3: 3.182}


def write_job(
    root: Path,
    problem: str,
    method: str,
    psnr: list[float],
    diverged: list[bool] | None = None,
    ids: list[str] | None = None,
    shard: int = 0,
) -> Path:
    """A synthetic recovery file with the recover rule's attrs (``replicate`` included);
    SSIM = PSNR / 100."""
    n = len(psnr)
    ids = ids or [f"{i:06d}.jpg" for i in range(n)]
    the_problem, the_method = parse_problem(problem), parse_method(method)
    path = root / "recovery" / problem / method / f"shard{shard}.h5"
    write_recovery(
        path,
        {
            "image_ids": ids,
            "recovered": np.zeros((n, 64, 64, 3), np.uint8),
            "z": np.zeros((n, 128), np.float32),
            "psnr": np.asarray(psnr, np.float64),
            "ssim": np.asarray(psnr, np.float64) / 100,
            "measurement_loss": np.full(n, 0.5),
            "iterations": np.full(n, 10, np.int64),
            "restarts": np.ones(n, np.int64),
            "diverged": np.asarray(diverged or [False] * n, bool),
            "seed": np.arange(n, dtype=np.int64),
            "seconds": np.full(n, 0.25),
        },
        {
            "problem": problem,
            "problem_kind": the_problem.kind,
            "ratio": the_problem.ratio,
            "method": method,
            "method_kind": the_method.kind,
            "loss": the_method.loss,
            "shots": the_method.shots,
            "replicate": the_method.replicate,
            "noise_std": 0.0,
            "seed": 0,
        },
    )
    return path


@pytest.fixture
def jobs(tmp_path: Path) -> list[Path]:
    return [
        # 3 kept images (20, 22, 24) and one diverged with a huge PSNR that must not count.
        write_job(
            tmp_path, "cs-0.1", "lowshot-mmd-S10", [20, 22, 24, 99], [False, False, False, True]
        ),
        write_job(tmp_path, "cs-0.1", "untrained", [10, 11, 12, 13]),
        write_job(tmp_path, "cs-0.02", "lowshot-mmd-S10", [15, 15, 15, 15]),
        write_job(tmp_path, "colorization", "csgm", [18, 20, 22, 24]),
        write_job(tmp_path, "colorization", "lowshot-l2-S5", [30, 30, 30, 30], [True] * 4),
    ]


def row(summary: pd.DataFrame, problem: str, method: str) -> pd.Series:
    selected = summary[(summary["problem"] == problem) & (summary["method"] == method)]
    assert len(selected) == 1
    return selected.iloc[0]


def test_metrics_table_has_exactly_one_row_per_image(jobs):
    metrics = tables.metrics_table(jobs)
    assert len(metrics) == 5 * 4
    assert list(metrics.columns) == tables.METRIC_COLUMNS
    assert (metrics.groupby(["problem", "method", "image_id"]).size() == 1).all()
    colorization = metrics[metrics["problem"] == "colorization"]
    assert colorization["ratio"].isna().all()
    assert colorization["problem_kind"].eq("colorization").all()
    csgm = metrics[metrics["method"] == "csgm"]
    assert csgm["loss"].isna().all() and csgm["shots"].isna().all()
    mmd = metrics[metrics["method"] == "lowshot-mmd-S10"]
    assert set(mmd["loss"]) == {"mmd"} and set(mmd["shots"]) == {10}
    assert set(mmd["ratio"]) == {0.1, 0.02}


def test_metrics_table_sorts_problems_by_ratio_then_methods_in_paper_order(jobs):
    order = tables.metrics_table(jobs)[["problem", "method"]].drop_duplicates()
    assert list(order.itertuples(index=False, name=None)) == [
        ("cs-0.02", "lowshot-mmd-S10"),
        ("cs-0.1", "lowshot-mmd-S10"),
        ("cs-0.1", "untrained"),
        ("colorization", "lowshot-l2-S5"),
        ("colorization", "csgm"),
    ]


def test_shards_of_one_job_are_joined(tmp_path):
    paths = [
        write_job(tmp_path, "cs-0.1", "iagan", [20, 21], ids=["a.jpg", "b.jpg"], shard=0),
        write_job(tmp_path, "cs-0.1", "iagan", [22], ids=["c.jpg"], shard=1),
    ]
    summary = tables.summarize(tables.metrics_table(paths))
    assert len(summary) == 1
    assert summary["n"].iat[0] == 3
    assert summary["psnr_mean"].iat[0] == pytest.approx(21.0)


def test_an_image_recovered_twice_is_an_error(tmp_path):
    paths = [
        write_job(tmp_path, "cs-0.1", "csgm", [20, 21], ids=["a.jpg", "b.jpg"], shard=0),
        write_job(tmp_path, "cs-0.1", "csgm", [22], ids=["b.jpg"], shard=1),
    ]
    with pytest.raises(ValueError, match=r"b\.jpg"):
        tables.metrics_table(paths)


def test_attrs_disagreeing_with_the_name_are_an_error(tmp_path):
    path = write_job(tmp_path, "cs-0.1", "csgm", [20.0])
    import h5py

    with h5py.File(path, "a") as handle:
        handle.attrs["ratio"] = 0.2
    with pytest.raises(ValueError, match="ratio"):
        tables.metrics_table([path])


def test_summary_statistics_exclude_and_count_diverged_images(jobs):
    summary = tables.summarize(tables.metrics_table(jobs))
    assert list(summary.columns) == tables.SUMMARY_COLUMNS
    assert len(summary) == 5

    mmd = row(summary, "cs-0.1", "lowshot-mmd-S10")
    assert (mmd["n"], mmd["n_diverged"]) == (4, 1)
    assert mmd["psnr_mean"] == pytest.approx(22.0)  # (20 + 22 + 24) / 3, not 41.25
    assert mmd["psnr_std"] == pytest.approx(2.0)
    half = T_975[2] * 2.0 / math.sqrt(3)
    assert mmd["psnr_ci_half"] == pytest.approx(half, abs=2e-3)
    assert mmd["psnr_ci_low"] == pytest.approx(22.0 - mmd["psnr_ci_half"])
    assert mmd["psnr_ci_high"] == pytest.approx(22.0 + mmd["psnr_ci_half"])
    assert mmd["ssim_mean"] == pytest.approx(0.22)

    untrained = row(summary, "cs-0.1", "untrained")
    assert untrained["n_diverged"] == 0
    assert untrained["psnr_mean"] == pytest.approx(11.5)
    sd = math.sqrt(5 / 3)  # sample std of 10, 11, 12, 13
    assert untrained["psnr_ci_half"] == pytest.approx(T_975[3] * sd / 2, abs=2e-3)

    constant = row(summary, "cs-0.02", "lowshot-mmd-S10")
    assert constant["psnr_mean"] == pytest.approx(15.0)
    assert constant["psnr_ci_half"] == pytest.approx(0.0)


def test_colorization_and_baseline_rows_survive_grouping(jobs):
    summary = tables.summarize(tables.metrics_table(jobs))
    csgm = row(summary, "colorization", "csgm")
    assert math.isnan(csgm["ratio"])
    assert csgm["loss"] is None and pd.isna(csgm["shots"])
    assert csgm["psnr_mean"] == pytest.approx(21.0)


def test_a_job_with_every_image_diverged_has_no_mean(jobs):
    summary = tables.summarize(tables.metrics_table(jobs))
    failed = row(summary, "colorization", "lowshot-l2-S5")
    assert (failed["n"], failed["n_diverged"]) == (4, 4)
    assert math.isnan(failed["psnr_mean"]) and math.isnan(failed["ssim_mean"])
    assert "—" in tables.summary_markdown(summary)


def test_non_finite_psnr_without_the_flag_is_excluded_as_diverged(tmp_path):
    path = write_job(tmp_path, "cs-0.1", "csgm", [20.0, float("nan"), 24.0])
    summary = tables.summarize(tables.metrics_table([path]))
    assert summary["n_diverged"].iat[0] == 1
    assert summary["psnr_mean"].iat[0] == pytest.approx(22.0)


def test_markdown_has_one_row_per_method_and_one_column_per_problem(jobs):
    text = tables.summary_markdown(tables.summarize(tables.metrics_table(jobs)))
    table_lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table_lines) == 2 + 4  # header, rule, 4 methods
    header = [cell.strip() for cell in table_lines[0].strip("|").split("|")]
    assert header == ["method", "m/n = 0.02", "m/n = 0.1", "colorization"]
    assert all(line.count("|") == 5 for line in table_lines)
    mmd_line = next(line for line in table_lines if line.startswith("| 10-shot (MMD)"))
    assert "22.00 ± " in mmd_line and "(1/4 div.)" in mmd_line


def test_latex_is_a_booktabs_table_with_one_row_per_method(jobs):
    text = tables.summary_latex(tables.summarize(tables.metrics_table(jobs)))
    for command in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lrrr}"):
        assert text.count(command) == 1, command
    body = text.split(r"\midrule", 1)[1].split(r"\bottomrule", 1)[0]
    rows = [line for line in body.splitlines() if line.strip()]
    assert len(rows) == 4
    assert all(line.count("&") == 3 and line.rstrip().endswith(r"\\") for line in rows)
    assert r"5-shot ($\ell_2$)" in text
    assert r"22.00 $\pm$" in text


def test_latex_escape_handles_special_characters():
    assert tables.latex_escape("a_b & 5%") == r"a\_b \& 5\%"


def test_written_tables_read_back(jobs, tmp_path):
    out = tmp_path / "tables"
    summary = tables.collect(jobs, out / "metrics.csv", out / "s.csv", out / "s.md", out / "s.tex")
    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == 20
    again = tables.read_summary_csv(out / "s.csv")
    pd.testing.assert_frame_equal(again, summary, check_dtype=False)
    assert (out / "s.md").read_text(encoding="utf-8") == tables.summary_markdown(summary)
    assert not list(out.glob("*.tmp"))


def test_summary_pairs_every_method_with_the_untrained_network(jobs):
    summary = tables.summarize(tables.metrics_table(jobs))
    # cs-0.1: images 0-2 pair (image 3 diverged for MMD): 20-10, 22-11, 24-12.
    mmd = row(summary, "cs-0.1", "lowshot-mmd-S10")
    assert mmd["n_paired"] == 3
    assert mmd["diff_untrained_mean"] == pytest.approx(11.0)
    half = T_975[2] * 1.0 / math.sqrt(3)  # differences 10, 11, 12: std 1
    assert mmd["diff_untrained_ci_low"] == pytest.approx(11.0 - half, abs=2e-3)
    assert mmd["diff_untrained_ci_high"] == pytest.approx(11.0 + half, abs=2e-3)
    untrained = row(summary, "cs-0.1", "untrained")
    assert (untrained["n_paired"], untrained["diff_untrained_mean"]) == (4, 0.0)
    for problem, method in (("cs-0.02", "lowshot-mmd-S10"), ("colorization", "csgm")):
        alone = row(summary, problem, method)  # no untrained rows in that problem
        assert alone["n_paired"] == 0 and math.isnan(alone["diff_untrained_mean"])
