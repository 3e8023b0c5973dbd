"""One image through the workflow with profiles/gpu-node on the card: data stage, split,
one recovery job (the untrained network, which needs no trained model), as a user runs
the profile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import copy_workflow

from lowshot.io import read_recovery

TARGET = "results/recovery/cs-0.1/untrained/shard0.h5"


def test_one_image_through_the_gpu_node_profile(
    celeba: Path, on_card: bool, tmp_path: Path
) -> None:
    workdir = copy_workflow(tmp_path / "workflow")
    run = {
        "device": "cuda" if on_card else "cpu",
        "data": {
            "source": str(celeba / "celeba-test-faces-64.zip"),
            "partition_file": str(celeba / "list_eval_partition.txt"),
            "identity_file": str(celeba / "identity_CelebA.txt"),
            "max_images": 40,
        },
        "split": {"n_test": 1, "n_validation": 0, "gan_corpus_size": 20},
        "problems": {"compressed_sensing": {"ratios": [0.1]}, "colorization": {"enabled": False}},
        "recover": {"methods": ["untrained"], "untrained": {"steps": 5}},
    }
    (workdir / "run.yaml").write_text(yaml.safe_dump(run))
    env = {key: value for key, value in os.environ.items() if key != "LOWSHOT_DATA"}
    env.pop("SNAKEMAKE_PROFILE", None)
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", TARGET, "--profile", "profiles/gpu-node",
         "--cores", "4", "--configfile", "configs/test.yaml", "run.yaml"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "Using profiles profiles/gpu-node" in output
    fields, attrs = read_recovery(workdir / TARGET)
    assert len(fields["image_ids"]) == 1 and not fields["diverged"].any()
    assert attrs["precision"] == "fp32" and attrs["effective_precision"] == "fp32"
    log = (workdir / "results/logs/recover/cs-0.1/untrained/shard0.log").read_text()
    if on_card:
        assert attrs["device"].startswith("cuda"), attrs["device"]
        assert "precision fp32 (IEEE fp32 everywhere, no TF32)" in log
        assert "device: cuda" in log and "peak reserved memory" in log
