"""Per-job start-up: what a torch job pays before its first tensor.

Every job of a Snakemake rule is a fresh Python process (Snakemake writes the rule's script
with a preamble and runs it), so each recovery pays for the interpreter, Snakemake's
preamble, torch, lowshot and, on a GPU, the CUDA context before any work. This times
fresh processes that do each step, --repeats runs of each after one warm-up run that is not
counted, and prints the median and minimum wall time and the median CPU time (user +
system; less sensitive than wall time to other work on a shared machine):

  python -c pass           the interpreter alone
  snakemake preamble       what the preamble of a `script:` job imports
  import torch             torch alone
  import lowshot.jobs      what every torch rule's script imports
  recover imports          a recover job until its first tensor: scripts/recover.py's
                           imports and the method and problem registries that it fills
                           (all of lowshot/methods and lowshot/problems)
  recover imports, gc off  the same with Python's cyclic garbage collector off: what the
                           collector costs while the imports create torch's objects
  lowshot after torch      the recover imports in a process that has imported torch,
                           timed inside it: lowshot's own share, without torch's noise
  first CUDA tensor        torch.zeros(1, device="cuda") after `import torch`, timed
                           inside the process (skipped without CUDA)
  snakefile parse          `snakemake -n --configfile configs/test.yaml` in an empty
                           working folder: once per `snakemake` run on one machine, once
                           per Slurm job on a cluster

With several --checkout LABEL=PATH the same rows run for each checkout (lowshot and the
Snakefile from PATH: PYTHONPATH and the working folder), their runs interleaved, so that
a before/after comparison on a shared machine sees the same load. Children write and
read Python's bytecode caches (PYTHONDONTWRITEBYTECODE is removed from their
environment), as on a normal install. The last line is one JSON object with every run.

    python benchmarks/startup.py
    git worktree add /tmp/startup-before HEAD
    python benchmarks/startup.py --checkout before=/tmp/startup-before --checkout after=.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
DATA_KEYS = ("source", "partition_file", "identity_file")

RECOVER_IMPORTS = (
    "from lowshot.jobs import Runtime, recover_job\n"
    "from lowshot.logs import setup_rule_logging\n"
    "from lowshot.registry import load_plugins\n"
    "import lowshot.methods, lowshot.problems\n"
    "lowshot.methods.METHODS.discover()\n"
    "lowshot.problems.PROBLEMS.discover()\n"
)
# Python code timed as whole processes, by row.
PROCESS_ROWS = {
    "python -c pass": "pass",
    "snakemake preamble": (
        "from snakemake.logging import logger\nfrom snakemake.iocontainers import Snakemake"
    ),
    "import torch": "import torch",
    "import lowshot.jobs": "import lowshot.jobs",
    "recover imports": RECOVER_IMPORTS,
    "recover imports, gc off": "import gc\ngc.disable()\n" + RECOVER_IMPORTS,
}


def timed_inside(setup: str, body: str) -> str:
    """Code that runs ``setup``, then times ``body`` and prints {"wall", "cpu"} as JSON."""
    indented = "".join(f"    {line}\n" for line in body.splitlines())
    return (
        f"import json, time\n{setup}\n"
        "wall, cpu = time.perf_counter(), time.process_time()\n"
        f"if True:\n{indented}"
        "print(json.dumps({'wall': time.perf_counter() - wall, "
        "'cpu': time.process_time() - cpu}))\n"
    )


# Code that times its own part, by row.
INSIDE_ROWS = {"lowshot after torch": timed_inside("import torch", RECOVER_IMPORTS)}
CUDA_ROW = "first CUDA tensor"
CUDA_CODE = timed_inside("import torch", 'torch.zeros(1, device="cuda")\ntorch.cuda.synchronize()')
CUDA_AVAILABLE = "import torch\nprint(torch.cuda.is_available())"
PARSE_ROW = "snakefile parse"

Timing = dict[str, float]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkout",
        action="append",
        metavar="LABEL=PATH",
        help="a checkout to measure (repeatable); default: this one, labelled 'this'",
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per row")
    parser.add_argument(
        "--configfile",
        default="configs/test.yaml",
        help="config of the Snakefile parse, relative to each checkout",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=REPO,
        help="folder the config's relative data paths resolve against (default: this "
        "repository, as the Snakefile resolves them)",
    )
    parser.add_argument("--no-parse", action="store_true", help="skip the Snakefile parse")
    return parser.parse_args(argv)


def checkouts(specs: list[str] | None) -> dict[str, Path]:
    if not specs:
        return {"this": REPO}
    found = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"--checkout wants LABEL=PATH, not {spec!r}")
        root = Path(path).resolve()
        if not (root / "lowshot" / "jobs.py").is_file() or not (root / "Snakefile").is_file():
            raise SystemExit(f"{root} is not a checkout of this repository")
        found[label] = root
    return found


def child_env(root: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(root)
    env.pop("SNAKEMAKE_PROFILE", None)
    return env


def run(command: list[str], root: Path) -> tuple[str, Timing]:
    """Run ``command`` in ``root``; its stdout, wall time and CPU time (it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=root, env=child_env(root), capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        raise RuntimeError(f"{command} failed in {root}:\n{output}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result.stdout, {"wall": wall, "cpu": cpu}


def whole_process(command: list[str], root: Path) -> Timing:
    return run(command, root)[1]


def inside(code: str, root: Path) -> Timing:
    stdout, _ = run([sys.executable, "-c", code], root)
    return json.loads(stdout.strip().splitlines()[-1])


def parse_command(root: Path, workdir: Path, configfile: str, data_root: Path) -> list[str]:
    """`snakemake -n` of the checkout's Snakefile in an empty working folder, with the
    config's data paths made absolute (a second config file overrides them)."""
    config_path = root / configfile
    config = yaml.safe_load(config_path.read_text()) or {}
    data = {}
    for key in DATA_KEYS:
        value = (config.get("data") or {}).get(key)
        if value is not None and not Path(value).is_absolute():
            data[key] = str((data_root / value).resolve())
    override = workdir / "data.yaml"
    override.write_text(yaml.safe_dump({"data": data} if data else {}))
    return [
        str(SNAKEMAKE),
        "--dry-run",
        "--quiet",
        "--snakefile",
        str(root / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config_path),
        str(override),
    ]


def summary(runs: list[Timing]) -> dict[str, Any]:
    walls = [timing["wall"] for timing in runs]
    return {
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "cpu_median_s": statistics.median(timing["cpu"] for timing in runs),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    roots = checkouts(args.checkout)
    first = next(iter(roots.values()))
    cuda = run([sys.executable, "-c", CUDA_AVAILABLE], first)[0].strip() == "True"
    notes = [] if cuda else [f"{CUDA_ROW}: skipped, torch sees no CUDA device"]
    tasks: dict[str, dict[str, Callable[[], Timing]]] = {label: {} for label in roots}
    with tempfile.TemporaryDirectory(prefix="startup-") as scratch:
        for label, root in roots.items():
            for row, code in PROCESS_ROWS.items():
                command = [sys.executable, "-c", code]
                tasks[label][row] = lambda c=command, r=root: whole_process(c, r)
            for row, code in INSIDE_ROWS.items():
                tasks[label][row] = lambda c=code, r=root: inside(c, r)
            if cuda:
                tasks[label][CUDA_ROW] = lambda r=root: inside(CUDA_CODE, r)
            if not args.no_parse:
                workdir = Path(scratch) / label
                workdir.mkdir()
                command = parse_command(root, workdir, args.configfile, args.data_root)
                tasks[label][PARSE_ROW] = lambda c=command, r=root: whole_process(c, r)
        # One warm-up run of everything (page cache, bytecode caches), then the timed
        # runs, every checkout's run of a row next to the others'.
        for label in roots:
            for task in tasks[label].values():
                task()
        runs: dict[str, dict[str, list[Timing]]] = {
            label: {row: [] for row in tasks[label]} for label in roots
        }
        for _ in range(args.repeats):
            for row in tasks[next(iter(roots))]:
                for label in roots:
                    runs[label][row].append(tasks[label][row]())
    results = {
        label: {row: summary(values) for row, values in rows.items()}
        for label, rows in runs.items()
    }
    print_table(results, args.repeats)
    for note in notes:
        print(note)
    report = {
        "benchmark": "startup",
        "repeats": args.repeats,
        "checkouts": {label: str(root) for label, root in roots.items()},
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "cuda": cuda,
        "results": results,
    }
    print(json.dumps(report))
    return report


def print_table(results: dict[str, dict[str, dict[str, Any]]], repeats: int) -> None:
    labels = list(results)
    print(f"seconds, {repeats} runs each: wall time median / min, CPU time (user + sys) median")
    print(f"{'':26}" + "".join(f"{label:>26}" for label in labels))
    for row in results[labels[0]]:
        cells = (
            "{median_s:.3f} / {min_s:.3f}  cpu {cpu_median_s:.3f}".format(**results[label][row])
            for label in labels
        )
        print(f"{row:26}" + "".join(f"{cell:>26}" for cell in cells))


if __name__ == "__main__":
    main()
