"""Which Python packages the pipeline needs are missing here: the first check of
benchmarks/gpu_run.sh, before any step that would fail for want of one.

Reads the requirements from pyproject.toml (``[project] dependencies``, plus the extras
given with ``--extra`` and single packages with ``--also``), looks for each one's import
name without importing it, and compares the installed version with the requirement's
lower bound (``>=``). Prints one line per missing or too old package and, when any is,
how to carry it in the wheelhouse (``make wheelhouse WHEEL_EXTRA='...'``), and exits 1;
exits 0 when everything is there. Standard library only: it must run where nothing of
the project is installed.

    python benchmarks/preflight.py --extra workflow --also pytest
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# Import names of the distributions whose names differ from them (others: "-" -> "_").
IMPORT_NAMES = {
    "pyyaml": "yaml",
    "scikit-image": "skimage",
    "pillow": "PIL",
}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """The requirement strings of ``pyproject``'s dependencies and of its ``extras``
    (an extra that names the project itself, ``lowshot[workflow]``, is followed)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        return _requirements_by_hand(pyproject.read_text(), extras)
    project = tomllib.loads(pyproject.read_text())["project"]
    found = list(project["dependencies"])
    optional = project.get("optional-dependencies", {})
    todo = list(extras)
    while todo:
        extra = todo.pop()
        if extra not in optional:
            raise SystemExit(f"{pyproject}: no extra {extra!r} (has {sorted(optional)})")
        for line in optional[extra]:
            if line.startswith(f"{project['name']}["):
                todo += line.split("[", 1)[1].rstrip("]").split(",")
            else:
                found.append(line)
    return found


def _requirements_by_hand(text: str, extras: list[str]) -> list[str]:
    """``requirements`` without tomllib: the quoted items of the ``dependencies = [...]``
    array and of each extra's array (pyproject.toml's own layout)."""

    def array(key: str) -> list[str]:
        match = re.search(rf"^{re.escape(key)}\s*=\s*\[(.*?)\]", text, re.S | re.M)
        return re.findall(r'"([^"]+)"', match.group(1)) if match else []

    found = array("dependencies")
    for extra in extras:
        found += [line for line in array(extra) if not line.startswith("lowshot[")]
    return found


def parse(requirement: str) -> tuple[str, str, tuple[int, ...] | None]:
    """(distribution name, lower-cased; its import name; the ``>=`` bound as a tuple of
    integers, or None) of a requirement string such as ``scikit-image>=0.22``."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    name = match.group(1).lower().replace("_", "-")
    bound = re.search(r">=\s*([0-9][0-9.]*)", match.group(3) or "")
    minimum = tuple(int(part) for part in bound.group(1).strip(".").split(".")) if bound else None
    return name, IMPORT_NAMES.get(name, name.replace("-", "_")), minimum


def _version(text: str) -> tuple[int, ...]:
    """The leading integers of a version string: "2.13.0+cu128" -> (2, 13, 0)."""
    parts = []
    for part in text.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def problems(wanted: list[str]) -> list[str]:
    """One line per requirement of ``wanted`` that is missing here or older than its
    bound: ``name (import name): missing`` or ``name: 1.0 installed, >= 2.0 needed``."""
    lines = []
    for requirement in wanted:
        name, module, minimum = parse(requirement)
        if importlib.util.find_spec(module) is None:
            lines.append(f"{name} (import {module}): missing")
            continue
        if minimum is None:
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:  # importable without metadata: trust it
            continue
        if _version(installed) < minimum:
            bound = ".".join(map(str, minimum))
            lines.append(f"{name} (import {module}): {installed} installed, >= {bound} needed")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extra", nargs="*", default=[], help="pyproject extras to check too")
    parser.add_argument("--also", nargs="*", default=[], help="more requirements to check")
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    args = parser.parse_args(argv)
    wanted = requirements(args.pyproject, args.extra) + list(args.also)
    lines = problems(wanted)
    print(f"preflight: {len(wanted)} requirements checked for {sys.executable}")
    if not lines:
        print("preflight: every required package is installed")
        return 0
    print(f"preflight: {len(lines)} missing or too old; the run stops here:")
    for line in lines:
        print(f"  {line}")
    names = [line.split(" ", 1)[0] for line in lines]
    if "torch" in names:
        print("torch must come with the machine (its CUDA build): no wheelhouse carries it")
    carried = " ".join(name for name in names if name != "torch")
    if carried:
        print(
            "Carry the others in the wheelhouse, made on a machine with network (README, "
            f"'Offline compute nodes: a wheelhouse'):\n  make wheelhouse WHEEL_EXTRA='{carried}'"
        )
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
