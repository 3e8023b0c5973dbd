"""benchmarks/gpu_run.sh (the one script for a GPU machine without network) parses, stops
at its preflight when Python packages are missing (listing them) and at the GPU suite when
that fails; the Makefile's `wheelhouse` and `gpudata` targets exist and say what they would
do. Nothing is downloaded: `bash -n`, `make -n`, the wheelhouse's closure over installed
metadata, and the script run with its benchmarks and grid left out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_run.sh"


def test_gpu_run_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True, cwd=ROOT)
    text = SCRIPT.read_text()
    # The call a maintainer makes with the workplace's `run` tool is written down in it.
    assert 'carry=[".whl", ".gpudata"]' in text
    assert "--no-index --no-deps --no-compile --no-cache-dir --upgrade" in text


def make_dry(*args: str) -> str:
    result = subprocess.run(
        ["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout


def test_wheelhouse_target():
    commands = make_dry("wheelhouse", "WHEEL_PYTHON=3.11")
    assert "benchmarks/wheelhouse.py" in commands
    assert "--python-version 3.11" in commands
    assert "--platform manylinux_2_17_x86_64" in commands
    # What the GPU image has, and pulp (its ILP scheduler only), stay out.
    exclude = commands.split("--exclude", 1)[1].split("--", 1)[0].split()
    assert {"torch", "numpy", "pyyaml", "pulp"} <= set(exclude)


def test_gpudata_target():
    commands = make_dry("gpudata", "GPU_DATA=/nonexistent/gpudata")
    assert "benchmarks/gpudata.py" in commands
    assert "--dest /nonexistent/gpudata" in commands


def test_gpudata_keeps_the_label_lines_of_the_zips_images(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpudata
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    celeba, dest = tmp_path / "celeba", tmp_path / "dest"
    celeba.mkdir()
    with zipfile.ZipFile(celeba / gpudata.FACES, "w") as archive:
        archive.writestr("faces/", b"")
        for name in ("000003.jpg", "000001.jpg"):
            archive.writestr(f"faces/{name}", b"not decoded here")
    lines = ["000001.jpg 0", "000002.jpg 1", "000003.jpg 2", "0000031.jpg 2"]
    for label_file in gpudata.LABEL_FILES:
        (celeba / label_file).write_text("\n".join(lines) + "\n")
    gpudata.main(["--celeba", str(celeba), "--dest", str(dest)])
    assert (dest / gpudata.FACES).read_bytes() == (celeba / gpudata.FACES).read_bytes()
    for label_file in gpudata.LABEL_FILES:
        # Whole file names only, in the file's order; the folder entry is no image.
        assert (dest / label_file).read_text() == "000001.jpg 0\n000003.jpg 2\n"


def test_wheelhouse_closure_follows_installed_requirements():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from wheelhouse import closure
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    pins = closure(["jsonschema"], set(), "3.12")
    assert {"jsonschema", "referencing", "rpds-py", "attrs"} <= set(pins)
    assert "attrs" not in closure(["jsonschema"], {"attrs"}, "3.12")


# --- the preflight: what the pipeline imports, checked before any step needs it ---------


def run_preflight(*python_options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *python_options, "benchmarks/preflight.py", "--extra", "workflow",
         "--also", "pytest"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_preflight_passes_where_everything_is_installed() -> None:
    done = run_preflight()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every required package is installed" in done.stdout


def test_preflight_lists_what_is_missing_and_how_to_carry_it() -> None:
    """``python -S``: an interpreter without site-packages, as on a machine without the
    scientific stack. Every requirement is listed, with its import name."""
    done = run_preflight("-S")
    assert done.returncode == 1
    missing = ["numpy", "pyyaml (import yaml)", "scikit-image (import skimage)", "h5py"]
    missing += ["scipy", "pandas", "snakemake", "pytest", "pillow (import PIL)"]
    for name in missing:
        label = name if "(" in name else f"{name} (import {name})"
        assert f"{label}: missing" in done.stdout, label
    assert "torch must come with the machine" in done.stdout
    carried = done.stdout.split("WHEEL_EXTRA='", 1)[1].split("'", 1)[0].split()
    assert "torch" not in carried and {"numpy", "scikit-image", "pyyaml"} <= set(carried)


def test_preflight_reads_requirements_and_versions() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import preflight
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert preflight.parse("scikit-image>=0.22") == ("scikit-image", "skimage", (0, 22))
    assert preflight.parse("torch") == ("torch", "torch", None)
    wanted = preflight.requirements(preflight.PYPROJECT, ["workflow"])
    assert "h5py>=3.9" in wanted and "snakemake>=8.0" in wanted
    assert not any(line.startswith("lowshot") for line in wanted)
    text = preflight.PYPROJECT.read_text()
    assert preflight._requirements_by_hand(text, ["workflow"]) == wanted  # Python 3.10
    assert preflight.problems(["numpy>=999"])[0].startswith("numpy (import numpy): ")
    assert preflight.problems(["numpy>=1.0"]) == []


def test_wheelhouse_can_carry_what_a_target_lacks() -> None:
    commands = make_dry("wheelhouse", "WHEEL_EXTRA=h5py scikit-image").replace("\\\n", " ")
    (line,) = [line for line in commands.splitlines() if "benchmarks/wheelhouse.py" in line]
    words = line.split()
    exclude = words[words.index("--exclude") + 1 : words.index("--")]
    roots = words[words.index("--") + 1 :]
    assert "h5py" not in exclude and {"numpy", "scipy", "torch"} <= set(exclude)
    assert roots[-2:] == ["h5py", "scikit-image"] and "pytest" in roots


def fake_python(tmp_path: Path, *options: str) -> Path:
    """An interpreter command for GPU_RUN_PYTHON: this one, with ``options``."""
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {" ".join(options)} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def run_gpu_script(tmp_path: Path, python: Path, **env: str) -> tuple[int, str, list[dict]]:
    """benchmarks/gpu_run.sh with no benchmark and no grid; its exit code, log and steps."""
    out = tmp_path / "out"
    settings = {
        **{key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
        "OUT": str(out), "GPU_RUN_PYTHON": str(python), "GPU_RUN_PARTS": "none",
        "GPU_RUN_WHEELS": str(tmp_path / "no-wheels"), "GPU_RUN_SITE": str(tmp_path / "site"),
        "GPU_DATA": str(tmp_path / "no-data"), "TOTAL_BUDGET": "120", **env,
    }  # fmt: skip
    done = subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, env=settings, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    steps = json.loads((out / "steps.json").read_text())["steps"]
    return done.returncode, (out / "gpu_run.log").read_text(), steps


def test_gpu_run_stops_at_the_preflight_with_the_list(tmp_path: Path) -> None:
    rc, log, steps = run_gpu_script(tmp_path, fake_python(tmp_path, "-S"), GPU_RUN_DEVICE="cpu")
    assert rc == 1
    assert [step["step"] for step in steps] == ["install", "preflight"]
    assert steps[-1]["rc"] == 1
    assert "numpy (import numpy): missing" in log and "make wheelhouse WHEEL_EXTRA=" in log
    assert "!!!!! stopping the run: Python packages are missing" in log


@pytest.mark.slow
def test_gpu_run_runs_the_gpu_suite_first_and_stops_when_it_fails(tmp_path: Path) -> None:
    """With the device cuda and no CUDA (this machine), the GPU suite fails instead of
    skipping, and the run stops there, before any benchmark."""
    rc, log, steps = run_gpu_script(tmp_path, fake_python(tmp_path), GPU_RUN_DEVICE="cuda")
    names = [step["step"] for step in steps]
    assert rc == 1 and names[-1] == "gpu_tests" and steps[-1]["rc"] != 0, log[-3000:]
    assert names[:2] == ["install", "preflight"] and steps[1]["rc"] == 0
    assert "LOWSHOT_REQUIRE_GPU=1, but no CUDA device" in log
    assert "!!!!! stopping the run: the GPU suite failed" in log
