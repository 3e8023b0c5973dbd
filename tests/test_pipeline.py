"""End-to-end: configs/test.yaml through Snakemake in a temporary folder.

One module-scoped run builds everything; the tests then check its outputs (data stage,
models, recovery files, tables, figures, logs, benchmarks, the HTML report) and how the
workflow reacts to deletions and config changes (through dry-run job counts). Every
Snakemake start and every job costs seconds to minutes on a small CPU, so the checks
share that one run instead of running stages of the workflow again on their own.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import fault_injection
import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import copy_workflow
from PIL import Image

from lowshot import data, plots, reference, summary, tables
from lowshot.config import load_config, method_names, problem_names
from lowshot.io import load_lowshot
from lowshot.methods import method_specs
from lowshot.methods.lowshot import model_folder
from lowshot.training import pretraining_seed

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TORCH_RULES = ("train_gan", "pretrain_lowshot", "recover")

pytestmark = pytest.mark.slow


def run_snakemake(workdir: Path, *args: str, data: Path | None = None, fail: bool = False) -> str:
    """Run Snakemake in ``workdir``; return its combined output, failing on an error (on
    success when ``fail``). ``data``: the run's ``LOWSHOT_DATA``."""
    env = {key: value for key, value in os.environ.items() if key != "LOWSHOT_DATA"}
    if data is not None:
        env["LOWSHOT_DATA"] = str(data)
    done = subprocess.run(
        [*SNAKEMAKE, "--cores", "2", "--configfile", "pipeline.yaml", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=3000,
        env=env,
    )
    output = done.stdout + done.stderr
    assert (done.returncode != 0) == fail, output[-4000:]
    return output


def planned_jobs(workdir: Path, *args: str, data: Path | None = None) -> dict[str, int]:
    """Rule -> job count of a dry run (empty when there is nothing to do)."""
    output = run_snakemake(workdir, "--dry-run", *args, data=data)
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:", 1)[1]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE))
    counts.pop("total", None)
    return {rule: int(count) for rule, count in counts.items()}


def make_workdir(path: Path, shared_celeba: Path, **changes) -> Path:
    copy_workflow(path)
    config = yaml.safe_load((REPO / "configs" / "test.yaml").read_text())
    config["data"].update(
        source=str(shared_celeba / "celeba-test-faces-64.zip"),
        partition_file=str(shared_celeba / "list_eval_partition.txt"),
        identity_file=str(shared_celeba / "identity_CelebA.txt"),
    )
    for key, value in changes.items():
        config[key].update(value)
    (path / "pipeline.yaml").write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, shared_celeba):
    workdir = make_workdir(tmp_path_factory.mktemp("pipeline"), shared_celeba)
    # One torch thread per job, so two jobs share the two cores: a job spends most of its
    # time here importing torch, which is single-threaded, and the next job's import then
    # overlaps this one's work.
    run_snakemake(workdir, "--set-threads", *(f"{rule}=1" for rule in TORCH_RULES))
    config = load_config(workdir / "pipeline.yaml")
    return workdir, config


def test_every_expected_file_exists(pipeline):
    workdir, config = pipeline
    results = workdir / "results"
    expected = [
        "data/images.h5",
        "data/splits.h5",
        "models/gan/generator.h5",
        "models/gan/losses.csv",
        "models/gan/samples.png",
        "tables/metrics.csv",
        "tables/psnr_summary.csv",
        "tables/psnr_summary.md",
        "tables/psnr_summary.tex",
        "tables/claims.csv",
        "tables/claims.md",
        "figures/figure1.pdf",
        "figures/figure1.png",
        "figures/figure2.pdf",
        "figures/figure2.png",
        "figures/figure3.pdf",
        "figures/figure3.png",
    ]
    for folder in lowshot_folders(config):
        expected.append(f"models/lowshot/{folder}/model.h5")
    for problem in problem_names(config):
        for method in method_names(config):
            expected.append(f"recovery/{problem}/{method}/shard0.h5")
    missing = [name for name in expected if not (results / name).is_file()]
    assert not missing, missing
    assert not list(results.rglob("*.tmp")), "temporary files left behind"


def test_metrics_table_has_one_row_per_problem_method_image(pipeline):
    workdir, config = pipeline
    metrics = pd.read_csv(workdir / "results" / "tables" / "metrics.csv")
    n_test = config["split"]["n_test"]
    assert len(metrics) == len(problem_names(config)) * len(method_names(config)) * n_test
    keys = metrics.groupby(["problem", "method", "image_id"]).size()
    assert (keys == 1).all()
    assert set(metrics["problem"]) == set(problem_names(config))
    assert set(metrics["method"]) == set(method_names(config))
    assert np.isfinite(metrics["psnr"]).all()
    assert metrics["psnr"].between(3, 60).all(), metrics["psnr"].describe()


def lowshot_folders(config) -> list[str]:
    """The low-shot model folders of ``config``: ``<loss>_S<shots>[_r<r>]``."""
    return [model_folder(spec) for spec in method_specs(config) if spec.kind == "lowshot"]


def test_metrics_hold_every_replicate_of_the_lowshot_model(pipeline):
    workdir, config = pipeline
    results = workdir / "results"
    replicates = config["lowshot"]["replicates"]
    assert replicates == 2  # configs/test.yaml runs a second replicate end to end
    metrics = tables.read_metrics_csv(results / "tables" / "metrics.csv")
    assert str(metrics["replicate"].dtype) == "Int64"
    lowshot = metrics[metrics["method_kind"] == "lowshot"]
    per_replicate = lowshot.groupby("replicate").size().to_dict()
    n_models = len(config["lowshot"]["losses"]) * len(config["lowshot"]["shots"])
    n_rows = n_models * len(problem_names(config)) * config["split"]["n_test"]
    assert per_replicate == {r: n_rows for r in range(1, replicates + 1)}
    assert metrics.loc[metrics["shots"].isna(), "replicate"].isna().all()
    # Replicate 1 is the paper's model (its seed of before); replicate 2 its own shots
    # (disjoint: the corpus holds 2 x 10 faces) and seed.
    loss, shots = config["lowshot"]["losses"][0], max(config["lowshot"]["shots"])
    models = results / "models" / "lowshot"
    first = load_lowshot(models / f"{loss}_S{shots}" / "model.h5").attrs
    second = load_lowshot(models / f"{loss}_S{shots}_r2" / "model.h5").attrs
    assert first["seed"] == pretraining_seed(config["seed"], 1)
    assert second["seed"] == pretraining_seed(config["seed"], 2) != first["seed"]
    split = data.load_split(results / "data" / "splits.h5")
    assert np.array_equal(first["shot_rows"], split.shots[shots])
    assert np.array_equal(second["shot_rows"], split.replicate_shots(2)[shots])
    assert not np.intersect1d(first["shot_rows"], second["shot_rows"]).size
    # The summary keeps them apart: one row per method name and problem.
    summary = tables.read_summary_csv(results / "tables" / "psnr_summary.csv")
    assert not summary.duplicated(["problem", "method"]).any()
    assert set(summary.loc[summary["method_kind"] == "lowshot", "replicate"]) == {1, 2}


def test_data_stage_extracted_and_split_the_shared_faces(pipeline):
    workdir, config = pipeline
    results = workdir / "results"
    with h5py.File(results / "data" / "images.h5", "r") as handle:
        assert handle["images"].shape == (config["data"]["max_images"], 64, 64, 3)
        assert (handle["identity"][()] >= 0).all()
    split = data.load_split(results / "data" / "splits.h5")
    assert split.test.size == config["split"]["n_test"]
    assert split.gan_corpus.size == config["split"]["gan_corpus_size"]
    # The shared faces hold no training partition: disjoint pools, said in the attributes.
    assert split.attrs["strategy"] == "disjoint-pools"
    log = (results / "logs" / "extract_images" / "extract_images.log").read_text()
    assert f"extracted {config['data']['max_images']} images" in log


def test_every_rule_is_logged_and_benchmarked(pipeline):
    workdir, config = pipeline
    results = workdir / "results"
    single = (
        "extract_images",
        "split_data",
        "train_gan",
        "collect_metrics",
        "figure1",
        "figure2",
        "figure3",
    )
    jobs = [f"{rule}/{rule}" for rule in single]
    for folder in lowshot_folders(config):
        jobs.append(f"pretrain_lowshot/{folder}")
    for problem in problem_names(config):
        for method in method_names(config):
            jobs.append(f"recover/{problem}/{method}/shard0")
    for job in jobs:
        log = results / "logs" / f"{job}.log"
        assert log.is_file() and log.stat().st_size > 0, job
        with open(results / "benchmarks" / f"{job}.tsv") as handle:
            record = next(csv.DictReader(handle, delimiter="\t"))
        # Wall time is always measured; memory is sampled, and a job that ends before the
        # first sample (split_data, on a fast machine) records 0 MB, not a missing value.
        assert float(record["s"]) > 0, job
        assert float(record["max_rss"]) >= 0, job


def test_figures_are_images_of_the_expected_size(pipeline):
    workdir, config = pipeline
    figures = workdir / "results" / "figures"
    with Image.open(figures / "figure1.png") as image:
        assert image.size == plots.figure1_size_px()
    panels = len(config["lowshot"]["losses"])
    assert plots.read_layout_tag(figures / "figure1.png") == f"lowshot:panels={panels}"
    # True image, grayscale input, then the figure2_methods (every one runs in this config).
    rows = 2 + len(config["report"]["figure2_methods"])
    columns = min(config["report"]["figure2_images"], config["split"]["n_test"])
    with Image.open(figures / "figure2.png") as image:
        assert image.size == plots.figure2_size_px(rows, columns)
    assert plots.read_layout_tag(figures / "figure2.png") == f"lowshot:rows={rows}"
    for pdf in ("figure1.pdf", "figure2.pdf"):
        assert (figures / pdf).read_bytes().startswith(b"%PDF")


def test_report_names_the_figures_and_the_tables(pipeline):
    workdir, _ = pipeline
    run_snakemake(workdir, "--report", "report.html")
    html = (workdir / "report.html").read_text(errors="replace")
    for name in (
        "figure1.png",
        "figure2.png",
        "figure3.png",
        "psnr_summary.csv",
        "metrics.csv",
        "claims.csv",
    ):
        assert name in html, name


def test_claims_use_every_replicate_the_config_trains(pipeline):
    """Each claims row comparing a low-shot model uses all ``lowshot.replicates`` models
    (1 without the key), and claims.md's first line states what that makes the verdicts
    conditional on."""
    workdir, config = pipeline
    replicates = config["lowshot"].get("replicates", 1)
    table = pd.read_csv(workdir / "results" / "tables" / "claims.csv")
    fitted = table[
        table["comparison"].str.contains("lowshot-")
        & ~table["comparison"].str.contains("learned_reg")  # fitted to replicate 1 only
        & (table["n"] > 0)
    ]
    assert len(fitted) > 0
    assert (fitted["replicates"] == replicates).all(), fitted[["comparison", "replicates"]]
    first = (workdir / "results" / "tables" / "claims.md").read_text().splitlines()[0]
    scope = f"{replicates} independent replicates" if replicates > 1 else "one trained model"
    assert first.startswith("Scope:") and scope in first, first


def test_summary_command_prints_the_outputs_and_the_table(pipeline):
    workdir, _ = pipeline
    text = summary.describe(workdir / "results")
    assert "(missing)" not in text
    assert str(workdir / "results" / "figures" / "figure1.png") in text
    assert "| 10-shot (MMD) |" in text and "| Untrained |" in text
    assert summary.main([str(workdir / "nowhere")]) == 1


def test_a_reference_of_the_run_passes_its_check(pipeline, tmp_path):
    workdir, _ = pipeline
    out = tmp_path / "reference"
    provenance = {"device": "cpu", "config": str(workdir / "pipeline.yaml")}
    reference.write_reference(workdir / "results", out, provenance)
    assert reference.check_reference(out) == []
    stages = reference.stage_times(workdir / "results")
    assert {"data", *TORCH_RULES, "report"} <= set(stages["stage"]), stages


def test_second_run_has_nothing_to_do(pipeline):
    workdir, _ = pipeline
    assert planned_jobs(workdir) == {}


def test_deleting_one_recovery_reruns_that_job_and_the_aggregation(pipeline):
    workdir, config = pipeline
    problem = problem_names(config)[0]
    target = workdir / "results" / "recovery" / problem / "untrained" / "shard0.h5"
    saved = target.read_bytes()
    target.unlink()
    try:
        jobs = planned_jobs(workdir)
    finally:
        target.write_bytes(saved)
    assert jobs.pop("recover") == 1
    assert set(jobs) <= {"collect_metrics", "check_claims", "figure1", "figure3", "all"}
    assert jobs["collect_metrics"] == 1 and jobs["check_claims"] == 1


def test_deleting_a_csgm_recovery_reruns_the_iagan_that_continues_it(pipeline):
    workdir, config = pipeline
    problem = problem_names(config)[0]
    target = workdir / "results" / "recovery" / problem / "csgm" / "shard0.h5"
    saved = target.read_bytes()
    target.unlink()
    try:
        jobs = planned_jobs(workdir)
    finally:
        target.write_bytes(saved)
    # CSGM itself, and IAGAN on the same problem and shard (its input changes).
    assert jobs.pop("recover") == 2
    assert set(jobs) <= {"collect_metrics", "check_claims", "figure1", "figure2", "figure3", "all"}


def test_a_source_that_is_no_zip_stops_before_any_job_and_keeps_the_store(pipeline, tmp_path):
    workdir, _ = pipeline
    store = workdir / "results" / "data" / "images.h5"
    before = store.read_bytes()
    text = tmp_path / "notes.txt"
    text.write_text("not a zip\n")
    output = run_snakemake(workdir, data=text, fail=True)
    assert "neither a zip file nor a folder" in output
    assert "Job stats" not in output
    assert store.read_bytes() == before


def test_a_missing_source_does_not_block_a_finished_tree(pipeline, tmp_path):
    workdir, _ = pipeline
    missing = tmp_path / "unmounted" / "img_align_celeba.zip"
    assert planned_jobs(workdir, data=missing) == {}
    run_snakemake(workdir, "--unlock", data=missing)


def test_a_moved_identical_source_reruns_nothing(pipeline, tmp_path, shared_celeba):
    workdir, _ = pipeline
    copy = tmp_path / "elsewhere" / "faces.zip"
    copy.parent.mkdir()
    shutil.copy(shared_celeba / "celeba-test-faces-64.zip", copy)
    assert planned_jobs(workdir, data=copy) == {}


def test_interrupted_runs_lose_nothing_and_leave_nothing(pipeline, tmp_path):
    """tests/fault_injection.py on a copy of this run's data stage; prints its table."""
    workdir, _ = pipeline
    faults = copy_workflow(tmp_path / "faults")
    base = yaml.safe_load((workdir / "pipeline.yaml").read_text())
    reference = fault_injection.prepare(faults, base, workdir / "results")
    assert len(pd.read_csv(reference)) == base["split"]["n_test"]
    outcomes = fault_injection.run(faults)
    report = fault_injection.table(outcomes)
    print(report)
    assert [o.scenario for o in outcomes] == list(fault_injection.SCENARIOS)
    assert all(o.ok for o in outcomes), report
    # A killed job fails the run it belonged to; it is the rerun that completes.
    assert outcomes[0].interrupted_rc != 0


def test_changing_one_ratio_reruns_only_the_jobs_it_touches(pipeline):
    workdir, config = pipeline
    changed = yaml.safe_load((workdir / "pipeline.yaml").read_text())
    ratios = changed["problems"]["compressed_sensing"]["ratios"]
    changed["problems"]["compressed_sensing"]["ratios"] = [*ratios[:-1], 0.3]
    assert 0.3 not in ratios
    (workdir / "changed.yaml").write_text(yaml.safe_dump(changed))
    jobs = planned_jobs(workdir, "--configfile", "changed.yaml")
    assert jobs.pop("recover") == len(method_names(config))
    assert set(jobs) <= {"collect_metrics", "check_claims", "figure1", "figure3", "all"}


def test_another_replicate_adds_only_its_own_jobs(pipeline):
    """Replicates are selection keys, like the shot counts: raising lowshot.replicates
    retrains and recovers nothing that exists (and replicates: 1 keeps replicate 1's
    names, params and seeds, so a tree from before replicates reruns nothing)."""
    workdir, config = pipeline
    changed = yaml.safe_load((workdir / "pipeline.yaml").read_text())
    changed["lowshot"]["replicates"] = config["lowshot"]["replicates"] + 1
    (workdir / "more.yaml").write_text(yaml.safe_dump(changed))
    jobs = planned_jobs(workdir, "--configfile", "more.yaml")
    n_models = len(config["lowshot"]["losses"]) * len(config["lowshot"]["shots"])
    assert jobs.pop("pretrain_lowshot") == n_models
    assert jobs.pop("recover") == n_models * len(problem_names(config))
    assert set(jobs) <= {"collect_metrics", "check_claims", "figure1", "figure3", "all"}


def test_figure2_alone_builds_just_what_it_needs(tmp_path, shared_celeba):
    workdir = make_workdir(tmp_path, shared_celeba)
    jobs = planned_jobs(workdir, "results/figures/figure2.png")
    config = load_config(workdir / "pipeline.yaml")
    shown_methods = len(config["report"]["figure2_methods"])
    assert jobs["recover"] == shown_methods
    assert jobs["pretrain_lowshot"] == 1
    assert "collect_metrics" not in jobs and "figure1" not in jobs
