"""Wall time and memory per stage of a finished run; optionally its ``reference/`` folder.

Reads the benchmark TSVs and job logs under ``--results`` (``lowshot.reference``: a job
ends at its benchmark's mtime and starts ``s`` seconds earlier; its memory is the last
"peak memory" / "peak reserved memory" line of its log) and prints the README's stage
table (stage, jobs, wall time as first start → last end, the largest GPU memory of one
job, the summed job time; the whole grid last), then, as the last line, one JSON object
with every figure. ``--json FILE`` writes that object to a file too.

``--reference DIR`` also writes the run's tables, figures, ``stages.csv`` and
``provenance.json`` (commit, ``--device``, torch, ``--config``, ``--wall-seconds``) into
DIR (``lowshot.reference.write_reference``; it refuses a non-empty DIR without
``--overwrite``), checks it (``check_reference``) and exits 1 naming every problem.

    python3 benchmarks/grid_report.py --results results --wall-seconds 5400 --json grid.json
    python3 benchmarks/grid_report.py --results results --reference reference \\
        --wall-seconds 5400 --device "NVIDIA H100 80GB HBM3"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lowshot import reference


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, type=Path, help="the run's results folder")
    parser.add_argument(
        "--wall-seconds",
        type=float,
        default=None,
        help="the whole run's wall time, measured around the snakemake command",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--reference", type=Path, default=None, help="write and check a reference folder here"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty --reference folder"
    )
    parser.add_argument(
        "--device",
        default=None,
        help="the device, for provenance.json (default: the devices the job logs name)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("config.yaml"),
        help="the config file of the run, for provenance.json (default config.yaml)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.results / "benchmarks").is_dir():
        print(f"grid_report: {args.results}/benchmarks: no such folder", file=sys.stderr)
        return 2
    jobs = reference.job_times(args.results)
    stages = reference.summarize_stages(jobs)
    grid = reference.grid_totals(jobs, args.wall_seconds)
    warnings = []
    if args.wall_seconds is not None and grid["span_s"] > 1.05 * args.wall_seconds + 5:
        warnings.append(
            f"the jobs span {grid['span_s']:.0f} s, more than the measured wall time "
            f"{args.wall_seconds:.0f} s: benchmarks of an earlier run under "
            f"{args.results}/benchmarks, or a copy that lost the files' times?"
        )
    report: dict[str, Any] = {
        "results": str(args.results),
        "wall_seconds": args.wall_seconds,
        "grid": grid,
        "stages": reference.stage_records(stages),
        "warnings": warnings,
    }
    problems: list[str] = []
    if args.reference is not None:
        provenance = {"config": str(args.config), "wall_seconds": args.wall_seconds}
        if args.device is not None:
            provenance["device"] = args.device
        try:
            reference.write_reference(
                args.results, args.reference, provenance, overwrite=args.overwrite
            )
        except (FileExistsError, FileNotFoundError) as error:
            print(f"grid_report: {error}", file=sys.stderr)
            return 1
        problems = reference.check_reference(args.reference)
        report.update(reference=str(args.reference), reference_problems=problems)
    for warning in warnings:
        print(f"grid_report: warning: {warning}", file=sys.stderr)
    print(reference.stage_markdown(stages, grid))
    text = json.dumps(reference.json_safe(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(reference.json_safe(report), indent=2) + "\n")
    if problems:
        print(f"grid_report: the reference {args.reference} has problems:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    print(text)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
