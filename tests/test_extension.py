"""A method and a problem added from one file each (tests/toy_extension.py), through the
workflow: they reach metrics.csv, the summary tables and Figure 1, and nothing else was
edited. The smallest run that shows it: one test image, the toy method on compressed
sensing and on the toy problem, collect_metrics and figure1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import copy_workflow

from lowshot import methods, problems
from lowshot.plots import read_layout_tag
from lowshot.problems import GaussianNoise, measure
from lowshot.registry import load_plugins

TOY = Path(__file__).with_name("toy_extension.py")
pytestmark = pytest.mark.slow


@pytest.fixture
def toy_loaded():
    """The toy plugin loaded in this process, and unloaded after the test."""
    before = set(sys.modules)
    load_plugins([str(TOY)])
    (plugin,) = [name for name in set(sys.modules) - before if name.startswith("lowshot_plugin_")]
    yield
    methods.METHODS.unregister("toy-backprojection")
    problems.PROBLEMS.unregister("toy_half")
    del sys.modules[plugin]


def test_toy_classes_are_registered_by_their_file_alone(toy_loaded) -> None:
    load_plugins([str(TOY)])  # every job loads it again: no second registration
    assert methods.family("toy-backprojection").label == "Toy back-projection"
    assert methods.method_specs({"recover": {"methods": ["toy-backprojection", "csgm"]}}) == [
        methods.parse_method("csgm"),
        methods.parse_method("toy-backprojection"),
    ]
    operator = problems.make_operator(problems.parse_problem("toy-half"), config_seed=0)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = measure(operator, GaussianNoise(), x, [0, 1])
    result = methods.recover(
        "toy-backprojection", operator, y, seeds=[0, 1], settings={"scale": operator.m}
    )
    # A^T y puts the observed top half back in place, the rest is zero.
    torch.testing.assert_close(result.images[:, :, :32], x[:, :, :32])
    assert (result.images[:, :, 32:] == 0).all()
    assert not result.diverged.any() and result.measurement_loss.max() < 1e-6


def test_a_toy_method_and_problem_run_through_the_workflow(tmp_path: Path, shared_celeba) -> None:
    workdir = copy_workflow(tmp_path / "toy")
    config = {
        "plugins": [str(TOY)],
        "device": "cpu",
        "data": {
            "source": str(shared_celeba / "celeba-test-faces-64.zip"),
            "partition_file": str(shared_celeba / "list_eval_partition.txt"),
            "identity_file": str(shared_celeba / "identity_CelebA.txt"),
            "max_images": 40,
        },
        "split": {"n_test": 1, "n_validation": 0, "gan_corpus_size": 20},
        "gan": {"validate_every": 0},  # no validation faces: no validation curve
        "lowshot": {"shots": [5]},
        "problems": {
            "compressed_sensing": {"ratios": [0.1, 0.3]},
            "colorization": {"enabled": False},
            "toy_half": {"enabled": True},
        },
        "recover": {"methods": ["toy-backprojection"], "toy-backprojection": {"scale": 2.0}},
    }
    (workdir / "toy.yaml").write_text(yaml.safe_dump(config))
    targets = ["results/tables/metrics.csv", "results/figures/figure1.png"]
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", *targets, "--cores", "2", "--configfile", "toy.yaml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]

    metrics = pd.read_csv(workdir / "results/tables/metrics.csv")
    assert sorted(metrics["problem"]) == ["cs-0.1", "cs-0.3", "toy-half"]
    assert set(metrics["method"]) == {"toy-backprojection"}
    assert set(metrics["problem_kind"]) == {"compressed_sensing", "toy_half"}
    assert metrics["psnr"].notna().all()
    summary_md = (workdir / "results/tables/psnr_summary.md").read_text()
    assert "| Toy back-projection |" in summary_md
    assert "toy: top half" in summary_md and "m/n = 0.1" in summary_md

    assert read_layout_tag(workdir / "results/figures/figure1.png") == "lowshot:panels=1"
    log = (workdir / "results/logs/figure1/figure1.log").read_text()
    assert "1 panel(s), lines ['Toy back-projection']" in log
