"""`.ci/slurm` skips the live-Slurm test, with the reason, where it cannot run it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_slurm_skips_when_not_root() -> None:
    command = ["bash", str(ROOT / ".ci" / "slurm")]
    if os.geteuid() == 0:
        # Drop to nobody: the script must then skip, not try to install anything.
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to run the check as non-root"
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    result = subprocess.run(
        command, cwd="/", capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("live Slurm test skipped: not root"), result.stdout


def test_live_test_runs_the_command_as_users_type_it() -> None:
    """.ci/slurm runs tests/slurm/live_slurm.sh, which runs `snakemake --cores 8 --profile
    slurm` (then its own options) in the copied workflow's root, where the repository's
    top-level link slurm -> profiles/slurm is the profile."""
    ci = (ROOT / ".ci" / "slurm").read_text()
    assert "exec bash tests/slurm/live_slurm.sh" in ci
    harness = (ROOT / "tests" / "slurm" / "live_slurm.sh").read_text()
    assert "\nCOMMAND=(snakemake --cores 8 --profile slurm)\n" in harness
    assert 'exec "${COMMAND[@]}" "${args[@]}"' in harness
    assert (ROOT / "slurm").resolve() == (ROOT / "profiles" / "slurm").resolve()


def test_live_test_checks_the_gpus_of_the_profiles_gpu_rules() -> None:
    """The rules whose Slurm jobs the live test wants one GPU for are the rules that the
    profile gives one (set-resources), so a new GPU rule cannot pass the live test
    without its GPU."""
    harness = (ROOT / "tests" / "slurm" / "live_slurm.sh").read_text()
    match = re.search(r'^GPU_RULES="([\w,]+)"$', harness, flags=re.M)
    assert match, "live_slurm.sh sets no GPU_RULES"
    profile = (ROOT / "profiles" / "slurm" / "config.yaml").read_text()
    set_resources = profile.split("\nset-resources:\n", 1)[1]
    with_gpu = set(re.findall(r"^  (\w+):\n    gpu: 1$", set_resources, flags=re.M))
    assert set(match.group(1).split(",")) == with_gpu
