"""Every command README.md shows is checked, the cheapest way that shows it works; every
relative link of README.md and docs/*.md resolves.

The commands come from the README's own text (``readme_text.commands``: each line of a
shell block, and each inline code span that starts with a program), so a command added
to the README is checked without editing this file. Each goes through the first rule
that takes it (``plan``):

- ``snakemake ...`` (also ``.venv/bin/snakemake``, ``python -m snakemake``): a dry run
  (``--dry-run`` added) in a copy of the workflow beside ``../shared``, with the
  command's own profile and options, and ``--configfile configs/test.yaml`` when it names
  no config (``config.yaml``'s data are not here); stand-ins for the Slurm commands
  record any call, and a dry run must make none. Skipped: ``--sdm conda`` where conda is
  missing, and ``--report``, which needs a finished run (tests/test_pipeline.py builds the
  report after its run);
- ``make ARGS``: ``make -n ARGS`` succeeds, and each ``VAR=`` is a variable the Makefile
  uses;
- ``python -m MODULE ARGS`` and ``[python] benchmarks/NAME.py ARGS``: answers ``--help``,
  and the help names every ``--option`` of ARGS;
- ``bash SCRIPT``: ``bash -n`` parses it, and each ``VAR=`` before it is a variable the
  script reads;
- ``source FILE``: FILE exists; ``cp SRC... DST``: the sources exist;
- skipped, each with its reason: ``pip`` and ``python -m pip`` (they install packages),
  and the programs of ``SKIPPED``.

A command that no rule takes fails. The dry runs and the ``--help`` runs share one warm
process (tests/readme_runner.py forks a child per command). ``pytest -v`` lists each
command with its rule as the test id, ``-rs`` the reasons of the skipped ones, and
``test_every_readme_command_has_a_rule`` prints the whole table.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import copy_workflow
from readme_text import (
    ASSIGNMENT,
    ENTRY_POINT,
    Command,
    commands,
    prose,
    readme_text,
    relative_links,
)

REPO = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("readme_runner.py")
TEST_CONFIG = "configs/test.yaml"
# Words the README writes for "fill in your own": left out of the command.
PLACEHOLDERS = {"…", "..."}
SKIPPED = {
    "nvidia-smi": "needs an NVIDIA GPU and its driver",
    "nvidia-cuda-mps-control": "needs an NVIDIA GPU and its driver",
    "sbatch": "needs a Slurm cluster (tests/test_profiles.py records what the profile asks "
    "sbatch for)",
    "git": "fetches the repository from its host",
    "cd": "moves the reader's shell; the checks run in the repository root",
    "export": "sets a variable of the reader's shell; the checks use configs/test.yaml's data "
    "and no Slurm partition or account",
    "kill": "acts on the reader's running processes",
    "pgrep": "lists the reader's running processes",
}
RUNNER_KINDS = {"snakemake", "module", "script"}
# Stand-ins record calls of these; a dry run may query Slurm (the plugin reads
# `scontrol show config`) but never submit or cancel a job.
SUBMITTING = {"sbatch", "srun", "salloc", "scancel"}
SLURM_COMMANDS = (
    "sbatch",
    "srun",
    "salloc",
    "scancel",
    "sacct",
    "squeue",
    "scontrol",
    "sinfo",
    "sacctmgr",
)


@dataclass(frozen=True)
class Plan:
    """How one README command is checked: ``rule`` (shown in the test id), ``kind`` (what
    runs: "snakemake", "module", "script", "make", "bash", "exists", "skip" or "none"),
    ``target`` and ``args`` of what runs, ``reason`` of a skip, ``lines`` in README.md."""

    command: Command
    rule: str
    kind: str
    target: str = ""
    args: tuple[str, ...] = ()
    reason: str = ""
    lines: tuple[int, ...] = ()

    @property
    def id(self) -> str:
        text = self.command.text
        return f"{self.rule}: {text if len(text) <= 90 else text[:87] + '...'}"


def snakemake_arguments(words: list[str]) -> list[str] | None:
    """The arguments of a Snakemake command, None when it is not one."""
    if words[:1] in (["snakemake"], [".venv/bin/snakemake"]):
        return words[1:]
    if words[:3] in (["python", "-m", "snakemake"], ["python3", "-m", "snakemake"]):
        return words[3:]
    return None


# Snakemake options that do no work on the workflow's jobs: run as typed (in the copy).
AS_TYPED = {"--version", "--unlock"}


def dry_run_arguments(args: list[str]) -> list[str]:
    """``args`` as a dry run on the test config (unless they name a config)."""
    if "--version" in args:
        return args
    if not {"-n", "--dry-run", "--dryrun", *AS_TYPED} & set(args):
        args = ["--dry-run", *args]
    names_config = any(a == "--configfile" or a.startswith("--configfile=") for a in args)
    if not names_config or args[-1] == "--configfile":  # none, or a placeholder dropped
        args = [*args, *([] if names_config else ["--configfile"]), TEST_CONFIG]
    return args


def plan(command: Command, lines: tuple[int, ...] = ()) -> Plan:
    """The first rule (module docstring) that takes ``command``."""
    words = [w for w in command.words if w not in PLACEHOLDERS]
    assignments = next((i for i, w in enumerate(words) if not ASSIGNMENT.match(w)), len(words))
    env, words = words[:assignments], words[assignments:]
    program = words[0] if words else ""

    def planned(rule: str, kind: str, **fields: object) -> Plan:
        return Plan(command, rule, kind, lines=lines, **fields)  # type: ignore[arg-type]

    if (args := snakemake_arguments(words)) is not None:
        if "--report" in args:
            return planned(
                "skipped",
                "skip",
                reason="builds the report of a finished run (tests/test_pipeline.py "
                "builds one after its run)",
            )
        if "--sdm" in args and "conda" in args and shutil.which("conda") is None:
            return planned("skipped", "skip", reason="needs conda, which this machine lacks")
        rule = "as typed" if AS_TYPED & set(args) else "dry run"
        return planned(rule, "snakemake", args=tuple(dry_run_arguments(args)))
    if program == "make":
        return planned("make -n", "make", args=tuple(words[1:]))
    if program == "pip" or words[1:3] == ["-m", "pip"]:
        return planned(
            "skipped", "skip", reason="installs or inspects packages of the reader's environment"
        )
    if program in {"python", "python3"} and words[1:2] == ["-m"] and len(words) > 2:
        return planned("--help", "module", target=words[2], args=tuple(words[3:]))
    if program in {"python", "python3"} and len(words) > 1 and ENTRY_POINT.match(words[1]):
        return planned("--help", "script", target=words[1], args=tuple(words[2:]))
    if ENTRY_POINT.match(program):
        return planned("--help", "script", target=program, args=tuple(words[1:]))
    if program == "bash" and len(words) > 1:
        return planned("bash -n", "bash", target=words[1], args=tuple(env))
    if program == "source" and len(words) == 2:
        return planned("exists", "exists", args=(words[1],))
    if program == "cp":
        sources = [w for w in words[1:] if not w.startswith("-")][:-1]
        if not sources:
            return planned("skipped", "skip", reason="names an option of cp, no file")
        return planned("exists", "exists", args=tuple(sources))
    if program in SKIPPED:
        return planned("skipped", "skip", reason=SKIPPED[program])
    return planned("no rule", "none")


def readme_plans() -> list[Plan]:
    """One plan per distinct README command, with every line that shows it."""
    lines: dict[tuple[str, ...], list[int]] = {}
    first: dict[tuple[str, ...], Command] = {}
    for command in commands(readme_text()):
        lines.setdefault(command.words, []).append(command.line)
        first.setdefault(command.words, command)
    return [plan(first[words], tuple(lines[words])) for words in first]


PLANS = readme_plans()


def test_every_readme_command_has_a_rule() -> None:
    table = "\n".join(
        f"{p.rule:8} {p.command.text}  (README.md:{','.join(map(str, p.lines))})"
        + (f"  -- {p.reason}" if p.reason else "")
        for p in PLANS
    )
    print(f"README commands, {len(PLANS)} distinct:\n{table}")
    assert [p.id for p in PLANS if p.kind == "none"] == [], "a command without a rule:\n" + table
    # The README shows each kind of command this file checks (a parser that lost them
    # would leave nothing to check).
    assert {"snakemake", "make", "module", "script", "skip"} <= {p.kind for p in PLANS}


def test_rules_on_examples() -> None:
    def rule(text: str) -> tuple[str, str, tuple[str, ...]]:
        p = plan(Command(tuple(shlex.split(text)), 1, "inline"))
        return p.kind, p.target, p.args

    assert rule("snakemake --cores 8 --profile slurm") == (
        "snakemake",
        "",
        ("--dry-run", "--cores", "8", "--profile", "slurm", "--configfile", TEST_CONFIG),
    )
    assert rule("snakemake --unlock --configfile …")[2] == (
        "--unlock",
        "--configfile",
        TEST_CONFIG,
    )
    assert rule(".venv/bin/snakemake t.png --configfile configs/quick.yaml")[2] == (
        "--dry-run",
        "t.png",
        "--configfile",
        "configs/quick.yaml",
    )
    assert rule("python -m snakemake --version") == ("snakemake", "", ("--version",))
    assert rule("snakemake --report r.html --configfile x")[0] == "skip"
    assert rule("make TORCH_SPEC=torch ...") == ("make", "", ("TORCH_SPEC=torch",))
    assert rule("python3 -m pip install x")[0] == "skip"
    assert rule("python -m lowshot.summary results") == ("module", "lowshot.summary", ("results",))
    assert rule("benchmarks/recovery.py --images 5")[:2] == ("script", "benchmarks/recovery.py")
    assert rule("A=1 bash benchmarks/gpu_run.sh") == ("bash", "benchmarks/gpu_run.sh", ("A=1",))
    assert rule("cp -r profiles/slurm profiles/mine") == ("exists", "", ("profiles/slurm",))
    assert rule("nvidia-smi -L")[0] == "skip"
    assert rule("frobnicate --all")[0] == "none"


# --- running the checks ---------------------------------------------------------------


@pytest.fixture(scope="module")
def runner_results(tmp_path_factory: pytest.TempPathFactory, shared_celeba: Path):
    """Exit status and output of every dry run and --help, from one warm process; and the
    Slurm commands the dry runs called (none, when all is well)."""
    root = tmp_path_factory.mktemp("readme")
    (root / "shared").symlink_to(shared_celeba.parents[1])  # ../shared of the copy
    workdir = copy_workflow(root / "lowshot")
    (workdir / "slurm").symlink_to(os.readlink(REPO / "slurm"))
    stubs = root / "bin"
    stubs.mkdir()
    calls = root / "slurm_calls.txt"
    for name in SLURM_COMMANDS:  # record the call, fail as on a machine without Slurm
        (stubs / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\nexit 1\n')
        (stubs / name).chmod(0o755)
    jobs = {}
    for p in PLANS:
        if p.kind in RUNNER_KINDS:
            args = list(p.args) if p.kind == "snakemake" else ["--help"]
            cwd = workdir if p.kind == "snakemake" else REPO
            jobs.setdefault(
                p.id,
                {"kind": p.kind, "target": p.target, "args": args, "cwd": str(cwd)},
            )
    for index, job in enumerate(jobs.values()):
        job["log"] = str(root / f"job{index}.log")
    (root / "jobs.json").write_text(json.dumps(list(jobs.values())))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SBATCH_") and key not in {"SNAKEMAKE_PROFILE", "LOWSHOT_DATA"}
    }
    env["PATH"] = os.pathsep.join([str(stubs), str(Path(sys.executable).parent), env["PATH"]])
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(root / "jobs.json")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    results = {
        key: (code, Path(job["log"]).read_text(errors="replace"))
        for (key, job), code in zip(jobs.items(), codes, strict=True)
    }
    return results, calls.read_text().splitlines() if calls.exists() else []


def check_help(output: str, args: tuple[str, ...]) -> None:
    assert "usage:" in output, output[-2000:]
    for option in (a.split("=", 1)[0] for a in args if a.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", output), (
            f"{option} is not in the --help output:\n{output[-3000:]}"
        )


def check_make(args: tuple[str, ...]) -> None:
    done = subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    makefile = (REPO / "Makefile").read_text()
    for name in (a.split("=", 1)[0] for a in args if ASSIGNMENT.match(a)):
        assert f"$({name})" in makefile, f"make variable {name} is not used by the Makefile"


def check_bash(script: str, env: tuple[str, ...]) -> None:
    subprocess.run(["bash", "-n", script], cwd=REPO, check=True)
    text = (REPO / script).read_text()
    for name in (a.split("=", 1)[0] for a in env):
        assert re.search(rf"\$\{{?{name}\b", text), f"{script} reads no variable {name}"


def check_exists(paths: tuple[str, ...]) -> None:
    for path in paths:
        # .venv/... is the environment `make setup` creates: the one running the tests.
        where = (
            Path(sys.prefix, path[len(".venv/") :]) if path.startswith(".venv/") else REPO / path
        )
        assert where.exists(), f"{path} does not exist ({where})"


@pytest.mark.parametrize(
    "p",
    [
        # The dry runs and --help runs share one process of some seconds: slow.
        pytest.param(p, id=p.id, marks=[pytest.mark.slow] if p.kind in RUNNER_KINDS else [])
        for p in PLANS
    ],
)
def test_readme_command(p: Plan, request: pytest.FixtureRequest) -> None:
    if p.kind == "skip":
        pytest.skip(f"{p.command.text}: skipped by rule: {p.reason}")
    assert p.kind != "none", f"no rule checks {p.command.text!r}: add one to tests/test_readme.py"
    if p.kind in RUNNER_KINDS:
        results, slurm_calls = request.getfixturevalue("runner_results")
        code, output = results[p.id]
        assert code == 0, f"{p.command.text} -> exit {code}:\n{output[-4000:]}"
        submitted = [call for call in slurm_calls if call.split()[0] in SUBMITTING]
        assert submitted == [], f"a dry run submitted to Slurm: {submitted}"
        if p.rule == "dry run":
            assert "This was a dry-run" in output, output[-2000:]
        elif "--unlock" in p.args:
            assert "Unlocked working directory" in output, output[-2000:]
        elif p.kind != "snakemake":
            check_help(output, p.args)
    elif p.kind == "make":
        check_make(p.args)
    elif p.kind == "bash":
        check_bash(p.target, p.args)
    elif p.kind == "exists":
        check_exists(p.args)


# --- links -----------------------------------------------------------------------------


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation but - and _ dropped,
    spaces to -; a repeated heading gets -1, -2, ..."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*#*$", prose(markdown), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.name)
def test_relative_links_resolve(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    broken = []
    for target, line in relative_links(text):
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{path.name}:{line}: {target} (no such file)")
        elif (
            anchor
            and destination.suffix == ".md"
            and anchor not in anchors(destination.read_text(encoding="utf-8"))
        ):
            broken.append(f"{path.name}:{line}: {target} (no such heading)")
    assert broken == []
