"""Run many Python entry points cheaply: one process imports Snakemake, torch and lowshot
once, then forks a child per job, so each job starts warm and none sees another's state.

    python tests/readme_runner.py JOBS.json

JOBS.json: a list of {"kind", "target", "args", "cwd", "log"}, where kind is
"snakemake" (target unused: ``snakemake ARGS``), "module" (``python -m TARGET ARGS``) or
"script" (``python TARGET ARGS``). Each child runs in ``cwd`` with its stdout and stderr
in ``log``. Prints one JSON list: each job's exit status. Used by tests/test_readme.py for
the README's commands (Snakemake dry runs, ``--help`` of the entry points).
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import traceback
from typing import Any


def run_job(job: dict[str, Any]) -> int:
    """The job's exit status, in this (forked) process."""
    os.chdir(job["cwd"])
    args = list(job["args"])
    try:
        if job["kind"] == "snakemake":
            from snakemake.cli import main

            main(args)
        elif job["kind"] == "module":
            sys.argv = [job["target"], *args]
            runpy.run_module(job["target"], run_name="__main__", alter_sys=True)
        elif job["kind"] == "script":
            sys.argv = [job["target"], *args]
            sys.path.insert(0, os.path.dirname(os.path.abspath(job["target"])))
            runpy.run_path(job["target"], run_name="__main__")
        else:
            raise ValueError(f"unknown job kind {job['kind']!r}")
    except SystemExit as stop:
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def fork_job(job: dict[str, Any]) -> int:
    """Run ``job`` in a forked child with its output in ``job["log"]``; its exit status."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            code = run_job(job)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def main(path: str) -> None:
    with open(path) as handle:
        jobs = json.load(handle)
    # What most jobs import, once, before the forks: the children inherit it.
    import snakemake.cli  # noqa: F401

    from lowshot import methods, problems

    methods.METHODS.discover()
    problems.PROBLEMS.discover()
    print(json.dumps([fork_job(job) for job in jobs]))


if __name__ == "__main__":
    main(sys.argv[1])
