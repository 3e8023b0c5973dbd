"""Checks, after a live-Slurm run, that every job of the workflow went through sbatch.

Called by tests/slurm/live_slurm.sh. Reads the Snakemake log (the slurm plugin logs
"Job N has been submitted with SLURM jobid M (log: PATH)." for each submission; N is a
number for a job of one rule, a UUID for a group job), the plugin's per-job Slurm logs (which
name the jobs each Slurm job ran), the rules' benchmark files, and, when given, `sacct -X -P
-n -o JobID,JobName,Partition,Account,State,ExitCode,Submit,Start,End,AllocTRES,Timelimit,Comment`.
Prints one line per Slurm job (rule or group, wildcards or the jobs it ran, job id,
partition, GPUs, state, queue wait and run time), the jobs submitted and the overhead per
Slurm job, and exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.")
# In a Slurm job's log, the Snakemake inside the allocation announces each job it runs as
# `rule NAME:` (column 0), then its `wildcards:`; the Snakemake of the job step below it
# says `localrule NAME:` for the same job.
JOB_HEADER = re.compile(r"^rule (\w+):$")
JOB_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
JOB_RESOURCES = re.compile(r"^\s+resources: (.*)$")
# What sbatch is asked for, from each job's resources: memory, CPUs, minutes, GPUs.
SIZES = ("mem_mb", "cpus_per_task", "runtime", "gpu")
SACCT_FIELDS = (
    "jobid",
    "jobname",
    "partition",
    "account",
    "state",
    "exitcode",
    "submit",
    "start",
    "end",
    "alloctres",
    "timelimit",
    "comment",
)


@dataclass(frozen=True)
class Submission:
    """One sbatch submission as the plugin logged it: the job of one rule, or a group job
    (`rule` is then the group's name, e.g. `recover_recover`: group id, then its rules)."""

    snakemake_jobid: str
    slurm_jobid: str
    logfile: Path
    rule: str
    wildcards: str
    group: bool = False
    # (rule, wildcards) of each job the Slurm job ran, from its Slurm log.
    jobs: tuple[tuple[str, str], ...] = field(default=())
    # Each of those jobs' SIZES, as the Snakemake in the allocation printed them.
    sizes: tuple[dict[str, int], ...] = field(default=())

    @property
    def rules(self) -> set[str]:
        """Rules the Slurm job ran (its own rule when its log names none)."""
        return {rule for rule, _ in self.jobs} or ({self.rule} if not self.group else set())

    @property
    def key(self) -> tuple[str, str]:
        """Same for every attempt of one job: a retry is a new submission of it."""
        return (self.rule, self.snakemake_jobid if self.group else self.wildcards)


def jobs_in_slurm_log(text: str) -> tuple[tuple[str, str], ...]:
    """(rule, wildcards) of the jobs that the Snakemake inside a Slurm job ran."""
    return tuple((rule, wildcards) for rule, wildcards, _ in read_slurm_log(text))


def read_slurm_log(text: str) -> list[tuple[str, str, dict[str, int]]]:
    """(rule, wildcards, SIZES) of the jobs that the Snakemake inside a Slurm job ran."""
    jobs = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if match := JOB_HEADER.match(line):
            wildcards, sizes = "", {}
            for following in lines[number + 1 : number + 16]:
                if not following.startswith(" "):
                    break
                if found := JOB_WILDCARDS.match(following):
                    wildcards = found.group(1)
                elif found := JOB_RESOURCES.match(following):
                    pairs = (item.split("=", 1) for item in found.group(1).split(", "))
                    sizes = {
                        key: int(value)
                        for key, value in (pair for pair in pairs if len(pair) == 2)
                        if key in SIZES and value.isdigit()
                    }
            jobs.append((match.group(1), wildcards, sizes))
    return jobs


def parse_submissions(log_text: str, workdir: Path) -> list[Submission]:
    """Submissions in the Snakemake log. Rule and wildcards come from the plugin's log path
    `.snakemake/slurm_logs/rule_<rule>/<wildcards>/<jobid>.log` (no wildcard folder when the
    rule has none), a group job's name from `.snakemake/slurm_logs/group_<name>/<jobid>.log`;
    the jobs each Slurm job ran from its log, when it is there."""
    submissions = []
    for match in SUBMITTED.finditer(log_text):
        logfile = Path(match.group(3))
        if not logfile.is_absolute():
            logfile = workdir / logfile
        parts = logfile.parts
        index = max(i for i, part in enumerate(parts) if part.startswith(("rule_", "group_")))
        group = parts[index].startswith("group_")
        name = parts[index].split("_", 1)[1]
        wildcards = "/".join(parts[index + 1 : -1])
        ran = read_slurm_log(logfile.read_text(errors="replace")) if logfile.is_file() else []
        submissions.append(
            Submission(
                match.group(1),
                match.group(2),
                logfile,
                name,
                wildcards,
                group,
                tuple((rule, found) for rule, found, _ in ran),
                tuple(sizes for _, _, sizes in ran),
            )
        )
    return submissions


def benchmark_seconds(folder: Path) -> float:
    """Wall-clock seconds of every job that wrote a Snakemake benchmark file under folder
    (the `s` column): the rules' own run time, without Slurm's or Snakemake's start-up."""
    total = 0.0
    for path in sorted(folder.rglob("*.tsv")):
        with path.open() as handle:
            total += sum(float(row["s"]) for row in csv.DictReader(handle, delimiter="\t"))
    return total


def parse_sacct(text: str) -> dict[str, dict[str, str]]:
    """Rows of `sacct -P -n` output with SACCT_FIELDS, keyed by job id."""
    rows = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        values = line.split("|", len(SACCT_FIELDS) - 1)
        if len(values) != len(SACCT_FIELDS):
            raise ValueError(f"unexpected sacct line: {line!r}")
        row = dict(zip(SACCT_FIELDS, values, strict=True))
        rows[row["jobid"]] = row
    return rows


def gpus_of(alloc_tres: str) -> int:
    """GPUs in an AllocTRES string such as `cpu=1,gres/gpu=1,mem=300M,node=1`."""
    match = re.search(r"gres/gpu=(\d+)", alloc_tres)
    return int(match.group(1)) if match else 0


def tres_of(alloc_tres: str, name: str) -> str | None:
    """One entry of an AllocTRES string (`cpu`, `mem`, `gres/gpu`), None when absent."""
    match = re.search(rf"(?:^|,){re.escape(name)}=([^,]+)", alloc_tres)
    return match.group(1) if match else None


def megabytes(value: str) -> int:
    """Slurm's memory figure (`8000M`, `16G`, `1T`) in MB."""
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}
    return round(float(value[:-1]) * units[value[-1]]) if value[-1] in units else int(value)


def minutes(timelimit: str) -> int | None:
    """Slurm's time limit (`30:00`, `08:00:00`, `1-00:00:00`) in minutes; None: UNLIMITED."""
    if not timelimit[:1].isdigit():
        return None
    days, _, clock = timelimit.rpartition("-")
    parts = [int(part) for part in clock.split(":")]
    hours, mins, secs = ([0] * (3 - len(parts)) + parts) if len(parts) < 3 else parts
    return (int(days or 0) * 24 + hours) * 60 + mins + (secs > 0)


def expected_size(sub: Submission) -> dict[str, int]:
    """What the Slurm job should hold: its jobs run one after another, so the largest
    memory, CPU count and GPU count of its jobs, and the sum of their run times."""
    sizes = [size for size in sub.sizes if size]
    if not sizes or len(sizes) != len(sub.jobs):
        return {}
    want = {key: max(size.get(key, 0) for size in sizes) for key in ("mem_mb", "cpus_per_task")}
    want["runtime"] = sum(size.get("runtime", 0) for size in sizes)
    return want


def seconds_between(start: str, end: str) -> float:
    """Seconds from one sacct timestamp (2026-11-26T07:04:35) to another."""
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def check(
    submissions: list[Submission],
    sacct: dict[str, dict[str, str]] | None,
    partition: str,
    gpu_rules: set[str],
) -> list[str]:
    """Problems found; an empty list means every job went through Slurm as expected.

    A job that Snakemake resubmitted (retries) passes when its last submission completed;
    its earlier attempts are only reported.
    """
    problems = []
    if not submissions:
        problems.append("the Snakemake log names no sbatch submission")
    last = {sub.key: sub for sub in submissions}
    for sub in submissions:
        if not sub.logfile.is_file():
            problems.append(f"no Slurm log {sub.logfile} for job {sub.slurm_jobid}")
        elif not sub.jobs:
            problems.append(f"the Slurm log of job {sub.slurm_jobid} names no job it ran")
        if sacct is None:
            continue
        row = sacct.get(sub.slurm_jobid)
        if row is None:
            problems.append(f"sacct does not know job {sub.slurm_jobid} ({sub.rule})")
            continue
        finished = row["state"] == "COMPLETED" and row["exitcode"] == "0:0"
        if not finished and last[sub.key] is sub:
            problems.append(f"job {sub.slurm_jobid} ({sub.rule}): {row['state']} {row['exitcode']}")
        elif not finished:
            print(f"note: job {sub.slurm_jobid} ({sub.rule}) {row['state']}, resubmitted")
        if row["partition"] != partition:
            problems.append(f"job {sub.slurm_jobid} ran in {row['partition']!r}, not {partition!r}")
        if not row["comment"].startswith(f"rule_{sub.rule}"):
            problems.append(f"job {sub.slurm_jobid}: comment {row['comment']!r} names another rule")
        # One GPU for a Slurm job that runs a GPU rule, whatever the number of jobs it runs.
        want = 1 if sub.rules & gpu_rules else 0
        if gpus_of(row["alloctres"]) != want:
            problems.append(
                f"job {sub.slurm_jobid} ({sub.rule}) got {gpus_of(row['alloctres'])} GPUs, "
                f"expected {want}"
            )
        size = expected_size(sub)
        got = {
            "mem_mb": megabytes(tres_of(row["alloctres"], "mem") or "0M"),
            "cpus_per_task": int(tres_of(row["alloctres"], "cpu") or 0),
            "runtime": minutes(row["timelimit"]),
        }
        for key, value in size.items():
            if value and got[key] != value:
                problems.append(
                    f"job {sub.slurm_jobid} ({sub.rule}) got {key} {got[key]}, expected {value} "
                    f"(largest of its {len(sub.jobs)} jobs; run time: their sum)"
                )
    return problems


def describe(sub: Submission) -> str:
    """Wildcards of a rule's job; what a group job ran (`8 jobs: recover x8`)."""
    if not sub.group:
        return sub.wildcards or "-"
    counts = Counter(rule for rule, _ in sub.jobs)
    ran = ", ".join(f"{rule} x{n}" for rule, n in sorted(counts.items()))
    return f"{len(sub.jobs)} jobs: {ran}" if sub.jobs else "group (no jobs in its log)"


def report(
    submissions: list[Submission],
    sacct: dict[str, dict[str, str]] | None,
    wall_seconds: float,
    rule_seconds: float | None = None,
) -> None:
    """Prints the Slurm job ids of the rules and groups, the jobs submitted and the overhead:
    the workflow's wall time, and the Slurm jobs' run time in sacct, less the rules' own run
    time (rule_seconds, from the benchmark files), per Slurm job and per rule job. On the
    one-node test cluster the jobs run mostly one at a time, so the first is what the Slurm
    jobs add in all (sbatch, Slurm's start, the Snakemake start-ups in the allocation, the
    wait for the next status check), the second what they add inside their allocations."""
    print("Slurm jobs of the workflow's rules and groups:")
    waits, runs = [], []
    for sub in sorted(submissions, key=lambda s: int(s.slurm_jobid)):
        kind = "group " + sub.rule if sub.group else sub.rule
        line = f"  {kind:<24} {describe(sub):<36} slurm job {sub.slurm_jobid:>5}"
        row = (sacct or {}).get(sub.slurm_jobid)
        if row is not None:
            wait = seconds_between(row["submit"], row["start"])
            run = seconds_between(row["start"], row["end"])
            waits.append(wait)
            runs.append(run)
            line += (
                f"  partition={row['partition']} gpus={gpus_of(row['alloctres'])} "
                f"{row['state']} wait={wait:.0f}s run={run:.0f}s"
            )
        print(line)
    if not submissions:
        return
    slurm_jobs = len(submissions)
    groups = sum(sub.group for sub in submissions)
    rule_jobs = sum(len(sub.jobs) or 1 for sub in submissions)

    def per_job(seconds: float) -> str:
        return (
            f"{seconds:.0f}s, {seconds / slurm_jobs:.1f}s per Slurm job, "
            f"{seconds / rule_jobs:.1f}s per rule job"
        )

    print(
        f"jobs submitted: {slurm_jobs} Slurm jobs for {rule_jobs} rule jobs "
        f"({slurm_jobs - groups} of one rule, {groups} group jobs)"
    )
    print(
        f"{slurm_jobs} Slurm jobs in {wall_seconds:.0f}s of workflow wall time: "
        f"{wall_seconds / slurm_jobs:.1f}s per job (submit, run, status polling)"
    )
    if rule_seconds:
        print(
            f"overhead, wall time less the rules' own run time ({rule_seconds:.0f}s, "
            f"benchmarks): {per_job(max(wall_seconds - rule_seconds, 0.0))}"
        )
        if runs:
            print(
                f"overhead inside the allocations, sacct run time ({sum(runs):.0f}s) less the "
                f"rules' own: {per_job(max(sum(runs) - rule_seconds, 0.0))}"
            )
    if waits:
        totals = [wait + run for wait, run in zip(waits, runs, strict=True)]
        print(
            f"sacct: median queue wait {statistics.median(waits):.0f}s, "
            f"median submit-to-end {statistics.median(totals):.0f}s"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snakemake-log", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--sacct", type=Path, help="sacct -P -n output with SACCT_FIELDS")
    parser.add_argument("--partition", required=True)
    parser.add_argument("--gpu-rules", required=True, help="comma-separated rule names")
    parser.add_argument("--wall-seconds", type=float, default=0.0)
    parser.add_argument(
        "--benchmarks",
        type=Path,
        help="folder of the rules' benchmark files (default: WORKDIR/results/benchmarks)",
    )
    args = parser.parse_args(argv)

    submissions = parse_submissions(args.snakemake_log.read_text(), args.workdir)
    sacct = parse_sacct(args.sacct.read_text()) if args.sacct else None
    benchmarks = args.benchmarks or args.workdir / "results" / "benchmarks"
    rule_seconds = benchmark_seconds(benchmarks) if benchmarks.is_dir() else None
    report(submissions, sacct, args.wall_seconds, rule_seconds)
    problems = check(submissions, sacct, args.partition, set(args.gpu_rules.split(",")))
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
