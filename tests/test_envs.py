"""The conda environments in envs/ agree with pyproject.toml and cover what the rules import.

No conda channel is reachable on the CI machines, so the environments cannot be solved
here; these tests check what can be checked without solving: every file parses, pins every
package to a version, names only packages that pyproject.toml names (conda's `pytorch`,
`pytorch-cpu` and `pytorch-gpu` are pip's `torch`), and its pins satisfy pyproject's
specifiers. Then, for every rule that runs a script in a conda environment, every
third-party module the script imports, directly or through `lowshot`, is in that
environment.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))
# conda-forge names whose pip name differs.
CONDA_TO_PIP = {"pytorch": "torch", "pytorch-cpu": "torch", "pytorch-gpu": "torch"}
# Import names whose distribution name differs.
MODULE_TO_DIST = {"PIL": "pillow", "skimage": "scikit-image", "yaml": "pyyaml"}
# Modules a rule script gets without its environment: Snakemake's script preamble puts the
# running Snakemake's own search path (and the workflow folder, so `lowshot`) on sys.path.
PROVIDED = {"snakemake", "lowshot"}
CONDA_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<op>==?)\s*(?P<version>[0-9][0-9.]*)$")
RULE_START = re.compile(r"^\s*(?:rule|checkpoint)\s+(\w+)\s*:")


def pyproject() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def pyproject_requirements() -> dict[str, SpecifierSet]:
    """Runtime dependencies of the package: canonical name -> specifier."""
    requirements = (Requirement(line) for line in pyproject()["project"]["dependencies"])
    return {canonicalize_name(req.name): req.specifier for req in requirements}


def parse_env(path: Path) -> dict[str, str]:
    """Packages of a conda env file: pip-style canonical name -> pinned version.

    `python` stays `python`. Raises AssertionError for anything that is not a pinned
    conda package (a `pip:` section, an unpinned name, a version range).
    """
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path.name}: not a mapping"
    assert document.get("channels") == ["conda-forge", "nodefaults"], (
        f"{path.name}: channels must be exactly conda-forge and nodefaults"
    )
    packages = {}
    for entry in document["dependencies"]:
        assert isinstance(entry, str), f"{path.name}: {entry!r} (pip sections are not used)"
        match = CONDA_SPEC.match(entry.strip())
        assert match, f"{path.name}: {entry!r} is not pinned as name=version"
        conda_name = match.group("name").lower()
        name = canonicalize_name(CONDA_TO_PIP.get(conda_name, conda_name))
        assert name not in packages, f"{path.name}: {name} listed twice"
        packages[name] = match.group("version")
    return packages


def test_there_are_env_files() -> None:
    names = {path.name for path in ENV_FILES}
    assert {"torch.yaml", "data.yaml", "plots.yaml"} <= names


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_satisfy_pyproject(path: Path) -> None:
    packages = parse_env(path)
    requirements = pyproject_requirements()
    assert "python" in packages, f"{path.name}: pin python"
    requires_python = SpecifierSet(pyproject()["project"]["requires-python"])
    assert Version(packages.pop("python")) in requires_python
    for name, version in packages.items():
        assert name in requirements, f"{path.name}: {name} is not a dependency in pyproject.toml"
        assert Version(version) in requirements[name], (
            f"{path.name}: {name}={version} does not satisfy pyproject's {requirements[name]}"
        )


def test_every_pyproject_dependency_is_in_some_env() -> None:
    provided = set().union(*(parse_env(path) for path in ENV_FILES))
    assert set(pyproject_requirements()) <= provided


def test_parse_env_rejects_unpinned_and_pip_entries(tmp_path: Path) -> None:
    header = "channels: [conda-forge, nodefaults]\ndependencies:\n"
    for body in ("  - numpy\n", "  - numpy>=1.24\n", "  - pip:\n      - numpy==2.0\n"):
        env = tmp_path / "env.yaml"
        env.write_text(header + body)
        with pytest.raises(AssertionError):
            parse_env(env)
    env.write_text(header + "  - pytorch-cpu=2.9.1\n  - PyYAML=6.0.2\n")
    assert parse_env(env) == {"torch": "2.9.1", "pyyaml": "6.0.2"}


# --- what the rules' scripts import ------------------------------------------------------


def rule_blocks(text: str) -> dict[str, str]:
    """Rule name -> the text of its block, for snakefmt-formatted Snakemake files.

    A block runs from `rule NAME:` (at any indentation: rules may sit under an `if`) to the
    next non-blank, non-comment line indented no deeper than the `rule` keyword.
    """
    blocks = {}
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = RULE_START.match(line)
        if not match:
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        for following in lines[number + 1 :]:
            stripped = following.strip()
            dedented = len(following) - len(following.lstrip()) <= indent
            if stripped and not stripped.startswith("#") and dedented:
                break
            body.append(following)
        blocks[match.group(1)] = "\n".join(body)
    return blocks


def directive(block: str, name: str) -> str | None:
    """The quoted value of a rule directive such as `conda:` or `script:`, if present."""
    match = re.search(rf"^\s+{name}:\s*\n?\s*[\"']([^\"']+)[\"']", block, re.MULTILINE)
    return match.group(1) if match else None


def script_rules() -> list[tuple[str, Path, Path | None]]:
    """(rule, script, conda env file or None) of every rule that runs a script; paths are
    relative to the file that defines the rule, as Snakemake resolves them."""
    rules = []
    for path in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]:
        for rule, block in rule_blocks(path.read_text()).items():
            script = directive(block, "script")
            if script is None:
                continue
            conda = directive(block, "conda")
            env = (path.parent / conda).resolve() if conda else None
            rules.append((rule, (path.parent / script).resolve(), env))
    return rules


def lowshot_module_file(dotted: str) -> Path | None:
    """The source file of a `lowshot` module, or None when it is not a module file."""
    parts = dotted.split(".")
    if parts[0] != "lowshot":
        return None
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(script: Path) -> dict[str, set[str]]:
    """Distributions imported by a script, directly or through `lowshot` modules (every
    import statement counts, also inside functions) -> the files importing them."""
    found: dict[str, set[str]] = {}
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from lowshot import data` imports the submodule lowshot.data.
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top == "lowshot":
                    source = lowshot_module_file(module)
                    if source is not None:
                        todo.append(source)
                elif top not in sys.stdlib_module_names and top not in PROVIDED:
                    dist = canonicalize_name(MODULE_TO_DIST.get(top, top))
                    where = (
                        path.relative_to(ROOT).as_posix()
                        if path.is_relative_to(ROOT)
                        else str(path)
                    )
                    found.setdefault(dist, set()).add(where)
    return found


def test_third_party_imports_follow_lowshot_modules(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text("import os\nfrom PIL import Image\nfrom lowshot import seeds\n")
    found = third_party_imports(script)
    assert found["pillow"] == {str(script)}
    assert found["torch"] == {"lowshot/seeds.py"}
    assert "os" not in found and "lowshot" not in found


def test_rule_block_parsing() -> None:
    text = (
        "rule a:\n    input:\n        'x'\n    conda:\n        \"../envs/torch.yaml\"\n"
        '    script:\n        "../scripts/a.py"\n\n\n# a comment\nrule b:\n    shell:\n'
        "        'true'\n\n\nif X:\n\n    rule c:\n        script:\n            'c.py'\n"
        "\n\nrule d:\n    shell:\n        'true'\n"
    )
    blocks = rule_blocks(text)
    assert set(blocks) == {"a", "b", "c", "d"}
    assert directive(blocks["a"], "conda") == "../envs/torch.yaml"
    assert directive(blocks["a"], "script") == "../scripts/a.py"
    assert directive(blocks["b"], "script") is None
    assert directive(blocks["c"], "script") == "c.py"
    assert directive(blocks["d"], "script") is None


def test_every_script_rule_names_an_env_that_covers_its_imports() -> None:
    rules = script_rules()
    assert rules, "no rule with a script: directive found"
    problems = []
    for rule, script, env in rules:
        if env is None:
            problems.append(f"rule {rule}: no conda: directive (expected one of envs/*.yaml)")
            continue
        if env not in ENV_FILES:
            problems.append(f"rule {rule}: conda env {env} is not one of envs/*.yaml")
            continue
        packages = parse_env(env)
        for dist, importers in sorted(third_party_imports(script).items()):
            if dist not in packages:
                problems.append(
                    f"rule {rule}: {env.name} lacks {dist} (imported by {sorted(importers)})"
                )
    assert not problems, "\n".join(problems)
