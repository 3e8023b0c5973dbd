"""Checks, after a live-Slurm run, that every job of the workflow went through sbatch.

Called by tests/slurm/live_slurm.sh. Reads the Snakemake log (the slurm plugin logs
"Job N has been submitted with SLURM jobid M (log: PATH)." for each submission), the plugin's
per-job Slurm logs, and, when given, `sacct -X -P -n -o JobID,JobName,Partition,Account,
State,ExitCode,Submit,Start,End,AllocTRES,Comment`. Prints one line per Slurm job (rule,
wildcards, job id, partition, GPUs, state, queue wait and run time) and the per-job overhead,
and exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.")
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
    "comment",
)


@dataclass(frozen=True)
class Submission:
    """One sbatch submission as the plugin logged it."""

    snakemake_jobid: int
    slurm_jobid: str
    logfile: Path
    rule: str
    wildcards: str


def parse_submissions(log_text: str, workdir: Path) -> list[Submission]:
    """Submissions in the Snakemake log; rule and wildcards come from the plugin's log path
    `.snakemake/slurm_logs/rule_<rule>/<wildcards>/<jobid>.log` (no wildcard folder when the
    rule has none)."""
    submissions = []
    for match in SUBMITTED.finditer(log_text):
        logfile = Path(match.group(3))
        if not logfile.is_absolute():
            logfile = workdir / logfile
        parts = logfile.parts
        rule_index = max(i for i, part in enumerate(parts) if part.startswith("rule_"))
        rule = parts[rule_index][len("rule_") :]
        wildcards = "/".join(parts[rule_index + 1 : -1])
        submissions.append(
            Submission(int(match.group(1)), match.group(2), logfile, rule, wildcards)
        )
    return submissions


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
    last = {(sub.rule, sub.wildcards): sub for sub in submissions}
    for sub in submissions:
        if not sub.logfile.is_file():
            problems.append(f"no Slurm log {sub.logfile} for job {sub.slurm_jobid}")
        if sacct is None:
            continue
        row = sacct.get(sub.slurm_jobid)
        if row is None:
            problems.append(f"sacct does not know job {sub.slurm_jobid} ({sub.rule})")
            continue
        finished = row["state"] == "COMPLETED" and row["exitcode"] == "0:0"
        if not finished and last[(sub.rule, sub.wildcards)] is sub:
            problems.append(f"job {sub.slurm_jobid} ({sub.rule}): {row['state']} {row['exitcode']}")
        elif not finished:
            print(f"note: job {sub.slurm_jobid} ({sub.rule}) {row['state']}, resubmitted")
        if row["partition"] != partition:
            problems.append(f"job {sub.slurm_jobid} ran in {row['partition']!r}, not {partition!r}")
        if not row["comment"].startswith(f"rule_{sub.rule}"):
            problems.append(f"job {sub.slurm_jobid}: comment {row['comment']!r} names another rule")
        want = 1 if sub.rule in gpu_rules else 0
        if gpus_of(row["alloctres"]) != want:
            problems.append(
                f"job {sub.slurm_jobid} ({sub.rule}) got {gpus_of(row['alloctres'])} GPUs, "
                f"expected {want}"
            )
    return problems


def report(
    submissions: list[Submission], sacct: dict[str, dict[str, str]] | None, wall_seconds: float
) -> None:
    """Prints the Slurm job ids of the rules and the per-job overhead."""
    print("Slurm jobs of the workflow's rules:")
    waits, runs = [], []
    for sub in sorted(submissions, key=lambda s: int(s.slurm_jobid)):
        line = f"  {sub.rule:<18} {sub.wildcards or '-':<40} slurm job {sub.slurm_jobid:>5}"
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
    if submissions:
        print(
            f"{len(submissions)} Slurm jobs in {wall_seconds:.0f}s of workflow wall time: "
            f"{wall_seconds / len(submissions):.1f}s per job (submit, run, status polling)"
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
    args = parser.parse_args(argv)

    submissions = parse_submissions(args.snakemake_log.read_text(), args.workdir)
    sacct = parse_sacct(args.sacct.read_text()) if args.sacct else None
    report(submissions, sacct, args.wall_seconds)
    problems = check(submissions, sacct, args.partition, set(args.gpu_rules.split(",")))
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
