"""Stage timings of a finished run and the ``reference/`` folder a rerun is compared with.

``job_times`` reads what every heavy rule leaves under ``results/``: Snakemake's benchmark
TSV (``benchmarks/<rule>/….tsv``, column ``s`` = the job's seconds, ``max_rss`` its peak
resident set in MB; the file is written when the job ends, so its mtime is the job's end
and mtime − ``s`` its start) and the job's log (``logs/<rule>/….log``, the same relative
path: the device line and the last "peak memory" and "peak reserved memory" lines of
``lowshot.jobs``). ``stage_times`` groups the jobs into the stages of ``STAGES`` (first
start → last end, summed and longest job, largest memory); ``grid_totals`` gives the whole
run's figures, among them the most memory the jobs running at once held together.

``write_reference`` copies a run's tables and figures (``lowshot.summary.OUTPUTS``, the
report rules' outputs) into a folder with ``provenance.json`` (commit, device, torch,
config, wall time, the stage table) and ``stages.csv``; ``check_reference`` lists what is
wrong with such a folder, the tables checked against the columns the current writers
produce (``TABLE_SCHEMAS``).

Benchmark mtimes are the run's only clock: a results tree copied without its times
(``cp -r`` without ``-p``) or holding benchmarks of earlier runs gives wrong spans.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from lowshot import claims, summary, tables
from lowshot.data.sources import file_sha256

# The stage of each rule of the workflow (rules/*.smk); a rule not named here is a stage
# of its own, under its own name (a plugin's rule is reported, never dropped).
STAGES: dict[str, str] = {
    "extract_images": "data",
    "split_data": "data",
    "train_gan": "train_gan",
    "pretrain_lowshot": "pretrain_lowshot",
    "fit_learned_reg": "fit_learned_reg",
    "recover": "recover",
    "collect_metrics": "report",
    "check_claims": "report",
    "figure1": "report",
    "figure2": "report",
    "figure3": "report",
}
# Stages in the order of the pipeline; unknown ones follow, sorted by name.
STAGE_ORDER: tuple[str, ...] = (
    "data",
    "train_gan",
    "pretrain_lowshot",
    "fit_learned_reg",
    "recover",
    "report",
)
# The stage names of the README's table.
STAGE_LABELS: dict[str, str] = {
    "data": "data (`extract_images`, `split_data`)",
    "report": "report (`collect_metrics`, `check_claims`, figures)",
}

# One row per job: rule, stage, the job's path under benchmarks/ without ".tsv", its
# seconds, start and end (epoch seconds), peak RSS (MB, Snakemake's sampling), the logged
# peak memory (MiB: torch's allocator peak on CUDA, the process's max RSS on the CPU),
# the logged peak reserved memory (MiB, CUDA only) and the logged device.
JOB_COLUMNS: list[str] = [
    "rule",
    "stage",
    "job",
    "seconds",
    "start",
    "end",
    "max_rss_mb",
    "peak_memory_mib",
    "peak_reserved_mib",
    "device",
]
# One row per stage (``stage_times``, ``stages.csv``): start and end relative to the
# run's first job start, span = end − start (seconds, to 0.01), the sum and maximum of
# the jobs' seconds, the most jobs of the stage running at once, the largest memory
# figures of its jobs and the devices its logs name ("" where none does: a CPU rule).
STAGE_COLUMNS: list[str] = [
    "stage",
    "rules",
    "jobs",
    "start_s",
    "end_s",
    "span_s",
    "job_s_total",
    "job_s_max",
    "max_parallel",
    "peak_memory_mib",
    "peak_reserved_mib",
    "max_rss_mb",
    "devices",
]

_PEAK = re.compile(r"peak memory:? ([0-9.]+) MiB")
_RESERVED = re.compile(r"peak reserved memory: ([0-9.]+) MiB")
_DEVICE = re.compile(r"\bdevice: (cuda\S*(?: \([^)]*\))?|cpu)")


def _read_claims_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """``claims.csv`` as ``claims.write_claims_csv`` wrote it (the module has no reader)."""
    return pd.read_csv(path)


# The reference's CSV tables: path under results/ -> (the project's reader, the columns
# the current writer produces, in order). ``metrics_table``, ``summarize`` and
# ``check_claims`` build their frames with exactly these constants.
TABLE_SCHEMAS: dict[str, tuple[Callable[[Path], pd.DataFrame], list[str]]] = {
    "tables/metrics.csv": (tables.read_metrics_csv, tables.METRIC_COLUMNS),
    "tables/psnr_summary.csv": (tables.read_summary_csv, tables.SUMMARY_COLUMNS),
    "tables/claims.csv": (_read_claims_csv, claims.CLAIM_COLUMNS),
}
# Tables a reference must hold; the others (claims) where the run made them.
REQUIRED_TABLES: tuple[str, ...] = ("tables/metrics.csv", "tables/psnr_summary.csv")
# What a reference copies from results/: the report rules' outputs, where they exist.
REFERENCE_FILES: tuple[str, ...] = summary.OUTPUTS
PROVENANCE_KEYS: tuple[str, ...] = (
    "commit",
    "dirty",
    "device",
    "torch",
    "python",
    "config",
    "wall_seconds",
    "date",
    "stages",
    "files",
)


# --- timings -------------------------------------------------------------------------


def stage_of(rule: str) -> str:
    """The stage of ``rule`` (``STAGES``); an unknown rule is a stage of its own."""
    return STAGES.get(rule, rule)


def parse_job_log(text: str) -> dict[str, Any]:
    """``peak_memory_mib``, ``peak_reserved_mib`` (the last of each line, NaN when none)
    and ``device`` ("cpu", "cuda:0 (NVIDIA …)", or "" when none) of a job's log."""
    peaks = _PEAK.findall(text)
    reserved = _RESERVED.findall(text)
    devices = _DEVICE.findall(text)
    return {
        "peak_memory_mib": float(peaks[-1]) if peaks else math.nan,
        "peak_reserved_mib": float(reserved[-1]) if reserved else math.nan,
        "device": devices[-1] if devices else "",
    }


def read_benchmark(path: str | os.PathLike[str]) -> dict[str, float]:
    """``seconds`` (the sum of column ``s`` over the TSV's rows: one row unless the rule
    repeats) and ``max_rss_mb`` (their maximum; NaN where Snakemake wrote "-")."""
    table = pd.read_csv(path, sep="\t", na_values=["-", "NA"])
    if "s" not in table.columns or table.empty:
        raise ValueError(f"{path}: not a Snakemake benchmark (no 's' column or no row)")
    rss = table["max_rss"] if "max_rss" in table.columns else pd.Series(dtype=float)
    return {
        "seconds": float(table["s"].astype(float).sum()),
        "max_rss_mb": float(rss.astype(float).max()) if rss.notna().any() else math.nan,
    }


def job_times(results: Path) -> pd.DataFrame:
    """One row per job benchmarked under ``results/benchmarks/`` (``JOB_COLUMNS``).

    A job's end is its benchmark's mtime, its start that minus its seconds; its memory
    and device come from ``results/logs/<the same path>.log`` (NaN/"" without a log).
    Sorted by start. Empty (with the columns) when nothing was benchmarked.
    """
    results = Path(results)
    rows = []
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        relative = tsv.relative_to(results / "benchmarks").with_suffix("")
        rule = relative.parts[0]
        record = read_benchmark(tsv)
        end = tsv.stat().st_mtime
        log_path = results / "logs" / relative.with_suffix(".log")
        logged = (
            parse_job_log(log_path.read_text(encoding="utf-8", errors="replace"))
            if log_path.is_file()
            else parse_job_log("")
        )
        rows.append(
            {
                "rule": rule,
                "stage": stage_of(rule),
                "job": relative.as_posix(),
                "seconds": record["seconds"],
                "start": end - record["seconds"],
                "end": end,
                "max_rss_mb": record["max_rss_mb"],
                **logged,
            }
        )
    jobs = pd.DataFrame(rows, columns=JOB_COLUMNS)
    return jobs.sort_values(["start", "job"], kind="stable").reset_index(drop=True)


def max_parallel(starts: Iterable[float], ends: Iterable[float]) -> int:
    """The most intervals [start, end) open at once (one ending as another starts: 1)."""
    return int(concurrent_peak(starts, ends, None))


def concurrent_peak(
    starts: Iterable[float], ends: Iterable[float], weights: Iterable[float] | None
) -> float:
    """The largest sum of ``weights`` (1 each when None) of intervals open at once.

    An interval that ends when another starts does not overlap it. NaN weights count 0.
    """
    starts, ends = list(starts), list(ends)
    weights = [1.0] * len(starts) if weights is None else [float(w) for w in weights]
    events = []
    for start, end, weight in zip(starts, ends, weights, strict=True):
        weight = 0.0 if math.isnan(weight) else weight
        events += [(start, 1, weight), (end, 0, -weight)]  # ends sort before starts
    best = running = 0.0
    for _, _, change in sorted(events):
        running += change
        best = max(best, running)
    return best


def _max(values: pd.Series) -> float:
    values = values.astype(float)
    return float(values.max()) if values.notna().any() else math.nan


def summarize_stages(jobs: pd.DataFrame) -> pd.DataFrame:
    """``STAGE_COLUMNS``, one row per stage of ``jobs`` (a ``job_times`` table), in
    ``STAGE_ORDER`` and then unknown stages by name."""
    t0 = float(jobs["start"].min()) if len(jobs) else 0.0
    rows = []
    for stage, group in jobs.groupby("stage", sort=False):
        start, end = float(group["start"].min()), float(group["end"].max())
        rows.append(
            {
                "stage": stage,
                "rules": " ".join(sorted(set(group["rule"]))),
                "jobs": len(group),
                "start_s": round(start - t0, 2),
                "end_s": round(end - t0, 2),
                "span_s": round(end - start, 2),
                "job_s_total": round(float(group["seconds"].sum()), 2),
                "job_s_max": float(group["seconds"].max()),
                "max_parallel": max_parallel(group["start"], group["end"]),
                "peak_memory_mib": _max(group["peak_memory_mib"]),
                "peak_reserved_mib": _max(group["peak_reserved_mib"]),
                "max_rss_mb": _max(group["max_rss_mb"]),
                "devices": "; ".join(sorted({d for d in group["device"] if d})),
            }
        )
    order = {stage: i for i, stage in enumerate(STAGE_ORDER)}
    rows.sort(key=lambda row: (order.get(row["stage"], len(order)), row["stage"]))
    return pd.DataFrame(rows, columns=STAGE_COLUMNS)


def stage_times(results: Path) -> pd.DataFrame:
    """The stage table of the run under ``results`` (``summarize_stages(job_times(…))``)."""
    return summarize_stages(job_times(results))


def grid_totals(jobs: pd.DataFrame, wall_seconds: float | None = None) -> dict[str, Any]:
    """The whole run's figures from a ``job_times`` table.

    ``jobs``, ``span_s`` (first start → last end), ``job_s_total``, ``max_parallel``;
    ``peak_memory_mib``/``peak_reserved_mib``: the largest of any one job;
    ``concurrent_gpu_mib``: the largest sum, over the CUDA jobs running at once, of each
    one's reserved peak (its allocated peak where it logged no reserved one), an upper
    bound of what torch held on the card at any time (CUDA contexts not included; NaN
    without CUDA jobs); ``wall_seconds`` as measured outside (None when not given).
    """
    cuda = jobs.loc[jobs["device"].str.startswith("cuda")] if len(jobs) else jobs
    held = cuda["peak_reserved_mib"].astype(float).fillna(cuda["peak_memory_mib"].astype(float))
    return {
        "jobs": len(jobs),
        "span_s": round(float(jobs["end"].max() - jobs["start"].min()), 2) if len(jobs) else 0.0,
        "job_s_total": round(float(jobs["seconds"].sum()), 2),
        "max_parallel": max_parallel(jobs["start"], jobs["end"]),
        "peak_memory_mib": _max(jobs["peak_memory_mib"]),
        "peak_reserved_mib": _max(jobs["peak_reserved_mib"]),
        "max_rss_mb": _max(jobs["max_rss_mb"]),
        "concurrent_gpu_mib": (
            concurrent_peak(cuda["start"], cuda["end"], held) if len(cuda) else math.nan
        ),
        "devices": "; ".join(sorted({d for d in jobs["device"] if d})),
        "wall_seconds": wall_seconds,
    }


def json_safe(value: Any) -> Any:
    """``value`` with NaN floats (and pandas' missing values) as None, numpy scalars as
    Python ones, recursively through dicts and lists: what ``json.dumps`` writes as-is."""
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def stage_records(stages: pd.DataFrame) -> list[dict[str, Any]]:
    """The stage table as JSON-safe records (NaN as None)."""
    return json_safe(stages.to_dict("records"))


# --- provenance ----------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def collect_provenance(repo: Path | None = None) -> dict[str, Any]:
    """What the machine can say about a run: ``commit`` (``git rev-parse HEAD`` of
    ``repo``, default the checkout holding this package; None outside git), ``dirty``
    (whether ``git status --porcelain`` lists anything; None outside git), ``torch``
    (the installed version, with its CUDA tag), ``python``, ``platform`` and ``date``
    (UTC, ISO 8601)."""
    repo = Path(repo) if repo is not None else Path(__file__).resolve().parents[1]
    commit = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain") if commit else None
    if "torch" in sys.modules:
        torch_version: str | None = sys.modules["torch"].__version__
    else:
        try:
            torch_version = metadata.version("torch")
        except metadata.PackageNotFoundError:
            torch_version = None
    return {
        "commit": commit or None,
        "dirty": bool(status) if status is not None else None,
        "torch": torch_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_reference(
    results: Path,
    out: Path,
    provenance: Mapping[str, Any],
    *,
    overwrite: bool = False,
    repo: Path | None = None,
) -> None:
    """Write the reference folder ``out`` of the run under ``results``.

    Copies every ``REFERENCE_FILES`` entry that exists (tables/…, figures/…, the same
    relative paths), writes ``stages.csv`` (``stage_times``) and ``provenance.json``:
    ``collect_provenance(repo)``, then the caller's ``provenance`` (``device``,
    ``config``: the config file's path, ``wall_seconds``, and anything else; it wins
    over the collected keys), ``stages`` (the stage table's records), ``files`` (relative
    path -> SHA-256 of every copied file) and, when ``config`` names a file, its
    ``config_sha256`` (the file itself is copied to ``config.yaml``). ``device`` defaults
    to the devices the job logs name, ``config`` and ``wall_seconds`` to None.

    The folder is built beside ``out`` and renamed into place, so ``out`` is either the
    old folder or the complete new one. Raises ``FileNotFoundError`` when a
    ``REQUIRED_TABLES`` entry is missing under ``results``, ``FileExistsError`` when
    ``out`` exists and is not an empty folder, unless ``overwrite``.
    """
    results, out = Path(results), Path(out)
    missing = [name for name in REQUIRED_TABLES if not (results / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{results}: no {', '.join(missing)}: the run is not finished")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True to replace it")
    jobs = job_times(results)
    stages = summarize_stages(jobs)
    record: dict[str, Any] = {
        **collect_provenance(repo),
        "device": grid_totals(jobs)["devices"] or None,
        "config": None,
        "wall_seconds": None,
        **provenance,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        files = {}
        for name in REFERENCE_FILES:
            source = results / name
            if source.is_file():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, staging / name)
                files[name] = file_sha256(staging / name)
        config = record.get("config")
        if config is not None and Path(config).is_file():
            shutil.copy2(config, staging / "config.yaml")
            record["config_sha256"] = file_sha256(staging / "config.yaml")
            record["config"] = str(config)
        stages.to_csv(staging / "stages.csv", index=False)
        record.update(stages=stage_records(stages), files=files)
        (staging / "provenance.json").write_text(
            json.dumps(json_safe(record), indent=2) + "\n", encoding="utf-8"
        )
        os.chmod(staging, 0o777 & ~_umask())
        _replace_folder(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_folder(new: Path, out: Path) -> None:
    """Rename ``new`` to ``out``; an existing ``out`` is moved aside first, then deleted."""
    if not out.exists():
        os.replace(new, out)
        return
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
        os.replace(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    old.rmdir()
    os.replace(out, old)
    try:
        os.replace(new, out)
    except OSError:
        os.replace(old, out)
        raise
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()


# --- checking ------------------------------------------------------------------------


def check_columns(name: str, found: list[str], expected: list[str]) -> list[str]:
    """Problems of a table whose header is ``found`` where the writer makes ``expected``."""
    problems = []
    missing = [column for column in expected if column not in found]
    extra = [column for column in found if column not in expected]
    if missing:
        problems.append(f"{name}: missing columns {missing}")
    if extra:
        problems.append(f"{name}: columns the current writer does not produce {extra}")
    if not missing and not extra and found != expected:
        problems.append(f"{name}: columns {found} are not in the writer's order {expected}")
    return problems


def check_reference(out: Path) -> list[str]:
    """What is wrong with the reference folder ``out`` (an empty list: nothing).

    Every ``TABLE_SCHEMAS`` table there (``REQUIRED_TABLES`` must be) has exactly the
    current writer's columns in its order and parses with the project's reader;
    ``provenance.json`` is a JSON object with every ``PROVENANCE_KEYS`` key, and the
    files it lists exist with their SHA-256; ``stages.csv`` has ``STAGE_COLUMNS``.
    """
    out = Path(out)
    if not out.is_dir():
        return [f"{out}: no such folder"]
    problems: list[str] = []
    for name, (reader, expected) in TABLE_SCHEMAS.items():
        path = out / name
        if not path.is_file():
            if name in REQUIRED_TABLES:
                problems.append(f"{name}: missing")
            continue
        try:
            header = list(pd.read_csv(path, nrows=0).columns)
        except (ValueError, OSError) as error:
            problems.append(f"{name}: does not parse: {error}")
            continue
        problems += check_columns(name, header, expected)
        try:
            reader(path)
        except Exception as error:  # any reader failure is a finding, not a crash
            problems.append(f"{name}: {reader.__name__} fails: {type(error).__name__}: {error}")
    problems += _check_stages(out / "stages.csv")
    problems += _check_provenance(out)
    return problems


def _check_stages(path: Path) -> list[str]:
    if not path.is_file():
        return ["stages.csv: missing"]
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
    except (ValueError, OSError) as error:
        return [f"stages.csv: does not parse: {error}"]
    return check_columns("stages.csv", header, STAGE_COLUMNS)


def _check_provenance(out: Path) -> list[str]:
    path = out / "provenance.json"
    if not path.is_file():
        return ["provenance.json: missing"]
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:
        return [f"provenance.json: does not parse: {error}"]
    if not isinstance(record, dict):
        return ["provenance.json: not a JSON object"]
    problems = [f"provenance.json: no {key!r}" for key in PROVENANCE_KEYS if key not in record]
    stages = record.get("stages")
    if not isinstance(stages, list) or any(
        not isinstance(row, dict) or set(row) != set(STAGE_COLUMNS) for row in stages
    ):
        problems.append(f"provenance.json: 'stages' is not a list of {STAGE_COLUMNS} records")
    files = record.get("files")
    if isinstance(files, dict):
        for name, digest in files.items():
            if not (out / name).is_file():
                problems.append(f"{name}: listed in provenance.json, missing")
            elif file_sha256(out / name) != digest:
                problems.append(f"{name}: SHA-256 differs from provenance.json's")
    elif "files" in record:
        problems.append("provenance.json: 'files' is not an object")
    return problems


# --- rendering -----------------------------------------------------------------------


def format_seconds(seconds: float | None) -> str:
    """``42 s``, ``12 min 05 s``, ``3 h 04 min``; "—" for None/NaN."""
    if seconds is None or math.isnan(seconds):
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _mib(value: float) -> str:
    return f"{value:,.0f} MiB"


def memory_cell(row: Mapping[str, Any]) -> str:
    """The README's "GPU memory per job" of a stage row: the allocated and reserved peaks
    on CUDA, "none (CPU)" for a stage without a device line, the peak RSS of a torch
    stage that ran on the CPU."""
    devices = row["devices"] or ""
    peak, reserved = row["peak_memory_mib"], row["peak_reserved_mib"]
    if "cuda" in devices and not math.isnan(peak):
        text = f"{_mib(peak)} allocated"
        if not math.isnan(reserved):
            text += f", {_mib(reserved)} reserved"
        return text
    if devices and not math.isnan(peak):
        return f"none (ran on the CPU; peak RSS {_mib(peak)})"
    return "none (CPU)"


def stage_markdown(stages: pd.DataFrame, grid: Mapping[str, Any]) -> str:
    """The stage table in the README's format, the whole grid last."""
    lines = [
        "| stage | jobs | wall time (span) | GPU memory per job (max) | summed job time |",
        "| --- | ---: | --- | --- | --- |",
    ]
    for row in stages.to_dict("records"):
        label = STAGE_LABELS.get(row["stage"], f"`{row['stage']}`")
        span = format_seconds(row["span_s"])
        if row["max_parallel"] > 1:
            span += f" (≤ {row['max_parallel']} at once)"
        lines.append(
            f"| {label} | {row['jobs']} | {span} | {memory_cell(row)} | "
            f"{format_seconds(row['job_s_total'])} |"
        )
    wall = grid.get("wall_seconds")
    wall_text = (
        f"{format_seconds(wall)} (jobs' span {format_seconds(grid['span_s'])})"
        if wall is not None
        else format_seconds(grid["span_s"])
    )
    concurrent = grid["concurrent_gpu_mib"]
    memory = (
        f"peak on the card ≤ {_mib(concurrent)} (jobs running at once, CUDA contexts aside); "
        f"one job at most {_mib(grid['peak_memory_mib'])} allocated"
        if not math.isnan(concurrent)
        else "no CUDA job"
    )
    lines.append(
        f"| whole grid | {grid['jobs']} | {wall_text} (≤ {grid['max_parallel']} jobs at once) "
        f"| {memory} | {format_seconds(grid['job_s_total'])} |"
    )
    return "\n".join(lines)
