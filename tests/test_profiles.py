"""The Snakemake profiles: they parse the way Snakemake parses them, name real options, give
a GPU to exactly the torch rules, and take partition and account from the environment; and a
dry-run of the paper config through `--profile profiles/slurm` requests GPUs on exactly the
GPU rules (no Slurm needed: a dry-run submits nothing)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
import yte
from snakemake.cli import get_argument_parser
from snakemake.profiles import ProfileConfigFileParser

ROOT = Path(__file__).resolve().parent.parent
SLURM_PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
DEFAULT_PROFILE = ROOT / "profiles" / "default" / "config.yaml"
GPU_RULES = {"train_gan", "pretrain_lowshot", "recover"}
SHARED_DATA = ROOT.parent / "shared" / "data" / "celeba"
ENV_KEYS = ("SBATCH_PARTITION", "SBATCH_ACCOUNT")


def profile_arguments(path: Path) -> dict[str, object]:
    """The profile as Snakemake turns it into command-line arguments."""
    stream = io.StringIO(path.read_text())
    stream.name = str(path)  # the parser looks for files beside the profile
    return dict(ProfileConfigFileParser().parse(stream))


def profile_document(path: Path) -> dict:
    """The profile as a mapping, YTE expressions evaluated in the current environment."""
    with path.open() as handle:
        return yte.process_yaml(handle, require_use_yte=False)


@pytest.fixture
def no_slurm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("path", [SLURM_PROFILE, DEFAULT_PROFILE], ids=lambda p: p.parent.name)
def test_profile_keys_are_snakemake_options(path: Path, no_slurm_env: None) -> None:
    known = {
        option.lstrip("-")
        for action in get_argument_parser()._actions
        for option in action.option_strings
        if option.startswith("--")
    }
    arguments = profile_arguments(path)
    assert arguments, f"{path} is empty"
    unknown = set(arguments) - known
    assert not unknown, f"{path}: not snakemake options: {sorted(unknown)}"


def test_every_profile_entry_is_commented() -> None:
    """Each option (column 0) and each entry of a resource map (column 2) has a comment
    line right above it; deeper lines are covered by their parent's comment."""
    for path in (SLURM_PROFILE, DEFAULT_PROFILE):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            entry = re.match(r"^( {0}| {2})[?\w][^:#]*:", line)
            if not entry or line.startswith("__"):
                continue
            previous = lines[number - 1].strip() if number else ""
            assert previous.startswith("#"), f"{path.name}:{number + 1} {line!r} has no comment"


def test_slurm_profile_executor_and_restart_settings(no_slurm_env: None) -> None:
    arguments = profile_arguments(SLURM_PROFILE)
    assert arguments["executor"] == "slurm"
    assert int(arguments["jobs"]) >= 1
    assert int(arguments["retries"]) >= 1
    assert str(arguments["rerun-incomplete"]).lower() == "true"
    assert int(arguments["latency-wait"]) >= 5


def test_slurm_profile_gives_gpus_to_exactly_the_gpu_rules(no_slurm_env: None) -> None:
    document = profile_document(SLURM_PROFILE)
    set_resources = document["set-resources"]
    with_gpu = {rule for rule, res in set_resources.items() if res.get("gpu") or res.get("gres")}
    assert with_gpu == GPU_RULES
    assert all(set_resources[rule]["gpu"] == 1 for rule in GPU_RULES)
    defaults = document["default-resources"]
    assert not {"gpu", "gres", "gpu_model"} & set(defaults)
    assert {"runtime", "mem_mb", "cpus_per_task"} <= set(defaults)


def test_partition_and_account_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, no_slurm_env: None
) -> None:
    unset = profile_arguments(SLURM_PROFILE)["default-resources"]
    assert not any(item.startswith(("slurm_partition=", "slurm_account=")) for item in unset)
    # `all` would evaluate to Python's builtin if the profile did not quote it.
    monkeypatch.setenv("SBATCH_PARTITION", "all")
    monkeypatch.setenv("SBATCH_ACCOUNT", "proj-42")
    resources = profile_arguments(SLURM_PROFILE)["default-resources"]
    assert "slurm_partition='all'" in resources
    assert "slurm_account='proj-42'" in resources


def test_workflow_profile_does_not_override_the_cluster_profile(no_slurm_env: None) -> None:
    """Snakemake applies profiles/default on top of --profile, key by key: a key in both
    must have the same value, or the workstation profile would change cluster runs."""
    cluster = profile_arguments(SLURM_PROFILE)
    workstation = profile_arguments(DEFAULT_PROFILE)
    for key in set(cluster) & set(workstation):
        assert cluster[key] == workstation[key], key
    assert str(workstation.get("rerun-incomplete")).lower() == "true"
    assert not {"executor", "set-resources", "default-resources", "retries"} & set(workstation)


# --- dry-run of the paper config --------------------------------------------------------

JOB_HEADER = re.compile(r"^(?:local)?rule (\w+):$")
RESOURCES = re.compile(r"^\s+resources: (.*)$")
THREADS = re.compile(r"^\s+threads: (\d+)$")


def dry_run_jobs(output: str) -> list[dict[str, object]]:
    """Jobs of a `snakemake --dry-run` printout: rule, threads and resources of each."""
    jobs: list[dict[str, object]] = []
    for line in output.splitlines():
        if match := JOB_HEADER.match(line):
            jobs.append({"rule": match.group(1), "threads": 1, "resources": {}})
        elif jobs and (match := THREADS.match(line)):
            jobs[-1]["threads"] = int(match.group(1))
        elif jobs and (match := RESOURCES.match(line)):
            pairs = (item.split("=", 1) for item in match.group(1).split(", "))
            jobs[-1]["resources"] = {key: value for key, value in pairs}
    return jobs


def test_dry_run_parser() -> None:
    text = (
        "rule train_gan:\n    input: a\n    threads: 2\n"
        "    resources: tmpdir=/tmp, mem_mb=16000, cpus_per_task=2, gpu=1\n"
        "localrule all:\n    input: b\n    resources: tmpdir=/tmp\n"
    )
    jobs = dry_run_jobs(text)
    assert [job["rule"] for job in jobs] == ["train_gan", "all"]
    assert jobs[0]["threads"] == 2
    assert jobs[0]["resources"]["gpu"] == "1"
    assert "gpu" not in jobs[1]["resources"]


@pytest.mark.slow
def test_paper_config_dry_run_requests_gpus_on_exactly_the_gpu_rules(tmp_path: Path) -> None:
    # The paper config's data are not on this machine: point its data paths at the shared
    # CelebA test faces (a second config file overrides only these keys).
    override = tmp_path / "data.yaml"
    override.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "source": str(SHARED_DATA / "celeba-test-faces-64.zip"),
                    "partition_file": str(SHARED_DATA / "list_eval_partition.txt"),
                    "identity_file": str(SHARED_DATA / "identity_CelebA.txt"),
                }
            }
        )
    )
    env = {key: value for key, value in os.environ.items() if key not in ENV_KEYS}
    env["LOWSHOT_DATA"] = str(SHARED_DATA / "celeba-test-faces-64.zip")
    snakemake = Path(sys.executable).with_name("snakemake")
    result = subprocess.run(
        [
            str(snakemake),
            "--dry-run",
            "--forceall",
            "--profile",
            "profiles/slurm",
            "--configfile",
            "config.yaml",
            str(override),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    jobs = [job for job in dry_run_jobs(output) if job["rule"] != "all"]
    rules = {job["rule"] for job in jobs}
    assert rules >= GPU_RULES, f"dry-run lacks GPU rules: {sorted(GPU_RULES - rules)}"
    with_gpu = {job["rule"] for job in jobs if job["resources"].get("gpu") == "1"}
    without_gpu = {job["rule"] for job in jobs if "gpu" not in job["resources"]}
    assert with_gpu == GPU_RULES
    assert not without_gpu & GPU_RULES
    assert not any("gres" in job["resources"] for job in jobs)
    # The profile's default-resources reach every job, and CPUs follow the rule's threads.
    for job in jobs:
        resources = job["resources"]
        assert "runtime" in resources and "mem_mb" in resources, job
        assert resources["cpus_per_task"] == str(job["threads"]), job
        assert "slurm_partition" not in resources, job
