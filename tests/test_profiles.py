"""The Snakemake profiles: they parse the way Snakemake parses them, name real options, give
a GPU to exactly the torch rules, and take partition and account from the environment; and a
dry-run of the paper config through `--profile profiles/slurm` requests GPUs on exactly the
GPU rules (no Slurm needed: a dry-run submits nothing). `--profile slurm`, as users type it in
the repository root, finds profiles/slurm through the top-level link; the profile groups jobs
into fewer Slurm jobs (a whole group of recoveries asks sbatch for one GPU: checked with a
stand-in sbatch that records its calls), and runs without it group nothing."""

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
from snakemake.cli import get_argument_parser, get_profile_dir
from snakemake.profiles import ProfileConfigFileParser

ROOT = Path(__file__).resolve().parent.parent
SLURM_PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
SLURM_LINK = ROOT / "slurm"
DEFAULT_PROFILE = ROOT / "profiles" / "default" / "config.yaml"
GPU_RULES = {"train_gan", "pretrain_lowshot", "fit_learned_reg", "recover"}
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


# --- `--profile slurm` from the repository root -----------------------------------------


def test_top_level_slurm_is_a_relative_link_to_the_profile() -> None:
    assert SLURM_LINK.is_symlink(), "slurm must be a link (one profile, in profiles/slurm)"
    assert os.readlink(SLURM_LINK) == "profiles/slurm"
    assert (SLURM_LINK / "config.yaml").resolve() == SLURM_PROFILE.resolve()


def test_profile_name_slurm_resolves_to_the_repository_profile_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Snakemake's own lookup: a name that exists from the current folder wins over the
    user's and the site's profile folders (~/.config/snakemake, /etc/xdg/snakemake)."""
    decoy = tmp_path / "xdg" / "snakemake" / "slurm"
    decoy.mkdir(parents=True)
    (decoy / "config.yaml").write_text("executor: local\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(ROOT)
    _, config_file = get_profile_dir("slurm")
    assert config_file.resolve() == SLURM_PROFILE.resolve()
    # Elsewhere the same name is the user's profile: the link is what makes the difference.
    monkeypatch.chdir(tmp_path)
    _, config_file = get_profile_dir("slurm")
    assert config_file.resolve() == (decoy / "config.yaml").resolve()


# --- groups: fewer, fuller Slurm jobs ----------------------------------------------------


def workflow_rules() -> set[str]:
    """Rule names of the workflow (rules/*.smk, also rules defined inside an `if`)."""
    names = set()
    for path in (ROOT / "rules").glob("*.smk"):
        names |= set(re.findall(r"^\s*rule (\w+):", path.read_text(), flags=re.M))
    return names


def test_slurm_profile_groups_real_rules_and_sizes_a_group_for_one_job_at_a_time(
    no_slurm_env: None,
) -> None:
    document = profile_document(SLURM_PROFILE)
    groups = document["groups"]
    assert groups["recover"] == "recover"
    assert set(groups) <= workflow_rules(), sorted(set(groups) - workflow_rules())
    # Training stays one job per model: minutes to hours of GPU work each, in parallel.
    assert not {"train_gan", "pretrain_lowshot", "fit_learned_reg"} & set(groups)
    # A problem's recovery chains (lowshot, untrained, CSGM->IAGAN) in one Slurm job
    # (configs/test.yaml's 8, with two low-shot replicates, in two).
    assert document["group-components"]["recover"] >= 6
    assert set(document["group-components"]) <= set(groups.values())
    # Every job takes the one slot of its Slurm job; the slot is per Slurm job (local).
    assert document["default-resources"]["group_slot"] == 1
    assert document["resources"] == {"group_slot": 1}
    assert document["set-resource-scopes"] == {"group_slot": "local"}


def dry_run(*args: str, cwd: Path = ROOT) -> str:
    env = {key: value for key, value in os.environ.items() if key not in ENV_KEYS}
    env.pop("SNAKEMAKE_PROFILE", None)
    snakemake = Path(sys.executable).with_name("snakemake")
    result = subprocess.run(
        [str(snakemake), "--dry-run", "--forceall", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


@pytest.mark.slow
def test_test_grid_as_typed_groups_every_recovery_and_local_runs_group_nothing() -> None:
    """`snakemake --cores 8 --profile slurm` in the repository root: the test grid's jobs go
    to Slurm as 7 (data, train_gan, two pretrain_lowshot replicates, its 10 recoveries in
    two, the report), almost 3x fewer than the 20 of one job each; without the profile
    nothing is grouped."""
    grouped = dry_run("--cores", "8", "--profile", "slurm", "--configfile", "configs/test.yaml")
    assert "Using profiles slurm and workflow specific profile profiles/default" in grouped
    # `[date] Group job NAME (...)`, then its jobs indented (`    rule NAME:`); a job of its
    # own is `rule NAME:` in column 0.
    group_jobs: list[tuple[str, list[str]]] = []  # (group, its jobs' rules)
    single = []
    group = None
    for line in grouped.splitlines():
        if match := re.search(r"\] Group job (\w+) ", line):
            group = match.group(1)
            group_jobs.append((group, []))
        elif match := re.match(r"rule (\w+):$", line):
            group = None
            single.append(match.group(1))
        elif group and (match := re.match(r"\s+rule (\w+):$", line)):
            group_jobs[-1][1].append(match.group(1))
    by_group: dict[str, list[list[str]]] = {}
    for name, rules in group_jobs:
        by_group.setdefault(name, []).append(sorted(rules))
    # 10 recoveries in 8 chains: at most 6 chains (group-components) per Slurm job, so two.
    assert len(by_group["recover"]) == 2
    assert [rule for rules in by_group["recover"] for rule in rules] == ["recover"] * 10
    assert by_group["data"] == [["extract_images", "split_data"]]
    (report,) = by_group["report"]
    assert {"collect_metrics", "check_claims", "figure1", "figure2"} <= set(report)
    single.remove("all")  # no Slurm job: it only names the targets
    assert sorted(single) == ["pretrain_lowshot", "pretrain_lowshot", "train_gan"]
    n_jobs = len(single) + sum(len(rules) for _, rules in group_jobs)
    assert n_jobs == 20
    assert len(group_jobs) + len(single) == 7
    local = dry_run("--cores", "2", "--configfile", "configs/test.yaml")
    assert "Group job" not in local


# --- what sbatch is asked for: a stand-in sbatch records the plugin's calls -------------

# Stand-ins for the Slurm commands the plugin runs: sbatch records its call, one line, and
# fails (Snakemake then reports the job as failed: nothing runs); sacctmgr knows the
# account; the others fail at once, as on a machine without Slurm.
FAKE_SLURM = {
    "sbatch": """#!/bin/sh
printf '%s\\n' "$*" >> "$SBATCH_CALLS"
echo "sbatch: error: stand-in sbatch of tests/test_profiles.py" >&2
exit 1
""",
    "sacctmgr": "#!/bin/sh\necho proj\n",
    **{name: "#!/bin/sh\nexit 1\n" for name in ("sacct", "squeue", "scontrol", "sinfo", "sshare")},
}

GROUP_WORKFLOW = """
rule all:
    input:
        expand("out/{i}.txt", i=range(4)),


rule recover:
    output:
        "out/{i}.txt",
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    shell:
        "touch {output}"
"""


def sbatch_calls(tmp_path: Path, *args: str) -> list[str]:
    """The sbatch calls of `snakemake --cores 8 --profile slurm` on a workflow of 4
    independent recoveries (the pipeline's rule name, resources and threads), in a folder
    where `slurm` links to this repository's profile."""
    (tmp_path / "Snakefile").write_text(GROUP_WORKFLOW)
    (tmp_path / "slurm").symlink_to(SLURM_PROFILE.parent)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in FAKE_SLURM.items():
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "sbatch_calls.txt"
    env = {key: value for key, value in os.environ.items() if key not in ENV_KEYS}
    env.pop("SNAKEMAKE_PROFILE", None)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        SBATCH_CALLS=str(calls),
        SBATCH_ACCOUNT="proj",
        SBATCH_PARTITION="gpu",
    )
    result = subprocess.run(
        # --retries 0: one submission per job; status checks after 1 s, not 40 s.
        [
            "snakemake",
            "--cores",
            "8",
            "--profile",
            "slurm",
            "--retries",
            "0",
            "--slurm-init-seconds-before-status-checks",
            "1",
            *args,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0  # every submission failed
    assert calls.is_file(), (result.stdout + result.stderr)[-4000:]
    return calls.read_text().splitlines()


def test_a_group_of_recoveries_asks_sbatch_for_one_gpu_and_the_sum_of_their_times(
    tmp_path: Path,
) -> None:
    calls = sbatch_calls(tmp_path)
    assert len(calls) == 1, calls  # 4 recoveries, one sbatch
    call = calls[0]
    assert "slurm_logs/group_recover_recover/" in call
    assert "--gpus=1" in call.split() and "--cpus-per-task=2" in call.split()
    assert re.search(r" --mem 8000 ", call), call  # one recovery's memory, not 4x
    assert re.search(r" -t 240 ", call), call  # 4 x 60 minutes, one after another
    assert " -p gpu " in call and " -A proj " in call


def test_without_the_per_job_slot_a_group_would_ask_for_a_gpu_per_recovery(
    tmp_path: Path,
) -> None:
    """Why the profile has the slot: with no per-Slurm-job limit, Snakemake sizes a group
    for its jobs side by side (up to --cores), 4 GPUs and 4x the memory for 4 recoveries,
    although the Snakemake inside the allocation runs them one after another."""
    call = sbatch_calls(tmp_path, "--resources", "unrelated=1")[0]
    assert "--gpus=4" in call.split() and re.search(r" --mem 32000 ", call), call


# --- dry-run of the paper config --------------------------------------------------------

# Indented in a group job's block.
JOB_HEADER = re.compile(r"^\s*(?:local)?rule (\w+):$")
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
        "[Fri Nov 27 06:28:21 2026] Group job recover (jobs in lexicogr. order):\n\n"
        "    [Fri Nov 27 06:28:21 2026]\n    rule recover:\n        threads: 2\n"
        "        resources: tmpdir=/tmp, mem_mb=8000, cpus_per_task=2, gpu=1\n"
        "localrule all:\n    input: b\n    resources: tmpdir=/tmp\n"
    )
    jobs = dry_run_jobs(text)
    assert [job["rule"] for job in jobs] == ["train_gan", "recover", "all"]
    assert jobs[0]["threads"] == 2
    assert jobs[0]["resources"]["gpu"] == "1"
    assert jobs[1]["resources"]["mem_mb"] == "8000"
    assert "gpu" not in jobs[2]["resources"]


@pytest.mark.slow
def test_paper_config_dry_run_requests_gpus_on_exactly_the_gpu_rules(tmp_path: Path) -> None:
    # The paper config's data are not on this machine: point its data paths at the shared
    # CelebA test faces (a second config file overrides only these keys). The paper grid
    # leaves CS-DIP's learned regularisation off, and fit_learned_reg runs only for it:
    # the override adds the method, so that every GPU rule is in the dry run.
    paper = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert "learned_reg" not in paper["recover"]["methods"]
    override = tmp_path / "data.yaml"
    override.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "source": str(SHARED_DATA / "celeba-test-faces-64.zip"),
                    "partition_file": str(SHARED_DATA / "list_eval_partition.txt"),
                    "identity_file": str(SHARED_DATA / "identity_CelebA.txt"),
                },
                "recover": {"methods": [*paper["recover"]["methods"], "learned_reg"]},
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
    # One fit per shot count of the paper grid, each a Slurm job of its own (in no group: a
    # grouped job's `rule` line is indented).
    fits = re.findall(r"^rule fit_learned_reg:$", output, flags=re.M)
    assert len(fits) == len(paper["lowshot"]["shots"])
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
