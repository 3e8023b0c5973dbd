"""The data stage run by Snakemake in a copy of the workflow in a temporary folder."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml
from conftest import copy_workflow

from lowshot import data

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
TARGET = "results/data/splits.h5"


def snakemake(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "LOWSHOT_DATA"} | env
    return subprocess.run(
        [str(SNAKEMAKE), *args, "--cores", "1", "--configfile", "run.yaml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )


@pytest.fixture
def workflow_copy(shared_celeba: Path, tmp_path: Path) -> Path:
    """The workflow copied into ``tmp_path`` with a small config on the shared test faces."""
    copy_workflow(tmp_path)
    config = yaml.safe_load((REPO / "configs/test.yaml").read_text())
    config["data"] = {
        "source": str(shared_celeba / "celeba-test-faces-64.zip"),
        "partition_file": str(shared_celeba / "list_eval_partition.txt"),
        "identity_file": str(shared_celeba / "identity_CelebA.txt"),
        "max_images": 60,
    }
    config["split"] = {"n_test": 3, "gan_corpus_size": 30}
    config["lowshot"]["shots"] = [5, 10]
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_data_stage_runs_then_has_nothing_to_do(workflow_copy: Path) -> None:
    run = snakemake(workflow_copy, TARGET)
    assert run.returncode == 0, run.stderr[-3000:]
    with h5py.File(workflow_copy / "results/data/images.h5", "r") as handle:
        assert handle["images"].shape == (60, 64, 64, 3)
        assert (handle["identity"][()] >= 0).all()
    split = data.load_split(workflow_copy / TARGET)
    assert split.test.size == 3 and split.gan_corpus.size == 30
    assert split.attrs["strategy"] == "disjoint-pools"
    log = (workflow_copy / "results/logs/extract_images/extract_images.log").read_text()
    assert "extracted 60 images" in log
    with open(workflow_copy / "results/benchmarks/extract_images/extract_images.tsv") as handle:
        assert float(next(csv.DictReader(handle, delimiter="\t"))["max_rss"]) > 0

    again = snakemake(workflow_copy, "-n", TARGET)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr


def test_missing_source_stops_before_any_job(workflow_copy: Path) -> None:
    run = snakemake(workflow_copy, "-n", TARGET, LOWSHOT_DATA=str(workflow_copy / "absent.zip"))
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "absent.zip" in output and "LOWSHOT_DATA" in output and "CelebA" in output
    assert "Job stats" not in output
