"""A missing data source stops Snakemake before any job, naming how to fix it.

The data stage itself runs, and is checked, in test_pipeline.py's one run of the
workflow; extraction and splitting are tested directly in test_data.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import copy_workflow

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
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_missing_source_stops_before_any_job(workflow_copy: Path) -> None:
    run = snakemake(workflow_copy, "-n", TARGET, LOWSHOT_DATA=str(workflow_copy / "absent.zip"))
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "absent.zip" in output and "LOWSHOT_DATA" in output and "CelebA" in output
    assert "Job stats" not in output
