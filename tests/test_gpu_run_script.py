"""benchmarks/gpu_run.sh (the one script for a GPU machine without network) parses, and the
Makefile's `wheelhouse` and `gpudata` targets exist and say what they would do. Nothing is
downloaded or run: `bash -n`, `make -n` and the wheelhouse's closure over installed metadata.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

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
