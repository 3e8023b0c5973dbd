"""The README's "Add a method or a problem" examples, copied out of README.md itself, work
as a reader would use them: each tagged Python block is written to its own file, and the
files, listed under ``plugins:``, register a method and a problem that run through the
workflow to metrics.csv, the summary tables and Figure 1, with nothing else edited. The
smallest run that shows it: one test image, the README's method on compressed sensing and
on the README's problem, collect_metrics and figure1.

The README's examples are exactly the blocks tagged ``<!-- example: NAME -->`` above their
fence (``readme_text.python_examples``); an untagged Python block, or a tag added, renamed
or removed, fails ``test_readme_has_exactly_the_examples_these_tests_run``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import copy_workflow
from readme_text import EXAMPLE_KINDS, python_examples, readme_text, write_examples

from lowshot import methods, problems
from lowshot.plots import read_layout_tag
from lowshot.problems import IMAGE_SHAPE, GaussianNoise, measure
from lowshot.registry import load_plugins

EXAMPLES = EXAMPLE_KINDS
RUFF = Path(sys.executable).with_name("ruff")
REPO = Path(__file__).resolve().parents[1]


def test_readme_has_exactly_the_examples_these_tests_run() -> None:
    assert set(python_examples(readme_text())) == set(EXAMPLES)


def test_readme_examples_pass_the_projects_lint(tmp_path: Path) -> None:
    """ruff check and format, with the repository's settings (read as if the file were in
    tests/), as every file of the project."""
    for tag, block in python_examples(readme_text()).items():
        name = f"tests/readme_{tag}.py"
        for args in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
            done = subprocess.run(
                [str(RUFF), *args, "--stdin-filename", name, "-"],
                input=block.text,
                cwd=REPO,
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, f"README example {tag!r}, ruff {args[0]}:\n" + (
                done.stdout + done.stderr
            )


def test_readme_examples_register_from_their_files_alone(readme_examples) -> None:
    load_plugins([str(p) for p in readme_examples])  # every job loads them again: no error
    method, problem = EXAMPLES["method"], EXAMPLES["problem"]
    assert methods.family(method).label == "Back-projection"
    assert methods.method_specs({"recover": {"methods": [method, "csgm"]}}) == [
        methods.parse_method("csgm"),
        methods.parse_method(method),
    ]
    assert problems.PROBLEMS[problem].problem_names({"rows": [16, 32]}) == [
        "occlude-16",
        "occlude-32",
    ]
    for name in ("occlude-0", "occlude-64", "occlude-x", "occlusion-16", "cs-0.1"):
        assert problems.PROBLEMS[problem].parse(name) is None, name
    operator = problems.make_operator(problems.parse_problem("occlude-16"), config_seed=0)
    assert operator.m == 3 * 48 * 64

    # The adjoint passes the dot-product test <A x, y> = <x, A^T y>.
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, *IMAGE_SHAPE, generator=generator) * 2 - 1
    v = torch.randn(2, operator.m, generator=generator)
    torch.testing.assert_close(
        (operator.A(x) * v).sum(dim=1), (x * operator.A_adjoint(v)).flatten(1).sum(dim=1)
    )

    y = measure(operator, GaussianNoise(), x, [0, 1])
    result = methods.recover(method, operator, y, seeds=[0, 1], settings={"scale": operator.m})
    # A^T y puts the 48 observed rows back in place, the lost 16 are zero.
    torch.testing.assert_close(result.images[:, :, :48], x[:, :, :48])
    assert (result.images[:, :, 48:] == 0).all()
    assert not result.diverged.any() and result.measurement_loss.max() < 1e-6


@pytest.mark.slow
def test_readme_examples_run_through_the_workflow(tmp_path: Path, shared_celeba) -> None:
    workdir = copy_workflow(tmp_path / "workflow")
    plugins = write_examples(tmp_path / "plugins")
    method, problem = EXAMPLES["method"], EXAMPLES["problem"]
    config = {
        "plugins": [str(p) for p in plugins],
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
            problem: {"rows": [16]},
        },
        "recover": {"methods": [method], method: {"scale": 2.0}},
    }
    (workdir / "examples.yaml").write_text(yaml.safe_dump(config))
    targets = ["results/tables/metrics.csv", "results/figures/figure1.png"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            *targets,
            "--cores",
            "2",
            "--configfile",
            "examples.yaml",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]

    metrics = pd.read_csv(workdir / "results/tables/metrics.csv")
    assert sorted(metrics["problem"]) == ["cs-0.1", "cs-0.3", "occlude-16"]
    assert set(metrics["method"]) == {method}
    assert set(metrics["problem_kind"]) == {"compressed_sensing", problem}
    assert metrics["psnr"].notna().all()
    summary_md = (workdir / "results/tables/psnr_summary.md").read_text()
    assert "| Back-projection |" in summary_md
    assert "occlusion, 16 rows" in summary_md and "m/n = 0.1" in summary_md

    assert read_layout_tag(workdir / "results/figures/figure1.png") == "lowshot:panels=1"
    log = (workdir / "results/logs/figure1/figure1.log").read_text()
    assert "1 panel(s), lines ['Back-projection']" in log
