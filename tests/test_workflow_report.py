"""The report rules run by Snakemake in a copy of the workflow, on synthetic inputs.

The recovery files, images.h5 and splits.h5 are written here (in the recover and data
stages' layouts) instead of being computed; ``--allowed-rules`` keeps Snakemake from
planning the upstream rules that would make them, so only collect_metrics, figure1 and
figure2 run. The full chain is tested in test_pipeline.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import copy_workflow
from PIL import Image

from lowshot import plots, summary
from lowshot.config import (
    load_config,
    method_names,
    parse_method,
    parse_problem,
    problem_names,
    shard_count,
)
from lowshot.io import write_recovery

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
REPORT_RULES = ("collect_metrics", "figure1", "figure2")
TARGETS = (
    "results/tables/metrics.csv",
    "results/tables/psnr_summary.csv",
    "results/tables/psnr_summary.md",
    "results/tables/psnr_summary.tex",
    "results/figures/figure1.pdf",
    "results/figures/figure1.png",
    "results/figures/figure2.pdf",
    "results/figures/figure2.png",
)
# Only the report rules may run: the recovery and data files already exist.
ALLOWED = ("--allowed-rules", *REPORT_RULES)
N_IMAGES = 12

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str) -> str:
    """Run Snakemake restricted to the report rules; return its output, failing on an error."""
    environment = {k: v for k, v in os.environ.items() if k != "LOWSHOT_DATA"}
    done = subprocess.run(
        [str(SNAKEMAKE), "--cores", "1", "--configfile", "run.yaml", *ALLOWED, *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from a dry run's job stats."""
    if "Job stats:" not in output:
        return {}
    stats = output.split("Job stats:", 1)[1]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", stats, flags=re.MULTILINE))
    counts.pop("total", None)
    return {rule: int(count) for rule, count in counts.items()}


def write_data(results: Path, test_rows: list[int]) -> list[str]:
    """images.h5 and splits.h5 in the data stage's layout; returns the test ids."""
    rng = np.random.default_rng(0)
    ids = [f"{i:06d}.jpg" for i in range(N_IMAGES)]
    string = h5py.string_dtype()
    (results / "data").mkdir(parents=True)
    with h5py.File(results / "data" / "images.h5", "w") as handle:
        images = rng.integers(0, 256, (N_IMAGES, 64, 64, 3), dtype=np.uint8)
        handle.create_dataset("images", data=images, chunks=(4, 64, 64, 3))
        handle.create_dataset("ids", data=np.array(ids, dtype=object), dtype=string)
    test_ids = [ids[r] for r in test_rows]
    with h5py.File(results / "data" / "splits.h5", "w") as handle:
        handle.create_dataset("test", data=np.array(test_rows, np.int64))
        handle.create_dataset("test_ids", data=np.array(test_ids, dtype=object), dtype=string)
        handle.create_dataset("gan_corpus", data=np.array([0, 1, 2], np.int64))
        handle.create_dataset("shots/S5", data=np.arange(5, dtype=np.int64))
        handle.create_dataset("shots/S10", data=np.arange(10, dtype=np.int64))
    return test_ids


def write_recoveries(results: Path, config: dict, test_ids: list[str]) -> None:
    """One synthetic recovery file per (problem, method, shard): PSNR 10 + problem/method index
    + image position / 10; the first image of untrained on every problem diverged."""
    rng = np.random.default_rng(1)
    assert shard_count(config) == 1
    n = len(test_ids)
    for p, problem in enumerate(problem_names(config)):
        for m, method in enumerate(method_names(config)):
            the_problem, the_method = parse_problem(problem), parse_method(method)
            diverged = np.zeros(n, bool)
            diverged[0] = method == "untrained"
            write_recovery(
                results / "recovery" / problem / method / "shard0.h5",
                {
                    "image_ids": test_ids,
                    "recovered": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
                    "psnr": 10.0 + p + m + np.arange(n) / 10,
                    "ssim": np.full(n, 0.5),
                    "measurement_loss": np.full(n, 0.1),
                    "iterations": np.full(n, 5, np.int64),
                    "restarts": np.ones(n, np.int64),
                    "diverged": diverged,
                    "seed": np.arange(n, dtype=np.int64),
                    "seconds": np.full(n, 0.1),
                },
                {
                    "problem": problem,
                    "problem_kind": the_problem.kind,
                    "ratio": the_problem.ratio,
                    "method": method,
                    "method_kind": the_method.kind,
                    "loss": the_method.loss,
                    "shots": the_method.shots,
                    "noise_std": 0.0,
                    "seed": config["seed"],
                },
            )


@pytest.fixture(scope="module")
def workflow(tmp_path_factory) -> tuple[Path, dict]:
    """A copy of the workflow with the test config (3 test images, 2 ratios, colorization,
    the 10-shot models of both losses, every baseline) and its recovery files already written."""
    workdir = copy_workflow(tmp_path_factory.mktemp("report"))
    config = yaml.safe_load((REPO / "configs" / "test.yaml").read_text())
    # The data rules check at parse time that the source exists; nothing reads it here.
    (workdir / "faces").mkdir()
    config["data"].update(source="faces", partition_file=None, identity_file=None)
    (workdir / "run.yaml").write_text(yaml.safe_dump(config))
    config = load_config(workdir / "run.yaml")
    # Test images in an order unlike the store's, so Figure 2 must follow the split.
    test_rows = [7, 2, 9, 4, 0, 11][: config["split"]["n_test"]]
    test_ids = write_data(workdir / "results", test_rows)
    write_recoveries(workdir / "results", config, test_ids)
    return workdir, config


@pytest.fixture(scope="module")
def built(workflow) -> tuple[Path, dict, dict[str, int]]:
    """The workflow after a dry run of Figure 2 alone (returned) and a build of every target."""
    workdir, config = workflow
    figure2_alone = planned_jobs(snakemake(workdir, "--dry-run", "results/figures/figure2.png"))
    snakemake(workdir, *TARGETS)
    return workdir, config, figure2_alone


def test_figure2_alone_needs_no_tables(built):
    _, _, figure2_alone = built
    assert figure2_alone == {"figure2": 1}


def test_tables_have_one_row_per_problem_method_image(built):
    workdir, config, _ = built
    tables = workdir / "results" / "tables"
    metrics = pd.read_csv(tables / "metrics.csv")
    n_test = config["split"]["n_test"]
    assert len(metrics) == len(problem_names(config)) * len(method_names(config)) * n_test
    assert (metrics.groupby(["problem", "method", "image_id"]).size() == 1).all()
    psnr = pd.read_csv(tables / "psnr_summary.csv")
    assert len(psnr) == len(problem_names(config)) * len(method_names(config))
    untrained = psnr[psnr["method"] == "untrained"]
    assert (untrained["n_diverged"] == 1).all() and (untrained["n"] == n_test).all()
    # Untrained's kept images are positions 1..n-1: their mean is offset + mean(1..n-1) / 10.
    offsets = metrics[metrics["method"] == "untrained"].groupby("problem")["psnr"].min()
    expected = offsets + np.arange(1, n_test).mean() / 10
    means = untrained.set_index("problem")["psnr_mean"]
    pd.testing.assert_series_equal(means.sort_index(), expected.sort_index(), check_names=False)
    markdown = (tables / "psnr_summary.md").read_text(encoding="utf-8")
    table_lines = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table_lines) == 2 + len(method_names(config))  # header, rule, methods
    assert r"\bottomrule" in (tables / "psnr_summary.tex").read_text(encoding="utf-8")


def test_figures_have_the_expected_size_and_layout(built):
    workdir, config, _ = built
    figures = workdir / "results" / "figures"
    with Image.open(figures / "figure1.png") as image:
        assert image.size == plots.figure1_size_px()
    assert plots.read_layout_tag(figures / "figure1.png") == "lowshot:panels=2"
    rows = 2 + len(config["recover"]["baselines"]) + 1
    columns = min(config["report"]["figure2_images"], config["split"]["n_test"])
    with Image.open(figures / "figure2.png") as image:
        assert image.size == plots.figure2_size_px(rows, columns)
    assert plots.read_layout_tag(figures / "figure2.png") == f"lowshot:rows={rows}"
    for pdf in ("figure1.pdf", "figure2.pdf"):
        assert (figures / pdf).read_bytes().startswith(b"%PDF")


def test_every_rule_logged_and_benchmarked(built):
    workdir, _, _ = built
    for rule in REPORT_RULES:
        log = workdir / "results" / "logs" / rule / f"{rule}.log"
        assert log.is_file() and log.stat().st_size > 0, rule
        assert (workdir / "results" / "benchmarks" / rule / f"{rule}.tsv").is_file(), rule


def test_html_report_names_both_figures_and_tables(built):
    workdir, _, _ = built
    snakemake(workdir, "--report", "report.html")
    html = (workdir / "report.html").read_text(encoding="utf-8", errors="replace")
    for name in ("figure1.png", "figure2.png", "psnr_summary.csv", "metrics.csv"):
        assert name in html, name


def test_summary_command_prints_the_outputs_and_the_table(built):
    workdir, _, _ = built
    text = summary.describe(workdir / "results")
    assert "(missing)" not in text
    for target in TARGETS:
        assert str(workdir / target) in text
    assert "| 10-shot (MMD) |" in text
    assert summary.main([str(workdir / "nowhere")]) == 1


def test_every_report_caption_exists() -> None:
    """Snakemake reads captions only when it builds the report: check them all here."""
    captions = {
        REPO / "Snakefile": re.findall(
            r'^report:\s*"([^"]+)"', (REPO / "Snakefile").read_text(), re.M
        )
    }
    for rules_file in sorted((REPO / "rules").glob("*.smk")):
        captions[rules_file] = re.findall(r'caption="([^"]+)"', rules_file.read_text())
    assert sum(len(names) for names in captions.values()) >= 5
    for rules_file, names in captions.items():
        for name in names:
            assert (rules_file.parent / name).is_file(), f"{rules_file.name}: no caption {name}"
