"""Fill a wheelhouse for machines without network: `make wheelhouse` runs this.

The packages named on the command line and everything they need, at the versions installed
in the Python that runs this (the project's .venv: the versions the tests ran against), as
wheels for another Python and platform (`--python-version`, `--platform`), so that

    pip install --no-index --no-deps --target DIR WHEELHOUSE/*.whl

installs a complete set on a machine that cannot reach a package index. `--exclude` names
packages the target machine already has (torch, numpy, ...): they are left out, and so are
the packages only they need. A package whose release ships no wheel (a pure-Python sdist)
is built here with `pip wheel --no-deps`. One version of each package, pinned exactly.

    python benchmarks/wheelhouse.py --dest .whl --python-version 3.12 \\
        --platform manylinux_2_17_x86_64 --exclude torch numpy -- snakemake jsonschema
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def marker_env(python_version: str) -> dict[str, str]:
    """The environment markers of a CPython `python_version` on x86-64 Linux."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python_version}.0",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python_version}.0",
        "python_version": python_version,
        "sys_platform": "linux",
    }


def applies(marker: Marker | None, env: dict[str, str], extras: set[str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({**env, "extra": extra}) for extra in extras | {""})


def closure(roots: list[str], exclude: set[str], python_version: str) -> dict[str, str]:
    """{distribution name: installed version} of `roots` and their requirements (with the
    extras asked for), walked through the installed metadata, `exclude` left out."""
    env = marker_env(python_version)
    found: dict[str, str] = {}
    asked: dict[str, set[str]] = {}
    todo = [Requirement(root) for root in roots]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in exclude:
            continue
        extras = {canonicalize_name(extra) for extra in requirement.extras}
        if name in asked and extras <= asked[name]:
            continue
        asked.setdefault(name, set()).update(extras)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(
                f"{requirement} is needed but not installed in {sys.executable}: "
                "install it there (make setup) so its version is pinned"
            ) from None
        found[name] = dist.version
        for line in dist.requires or []:
            need = Requirement(line)
            if applies(need.marker, env, asked[name]):
                todo.append(need)
    return found


def download(pins: dict[str, str], dest: Path, pip_args: list[str]) -> list[str]:
    """Each pin as a wheel for the target into `dest`; the names built here from source."""
    built = []
    fetch = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    for name, version in sorted(pins.items()):
        spec = f"{name}=={version}"
        got = subprocess.run(
            [*fetch, *pip_args, "-d", str(dest), spec],
            capture_output=True,
            text=True,
        )
        if got.returncode == 0:
            continue
        # No wheel for this target: build one from the sdist (pure Python only).
        with tempfile.TemporaryDirectory() as scratch:
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", scratch, spec],
                check=True,
            )
            wheels = list(Path(scratch).glob("*.whl"))
            for wheel in wheels:
                if not wheel.name.endswith("-none-any.whl"):
                    raise SystemExit(
                        f"{spec}: no wheel for the target, and the one built here is not "
                        f"pure Python ({wheel.name})\n{got.stderr}"
                    )
                wheel.rename(dest / wheel.name)
        built.append(spec)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, required=True, help="wheelhouse folder")
    parser.add_argument("--python-version", required=True, help="target Python, e.g. 3.12")
    parser.add_argument("--platform", action="append", default=[], help="pip platform tag")
    parser.add_argument("--exclude", nargs="*", default=[], help="packages the target has")
    parser.add_argument("--max-mib", type=float, default=20.0, help="fail above this size")
    parser.add_argument("roots", nargs="+", help="packages to install there")
    args = parser.parse_args(argv)

    exclude = {canonicalize_name(name) for name in args.exclude}
    pins = closure(args.roots, exclude, args.python_version)
    args.dest.mkdir(parents=True, exist_ok=True)
    pip_args = ["--python-version", args.python_version, "--implementation", "cp"]
    for platform in args.platform:
        pip_args += ["--platform", platform]
    built = download(pins, args.dest, pip_args)

    wheels = sorted(args.dest.glob("*.whl"))
    names = {canonicalize_name(wheel.name.split("-")[0]) for wheel in wheels}
    if len(names) != len(wheels) or names != set(pins):
        raise SystemExit(
            f"{args.dest}: {len(wheels)} wheels for {len(pins)} packages; expected one each "
            f"(extra: {sorted(names - set(pins))}, missing: {sorted(set(pins) - names)})"
        )
    size = sum(wheel.stat().st_size for wheel in wheels)
    mib = size / 2**20
    print(f"{args.dest}: {len(wheels)} wheels for Python {args.python_version}, {mib:.1f} MiB")
    if size > args.max_mib * 2**20:
        raise SystemExit(f"{args.dest}: {mib:.1f} MiB, over --max-mib {args.max_mib}")
    if built:
        print("built here from source (no wheel released): " + ", ".join(built))
    if exclude:
        print("left out (--exclude): " + ", ".join(sorted(exclude)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
