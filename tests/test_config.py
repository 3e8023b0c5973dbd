"""Config validation: each wrong value is an error that names its key."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from lowshot import data
from lowshot.config import ConfigError, load_config, validate_config
from lowshot.problems import PROBLEMS

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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"recover": {"methods": ["lowshot", "dip"]}},
            "recover.methods[1]: unknown value 'dip'; known: ",
        ),
        (
            {"problems": {"deblurring": {}}},
            "problems.deblurring: unknown key; check its spelling. Known keys: ",
        ),
        ({"report": {"figure1_problem": "deblurring"}}, "report.figure1_problem: unknown value"),
    ],
)
def test_unknown_method_or_problem_lists_the_known_ones(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message).replace(r"\.\*", ".*")) as error:
        validate_config(change)
    text = str(error.value)
    assert all(name in text for name in ("colorization", "compressed_sensing")) or all(
        name in text for name in ("lowshot", "untrained", "csgm", "iagan")
    )


def test_every_error_at_once_one_line_each_with_a_yaml_hint() -> None:
    with pytest.raises(ConfigError) as error:
        validate_config({"sede": 1, "gan": {"lr": "1e-4"}, "recover": {"csgm": {"steps": -1}}})
    lines = str(error.value).splitlines()
    assert len(lines) == 3
    assert any(line.startswith("gan.lr:") and "write 1.0e-4" in line for line in lines)
    assert any(line.startswith("recover.csgm.steps:") for line in lines)
    assert any(line.startswith("sede:") for line in lines)


@pytest.mark.parametrize("text", ["true", "false"])
def test_a_lowercase_boolean_from_the_command_line_says_how_to_write_it(text: str) -> None:
    # ``--config cuda_graphs=true`` reaches the config as the string "true".
    with pytest.raises(ConfigError, match=f"write cuda_graphs={text.capitalize()}$"):
        validate_config({"cuda_graphs": text})
    assert validate_config({"cuda_graphs": text == "true"})["cuda_graphs"] is (text == "true")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"split": {"n_test": 2.0}}, "split.n_test: 2.0 is not a whole number"),
        ({"problems": {"colorization": {"noise_std": math.nan}}}, "noise_std: nan is not a finite"),
        ({"gan": {"lr": math.inf}}, "gan.lr: inf is not a finite number"),
        ({"lowshot": {"covariance_shrinkage": -math.inf}}, "covariance_shrinkage: -inf is not"),
        ({"recover": {"csgm": {"lr": math.nan}}}, "recover.csgm.lr: nan is not a finite number"),
    ],
)
def test_numbers_that_would_crash_or_lie_later_are_errors(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(change)


def test_figure2_methods_must_be_known_and_run() -> None:
    with pytest.raises(ConfigError, match=r"report\.figure2_methods: unknown method name 'gan'"):
        validate_config({"report": {"figure2_methods": ["gan"]}})
    with pytest.raises(ConfigError, match=r"lowshot-mmd-S10 is not run by this config"):
        validate_config({"lowshot": {"shots": [5]}})
    # A method whose kind the config does not run is left out of the figure, not an error.
    config = validate_config({"recover": {"methods": ["lowshot"]}})
    assert config["report"]["figure2_methods"] == ["csgm", "iagan", "untrained", "lowshot-mmd-S10"]


def test_schema_sections_come_from_the_registered_classes() -> None:
    config = validate_config({})
    assert config["recover"]["methods"] == ["lowshot", "untrained", "csgm", "iagan"]
    assert config["recover"]["csgm"] == {"steps": 500, "lr": 0.1, "restarts": 2}
    assert config["problems"]["colorization"] == {"enabled": True, "noise_std": 0.0}
    with pytest.raises(ConfigError, match="plugins: no such file"):
        validate_config({"plugins": ["does/not/exist.py"]})
    printed = subprocess.run(
        [sys.executable, "-m", "lowshot.config"], capture_output=True, text=True, check=True
    ).stdout
    schema = yaml.safe_load(printed)
    assert set(schema["properties"]["problems"]["properties"]) == set(PROBLEMS.names())
    assert {"compressed_sensing", "colorization"} <= set(PROBLEMS.names())
    iagan = schema["properties"]["recover"]["properties"]["iagan"]["properties"]
    assert iagan["joint_theta_lr"]["default"] == pytest.approx(1e-3)


@pytest.mark.parametrize("name", ["config.yaml", "configs/quick.yaml", "configs/test.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = load_config(REPO / name)
    assert config["data"]["image_size"] == 64
    assert config["split"]["n_test"] >= 1


def test_more_shots_than_the_pool_holds_is_an_error() -> None:
    # Valid as a config (no corpus size to compare with), but the data are too few.
    config = validate_config(
        {"lowshot": {"shots": [5, 100]}, "report": {"figure2_methods": ["lowshot-mmd-S5"]}}
    )
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
    config["gan"]["lr"] = "1e-4"
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
    # Every error at once, one line each (not the schema and the config dumped whole).
    assert "gan.lr: '1e-4' is not of type 'number'" in output and "write 1.0e-4" in output
    assert len(output.splitlines()) < 40
