"""The workflow configuration: the schema, validation with defaults, cross-key checks,
and the names of problems and methods that the rules use as wildcards.

The schema is ``config.schema.yaml`` beside this file (package data) plus the sections of
the registered problems and methods (``problems.<kind>``, ``recover.<kind>``), assembled
by ``load_schema`` after the config's ``plugins`` are imported: every default has one
home, the schema's file or the class that registers a section.
``python -m lowshot.config`` prints the assembled schema.
"""

from __future__ import annotations

import copy
import math
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# yaml and jsonschema are imported where they are used: every torch job imports this module
# (for ConfigError), and none of them reads YAML or validates a config.
if TYPE_CHECKING:
    import jsonschema

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
NOISE_SCHEMA = {
    "description": "Std of additive Gaussian measurement noise (y in the images' [-1, 1] units).",
    "type": "number",
    "minimum": 0,
    "default": 0.0,
}


class ConfigError(ValueError):
    """A config value is wrong; the message names the key."""


def load_schema() -> dict[str, Any]:
    """The config schema: the file's, plus one section per registered problem and method.

    Plugins must be loaded before (``validate_config`` does it), or their sections are
    missing.
    """
    import yaml

    from lowshot.devices import PRECISIONS
    from lowshot.methods import METHODS
    from lowshot.problems import PROBLEMS

    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        schema = yaml.safe_load(handle)
    top = schema["properties"]
    top["precision"]["enum"] = list(PRECISIONS)
    top["problems"]["properties"] = {
        cls.kind: _section(cls.description, {**cls.settings, "noise_std": NOISE_SCHEMA})
        for cls in PROBLEMS
    }
    recover = top["recover"]["properties"]
    recover["methods"]["items"]["enum"] = METHODS.names()
    recover["methods"]["default"] = [
        cls.kind for cls in sorted(METHODS, key=lambda c: c.order) if cls.enabled_by_default
    ]
    for cls in METHODS:
        if cls.kind in recover:
            raise ConfigError(f"method kind {cls.kind!r} clashes with the key recover.{cls.kind}")
        recover[cls.kind] = _section(cls.description, cls.settings)
    report = top["report"]["properties"]
    for key in ("figure1_problem", "figure2_problem"):
        report[key]["enum"] = PROBLEMS.names()
    return schema


def _section(description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "properties": copy.deepcopy(dict(properties)),
    }


def _fill_defaults(schema: dict[str, Any], config: dict[str, Any]) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if sub.get("type") == "object" and isinstance(config.get(key), dict):
            _fill_defaults(sub, config[key])


def schema_defaults(section: str) -> dict[str, Any]:
    """The defaults the schema gives one top-level ``section`` (e.g. ``recover``)."""
    schema = load_schema()["properties"][section]
    defaults: dict[str, Any] = {}
    _fill_defaults(schema, defaults)
    return defaults


def validate_config(
    config: dict[str, Any], root: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Return a copy of ``config`` validated against the schema, defaults filled in.

    Imports the config's ``plugins`` first (relative paths against ``root``, default the
    current folder). Raises ``ConfigError`` with one line per problem, each naming the
    offending key (e.g. ``problems.compressed_sensing.ratios[0]``), for schema violations
    and for the cross-key checks of ``check_config``.
    """

    from lowshot.registry import load_plugins

    config = copy.deepcopy(config)
    plugins = config.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(
            f"plugins: expected a list of file paths or module names, got {plugins!r}"
        )
    try:
        load_plugins(plugins, root)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    schema = load_schema()
    _fill_defaults(schema, config)
    errors = sorted(_validator_class()(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        raise ConfigError("\n".join(describe_error(error) for error in errors))
    check_config(config)
    return config


def _validator_class() -> type[jsonschema.protocols.Validator]:
    """Draft 2020-12, stricter on numbers: an integer key takes no float (``n_test: 2.0``
    would fail later with an error that names no key) and a number key takes no NaN or
    infinity (``noise_std: .nan`` would silently mean no noise)."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many(
        {
            "integer": lambda _, value: isinstance(value, int) and not isinstance(value, bool),
            "number": lambda _, value: (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            ),
        }
    )
    return jsonschema.validators.extend(base, type_checker=checker)


def describe_error(error: jsonschema.ValidationError) -> str:
    """One line naming the key path of a schema error."""
    key = format_key(error.absolute_path) or "<config>"
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known)) if isinstance(error.instance, dict) else []
        where = format_key([*error.absolute_path, ",".join(map(str, extra))])
        return f"{where}: unknown key; check its spelling. Known keys: {', '.join(known)}"
    if error.validator == "enum":
        known = ", ".join(map(str, error.validator_value))
        return f"{key}: unknown value {error.instance!r}; known: {known}"
    if error.validator == "type" and isinstance(error.instance, float):
        what = "a whole number" if "integer" in str(error.validator_value) else "a finite number"
        return f"{key}: {error.instance!r} is not {what}"
    if (
        error.validator == "type"
        and isinstance(error.instance, str)
        and _NUMBER.match(error.instance)
    ):
        return (
            f"{key}: {error.message}; YAML reads a number without a decimal point before the "
            f"exponent as text: write {_as_yaml_float(error.instance)}"
        )
    if (
        error.validator == "type"
        and error.validator_value == "boolean"
        and isinstance(error.instance, str)
        and error.instance.lower() in ("true", "false")
    ):
        return (
            f"{key}: {error.message}; on the command line Snakemake's --config reads only "
            f"True and False as booleans: write {key}={error.instance.capitalize()}"
        )
    return f"{key}: {error.message}"


_NUMBER = re.compile(r"^[+-]?[0-9]+(\.[0-9]*)?[eE][+-]?[0-9]+$")


def _as_yaml_float(text: str) -> str:
    mantissa, exponent = re.split("[eE]", text)
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{exponent}"


def format_key(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def check_config(config: dict[str, Any]) -> None:
    """Cross-key checks that a JSON schema cannot express. Raises ``ConfigError``."""
    shots = config["lowshot"]["shots"]
    max_shots = max(shots)
    n_test = config["split"]["n_test"]
    corpus = config["split"]["gan_corpus_size"]
    if corpus is not None and max_shots > corpus:
        raise ConfigError(
            f"lowshot.shots: {max_shots} shots exceed split.gan_corpus_size={corpus}; "
            "the low-shot subsets are drawn from the GAN corpus"
        )
    max_images = config["data"]["max_images"]
    needed = n_test + max(max_shots, corpus or 0)
    if max_images is not None and needed > max_images:
        raise ConfigError(
            f"data.max_images: {max_images} images cannot hold split.n_test={n_test} test "
            f"images plus a training pool of {max(max_shots, corpus or 0)}"
        )
    gan, n_validation = config["gan"], config["split"]["n_validation"]
    if gan["validate_every"] > 0 and gan["validation_faces"] > n_validation:
        raise ConfigError(
            f"gan.validation_faces: {gan['validation_faces']} faces for the validation "
            f"curve, but split.n_validation={n_validation}; lower it or set "
            "gan.validate_every to 0"
        )
    from lowshot.methods import METHODS, parse_method

    for kind in config["recover"]["methods"]:
        first = METHODS[kind].starts_from
        if first is not None and first not in config["recover"]["methods"]:
            raise ConfigError(
                f"recover.methods: {kind} starts from {first}'s result; add {first} to the list"
            )
    run = set(method_names(config))
    for name in config["report"]["figure2_methods"]:
        try:
            spec = parse_method(name)
        except ValueError as error:
            raise ConfigError(f"report.figure2_methods: {error}") from None
        if spec.kind in config["recover"]["methods"] and name not in run:
            raise ConfigError(
                f"report.figure2_methods: {name} is not run by this config "
                f"(its {spec.kind} methods: {METHODS[spec.kind].method_names(config)})"
            )
    if not problem_names(config):
        raise ConfigError("problems: no problem to solve; every problem section asks for none")


def runtime_settings(config: dict[str, Any]) -> dict[str, Any]:
    """What every torch job takes from a validated ``config``: ``lowshot.jobs.Runtime``'s
    fields less the job's own ``threads`` (the rules' ``RUNTIME`` param)."""
    return {
        "seed": config["seed"],
        "device": config["device"],
        "precision": config["precision"],
        "cuda_graphs": config["cuda_graphs"],
        "latent_dim": config["model"]["latent_dim"],
    }


def load_config(path: str | os.PathLike[str], **overrides: Any) -> dict[str, Any]:
    """Read a YAML config, apply top-level ``overrides`` and validate it."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle) or {}
    config.update(overrides)
    return validate_config(config)


def resolve_data_path(value: str | None, root: str | os.PathLike[str]) -> Path | None:
    """Resolve a data path from the config against the repository ``root``."""
    if value is None:
        return None
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else Path(root) / path


def data_source(config: dict[str, Any], root: str | os.PathLike[str]) -> Path:
    """The CelebA source: ``$LOWSHOT_DATA`` when set, else ``data.source``."""
    override = os.environ.get("LOWSHOT_DATA")
    return resolve_data_path(override or config["data"]["source"], root)  # type: ignore[return-value]


def data_files(config: dict[str, Any], root: str | os.PathLike[str]) -> dict[str, Path | None]:
    """The data stage's files by role: ``source`` (``data_source``), ``partition_file`` and
    ``identity_file`` (None when not configured), resolved against the repository ``root``."""
    return {
        "source": data_source(config, root),
        "partition_file": resolve_data_path(config["data"]["partition_file"], root),
        "identity_file": resolve_data_path(config["data"]["identity_file"], root),
    }


# --- names of problems and methods ---------------------------------------------------


def problem_names(config: dict[str, Any]) -> list[str]:
    """The problem names (wildcards) of a validated config, in table order."""
    from lowshot.problems import problem_specs

    return [spec.name for spec in problem_specs(config)]


def method_names(config: dict[str, Any]) -> list[str]:
    """The method names (wildcards) of a validated config, in table order."""
    from lowshot.methods import method_specs

    return [spec.name for spec in method_specs(config)]


# --- sharding of recovery jobs -------------------------------------------------------


def shard_count(config: dict[str, Any]) -> int:
    """Recovery jobs per (problem, method): ceil(n_test / recover.images_per_job)."""
    n_test = config["split"]["n_test"]
    per_job = config["recover"]["images_per_job"] or n_test
    return -(-n_test // per_job)


def shard_positions(config: dict[str, Any], shard: int) -> tuple[int, int]:
    """(start, stop) positions in the test split that shard ``shard`` recovers."""
    n_test = config["split"]["n_test"]
    per_job = config["recover"]["images_per_job"] or n_test
    if not 0 <= shard < shard_count(config):
        raise ValueError(f"shard {shard} out of range 0..{shard_count(config) - 1}")
    return shard * per_job, min(n_test, (shard + 1) * per_job)


def main(argv: list[str] | None = None) -> int:
    """``python -m lowshot.config [PLUGIN ...]``: print the assembled schema as YAML."""
    import argparse

    import yaml

    from lowshot.registry import load_plugins

    parser = argparse.ArgumentParser(
        prog="python -m lowshot.config",
        description=(
            "Print the config schema as YAML: every key with its default and description, "
            "the methods' and problems' sections included (those of the plugins named)."
        ),
    )
    parser.add_argument(
        "plugins", nargs="*", metavar="PLUGIN", help="a plugin file or module, as in plugins:"
    )
    load_plugins(parser.parse_args(argv).plugins)
    yaml.safe_dump(load_schema(), sys.stdout, sort_keys=False, allow_unicode=True, width=100)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
