"""Config validation: each wrong value is an error that names its key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lowshot import data
from lowshot.config import ConfigError, load_config, validate_config

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"problems": {"compressed_sensing": {"ratios": [0.0]}}}, "compressed_sensing.ratios[0]"),
        ({"problems": {"compressed_sensing": {"ratios": [0.1, 1.5]}}}, "ratios[1]"),
        ({"lowshot": {"losses": ["l2", "l1"]}}, "lowshot.losses[1]"),
        ({"split": {"n_tset": 5}}, "n_tset"),
        ({"sede": 1}, "sede"),
        ({"split": {"gan_corpus_size": 50}, "lowshot": {"shots": [5, 100]}}, "lowshot.shots"),
        ({"data": {"max_images": 20}}, "data.max_images"),
    ],
)
def test_wrong_values_name_their_key(change: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace(".", r"\.")):
        validate_config(change)


@pytest.mark.parametrize("name", ["config.yaml", "configs/quick.yaml", "configs/test.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = load_config(REPO / name)
    assert config["data"]["image_size"] == 64
    assert config["split"]["n_test"] >= 1


def test_more_shots_than_the_pool_holds_is_an_error() -> None:
    # Valid as a config (no corpus size to compare with), but the data are too few.
    config = validate_config({"lowshot": {"shots": [5, 100]}, "report": {"figure2_shots": 5}})
    identity = np.repeat(np.arange(40), 2)
    with pytest.raises(data.DataError, match=r"lowshot\.shots needs 100 .* holds 70"):
        data.choose_split(
            np.full(80, 2),
            identity,
            n_test=5,
            shots=config["lowshot"]["shots"],
            gan_corpus_size=config["split"]["gan_corpus_size"],
            seed=config["seed"],
        )


def test_snakemake_stops_before_any_job_naming_the_key(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "configs/test.yaml").read_text())
    config["split"]["n_tset"] = 3
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [SNAKEMAKE, "-n", "-s", REPO / "Snakefile", "-d", tmp_path, "--configfile", "bad.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "LOWSHOT_DATA"},
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "n_tset" in output
    assert "Job stats" not in output and "rule extract_images" not in output
