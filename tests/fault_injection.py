"""Fault injection: interrupt the workflow at several points, rerun, and check that
nothing was lost and nothing was left behind.

Each scenario starts Snakemake on a small target (the untrained recovery of every
compressed-sensing problem, and the metrics table), waits until a recovery job is
running, interrupts, then reruns as the README says (``--unlock`` first when Snakemake
itself was killed) and checks that

- the final ``metrics.csv`` equals the uninterrupted run's rows (every column but the
  wall time ``seconds``): those of the finished run whose data stage it copied, which
  recovered the same images with the same settings and threads;
- no temporary file (``*.tmp``) and no incomplete-job marker is left.

Kill points: SIGKILL of the recovery job; SIGINT of Snakemake's process group (Ctrl-C in
a terminal); SIGKILL of Snakemake itself, whose orphaned job is then stopped, followed by
``--unlock``. ``tests/test_pipeline.py`` runs it on a copy of its finished data stage;
run it by hand as ``python tests/fault_injection.py WORKDIR`` on a workflow folder that
``prepare`` made, to see the table.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
import yaml


def command(*args: str) -> list[str]:
    """A Snakemake command line; targets come before ``--configfile``, which takes every
    word after it as a config file."""
    # One torch thread per job, as tests/test_pipeline.py runs: the same arithmetic.
    return [
        *[sys.executable, "-m", "snakemake", *args, "--cores", "2"],
        *["--set-threads", "recover=1", "--configfile", "fault.yaml"],
    ]


TARGET = "results/tables/metrics.csv"


@dataclass
class Outcome:
    """One scenario: how the interrupted run ended, and what the rerun left."""

    scenario: str
    interrupted_rc: int
    rerun_rc: int
    metrics_equal: bool
    leftovers: list[str]

    @property
    def ok(self) -> bool:
        return self.rerun_rc == 0 and self.metrics_equal and not self.leftovers


def prepare(workdir: Path, base_config: dict, finished: Path) -> Path:
    """Write ``fault.yaml`` (``base_config`` less colorization, the untrained network only)
    into the workflow copy ``workdir``, copy the data stage of ``finished`` (the results
    folder of a finished run of ``base_config``) so that the scenarios start at the
    recoveries, and write its matching metrics rows as ``reference_metrics.csv``."""
    config = yaml.safe_load(yaml.safe_dump(base_config))
    config["problems"]["colorization"] = {"enabled": False}
    config["recover"]["methods"] = ["untrained"]
    (workdir / "fault.yaml").write_text(yaml.safe_dump(config))
    data = workdir / "results" / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in ("images.h5", "splits.h5", ".fingerprints.json"):
        if (finished / "data" / name).exists():
            shutil.copy2(finished / "data" / name, data / name)
    metrics = pd.read_csv(finished / "tables" / "metrics.csv")
    keep = (metrics["method"] == "untrained") & (metrics["problem_kind"] == "compressed_sensing")
    reference = workdir / "reference_metrics.csv"
    metrics[keep].to_csv(reference, index=False)
    return reference


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(*args), cwd=workdir, capture_output=True, text=True, timeout=1800)


def clean(workdir: Path) -> None:
    """Remove every output of the target (not the data stage), as before a first run."""
    for name in ("recovery", "tables", "logs/recover", "logs/collect_metrics"):
        shutil.rmtree(workdir / "results" / name, ignore_errors=True)


def running_job(process: subprocess.Popen[str], timeout: float = 600) -> psutil.Process:
    """The first recovery job of Snakemake ``process``, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Snakemake ended (rc {process.returncode}) before a job ran")
        for child in psutil.Process(process.pid).children(recursive=True):
            try:
                if any("recover.py" in part for part in child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    raise RuntimeError("no recovery job started")


def interrupt(workdir: Path, scenario: str) -> int:
    """Start Snakemake on the target, interrupt it as ``scenario`` says; return its rc."""
    process = subprocess.Popen(
        command(TARGET),
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    job = running_job(process)
    if scenario == "SIGKILL job":
        job.send_signal(signal.SIGKILL)
    elif scenario == "SIGINT process group":
        os.killpg(process.pid, signal.SIGINT)
    elif scenario == "SIGKILL snakemake":
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        # The README's recipe: stop the orphaned job, then unlock.
        job.send_signal(signal.SIGTERM)
        job.wait(timeout=60)
        unlocked = snakemake(workdir, "--unlock")
        if unlocked.returncode != 0:
            raise RuntimeError(unlocked.stdout + unlocked.stderr)
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    return process.wait(timeout=600)


def leftovers(workdir: Path) -> list[str]:
    """Temporary files under results/ and Snakemake's incomplete-job markers."""
    found = [str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*.tmp")]
    markers = workdir / ".snakemake" / "incomplete"
    if markers.is_dir():
        found += [str(p.relative_to(workdir)) for p in markers.rglob("*") if p.is_file()]
    return sorted(found)


def same_metrics(a: Path, b: Path) -> bool:
    """The two tables agree in every column but the wall time."""
    left, right = pd.read_csv(a), pd.read_csv(b)
    columns = [c for c in left.columns if c != "seconds"]
    return list(left.columns) == list(right.columns) and left[columns].reset_index(
        drop=True
    ).equals(right[columns].reset_index(drop=True))


SCENARIOS = ("SIGKILL job", "SIGINT process group", "SIGKILL snakemake")


def run(workdir: Path, scenarios: tuple[str, ...] = SCENARIOS) -> list[Outcome]:
    """Every scenario on a ``prepare``d ``workdir``; returns their outcomes."""
    reference = workdir / "reference_metrics.csv"
    outcomes = []
    for scenario in scenarios:
        clean(workdir)
        interrupted_rc = interrupt(workdir, scenario)
        rerun = snakemake(workdir, TARGET)
        equal = rerun.returncode == 0 and same_metrics(workdir / TARGET, reference)
        outcomes.append(
            Outcome(scenario, interrupted_rc, rerun.returncode, equal, leftovers(workdir))
        )
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    """The outcomes as a Markdown table."""
    lines = [
        "| kill point | interrupted run rc | rerun rc | metrics.csv = uninterrupted "
        "| left behind |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for o in outcomes:
        left = ", ".join(o.leftovers) or "nothing"
        lines.append(
            f"| {o.scenario} | {o.interrupted_rc} | {o.rerun_rc} | "
            f"{'yes' if o.metrics_equal else 'NO'} | {left} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run(Path(sys.argv[1]))))
