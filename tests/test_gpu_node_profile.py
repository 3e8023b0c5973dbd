"""profiles/gpu-node, the profile for one GPU machine: it parses as Snakemake parses it,
runs jobs locally, gives every torch rule (and only those) a share of the card's memory and
one thread, and leaves the device to the config; a dry run of the test grid through it
shows those resources, capped at a card given on the command line; and a real run of a toy
workflow shows that the card's memory bounds how many recoveries run at once. Also the
start-up of a recover job: it imports none of what only other jobs need."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import copy_workflow
from snakemake.cli import get_argument_parser
from test_profiles import GPU_RULES, dry_run_jobs, profile_arguments

from lowshot.config import schema_defaults

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "profiles" / "gpu-node" / "config.yaml"
DEFAULT_PROFILE = ROOT / "profiles" / "default" / "config.yaml"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def profile_document() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def clean_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "LOWSHOT_DATA"}
    env.pop("SNAKEMAKE_PROFILE", None)
    return env


def test_profile_keys_are_snakemake_options_and_every_entry_is_commented() -> None:
    known = {
        option.lstrip("-")
        for action in get_argument_parser()._actions
        for option in action.option_strings
        if option.startswith("--")
    }
    arguments = profile_arguments(PROFILE)
    assert set(arguments) - known == set()
    lines = PROFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^( {0}| {2})\w[^:#]*:", line):
            assert lines[number - 1].strip().startswith("#"), f"line {number + 1}: {line!r}"


def test_profile_runs_locally_and_shares_the_card_among_the_torch_rules() -> None:
    document = profile_document()
    # Local jobs on every core; the config, not the profile, picks the device.
    assert "executor" not in document and "jobs" not in document
    assert document["cores"] == "all"
    assert not {"config", "configfile", "groups"} & set(document)
    card = document["resources"]["gpu_mem_mb"]
    assert set(document["resources"]) == {"gpu_mem_mb"}
    per_job = {
        rule: values["gpu_mem_mb"]
        for rule, values in document["set-resources"].items()
        if "gpu_mem_mb" in values
    }
    assert set(per_job) == GPU_RULES
    assert all(0 < value <= card for value in per_job.values()), per_job
    assert document["set-threads"] == dict.fromkeys(GPU_RULES, 1)
    # The profile's arithmetic, as its comment states it.
    at_once = card // per_job["recover"]
    assert at_once >= 2
    text = PROFILE.read_text()
    assert f"at most {at_once} recoveries at once ({card} // {per_job['recover']}" in text
    # The workflow profile (profiles/default) applies on top, key by key: no key may differ.
    workstation = profile_arguments(DEFAULT_PROFILE)
    node = profile_arguments(PROFILE)
    for key in set(node) & set(workstation):
        assert node[key] == workstation[key], key


@pytest.mark.slow
def test_dry_run_gives_the_torch_jobs_their_share_capped_at_the_card(
    shared_celeba: Path, tmp_path: Path
) -> None:
    """The test grid (and learned_reg, so that every torch rule is in it) through the
    profile, on a 12 GB card given on the command line: train_gan's and fit_learned_reg's
    16000 MB become the whole card, the others keep theirs; no other job has any."""
    copy_workflow(tmp_path)
    methods = schema_defaults("recover")["methods"]  # configs/test.yaml names none
    assert "methods" not in yaml.safe_load((ROOT / "configs" / "test.yaml").read_text())["recover"]
    (tmp_path / "run.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {
                    "source": str(shared_celeba / "celeba-test-faces-64.zip"),
                    "partition_file": str(shared_celeba / "list_eval_partition.txt"),
                    "identity_file": str(shared_celeba / "identity_CelebA.txt"),
                },
                "recover": {"methods": [*methods, "learned_reg"]},
            }
        )
    )
    card = 12000
    result = subprocess.run(
        [
            str(SNAKEMAKE),
            "--dry-run",
            "--forceall",
            "--profile",
            "profiles/gpu-node",
            "--configfile",
            "configs/test.yaml",
            "run.yaml",
            "--resources",
            f"gpu_mem_mb={card}",
        ],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Using profiles profiles/gpu-node and workflow specific profile profiles/default" in (
        output
    )
    assert "Group job" not in output
    jobs = [job for job in dry_run_jobs(output) if job["rule"] != "all"]
    assert {job["rule"] for job in jobs} >= GPU_RULES
    wanted = profile_document()["set-resources"]
    for job in jobs:
        rule, resources = job["rule"], job["resources"]
        if rule in GPU_RULES:
            assert int(resources["gpu_mem_mb"]) == min(wanted[rule]["gpu_mem_mb"], card), job
            assert job["threads"] == 1, job
        else:
            assert "gpu_mem_mb" not in resources, job


TOY_WORKFLOW = """
rule all:
    input:
        expand("out/{i}.txt", i=range(4)),


rule recover:
    output:
        "out/{i}.txt",
    threads: 2
    shell:
        "start=$(date +%s.%N); sleep 1; echo $start $(date +%s.%N) {threads} > {output}"
"""


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


@pytest.mark.slow
def test_the_cards_memory_bounds_the_recoveries_running_at_once(tmp_path: Path) -> None:
    """Four recoveries (the pipeline's rule name, so the profile's set-resources and
    set-threads apply) on 8 cores and a card of 2.5 recoveries' memory: two run at once,
    never three, each with one thread."""
    per_job = profile_document()["set-resources"]["recover"]["gpu_mem_mb"]
    (tmp_path / "Snakefile").write_text(TOY_WORKFLOW)
    result = subprocess.run(
        [
            str(SNAKEMAKE),
            "--profile",
            str(PROFILE.parent),
            "--cores",
            "8",
            "--resources",
            f"gpu_mem_mb={per_job * 5 // 2}",
        ],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    records = [path.read_text().split() for path in sorted((tmp_path / "out").glob("*.txt"))]
    assert len(records) == 4
    assert {threads for _, _, threads in records} == {"1"}
    assert most_at_once([(float(start), float(end)) for start, end, _ in records]) == 2


# --- per-job start-up ---------------------------------------------------------------------

# What only other jobs need: training (train_gan, pretrain_lowshot, fit_learned_reg), image
# decoding and PNG writing (extract_images, train_gan's samples, figures), YAML and the
# config schema (the Snakefile), tables and plots (the report rules).
NOT_FOR_RECOVERY = (
    "PIL",
    "yaml",
    "jsonschema",
    "pandas",
    "scipy",
    "matplotlib",
    "seaborn",
    "skimage",
)
RECOVER_IMPORTS = """
import json, sys
from lowshot.jobs import Runtime, recover_job
from lowshot.logs import setup_rule_logging
from lowshot.registry import load_plugins
import lowshot.methods, lowshot.problems
lowshot.methods.METHODS.discover()
lowshot.problems.PROBLEMS.discover()
print(json.dumps(sorted(set(sys.modules))))
"""


def test_a_recover_job_imports_nothing_that_only_other_jobs_need() -> None:
    result = subprocess.run(
        [sys.executable, "-c", RECOVER_IMPORTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    modules = json.loads(result.stdout.splitlines()[-1])
    assert "torch" in modules and "lowshot.methods.csgm" in modules
    loaded = [
        name
        for name in modules
        if name.split(".")[0] in NOT_FOR_RECOVERY or name.startswith("lowshot.training")
    ]
    assert not loaded, loaded
