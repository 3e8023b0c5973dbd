"""The workflow configuration: schema validation with defaults, cross-key checks, and
the names of problems and methods that the rules use as wildcards.

Problem names: ``cs-<ratio>`` (compressed sensing at compression ratio m/n, e.g.
``cs-0.1``) and ``colorization``. Method names: ``lowshot-<loss>-S<shots>`` (e.g.
``lowshot-mmd-S10``), ``untrained``, ``csgm``, ``iagan``.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import jsonschema

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
BASELINES = ("untrained", "csgm", "iagan")


class ConfigError(ValueError):
    """A config value is wrong; the message names the key."""


def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


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


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``config`` validated against the schema, defaults filled in.

    Raises ``ConfigError`` naming the offending key (e.g. ``problems.compressed_sensing.
    ratios[0]``) for schema violations and for the cross-key checks of ``check_config``.
    """
    # Imported here: operators and methods use this module's names without validating.
    import jsonschema

    config = copy.deepcopy(config)
    schema = load_schema()
    _fill_defaults(schema, config)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.path)
    )
    if errors:
        raise ConfigError("\n".join(describe_error(error) for error in errors))
    check_config(config)
    return config


def describe_error(error: jsonschema.ValidationError) -> str:
    """One line naming the key path of a schema error."""
    key = format_key(error.absolute_path) or "<config>"
    if error.validator == "additionalProperties":
        return f"{key}: unknown key ({error.message}); check its spelling"
    return f"{key}: {error.message}"


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
    report = config["report"]
    if report["figure2_shots"] not in shots:
        raise ConfigError(
            f"report.figure2_shots: {report['figure2_shots']} is not in lowshot.shots={shots}"
        )
    if report["figure2_loss"] not in config["lowshot"]["losses"]:
        raise ConfigError(
            f"report.figure2_loss: {report['figure2_loss']} is not in "
            f"lowshot.losses={config['lowshot']['losses']}"
        )
    if not problem_names(config):
        raise ConfigError(
            "problems: no problem to solve; give compressed_sensing.ratios or enable colorization"
        )


def load_config(path: str | os.PathLike[str], **overrides: Any) -> dict[str, Any]:
    """Read a YAML config, apply top-level ``overrides`` and validate it."""
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


# --- names of problems and methods ---------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """An inverse problem: ``kind`` is ``compressed_sensing`` or ``colorization``."""

    kind: str
    ratio: float | None = None

    @property
    def name(self) -> str:
        return "colorization" if self.kind == "colorization" else f"cs-{self.ratio:g}"


@dataclass(frozen=True)
class Method:
    """A recovery method: ``kind`` in lowshot/untrained/csgm/iagan; loss/shots for lowshot."""

    kind: str
    loss: str | None = None
    shots: int | None = None

    @property
    def name(self) -> str:
        return f"lowshot-{self.loss}-S{self.shots}" if self.kind == "lowshot" else self.kind


_PROBLEM_RE = re.compile(r"^cs-(?P<ratio>[0-9.eE+-]+)$")
_METHOD_RE = re.compile(r"^lowshot-(?P<loss>l2|mmd)-S(?P<shots>[0-9]+)$")


def parse_problem(name: str) -> Problem:
    """``cs-0.1`` -> Problem('compressed_sensing', 0.1); ``colorization`` likewise."""
    if name == "colorization":
        return Problem("colorization")
    match = _PROBLEM_RE.match(name)
    if not match:
        raise ValueError(f"unknown problem name {name!r}; expected cs-<ratio> or colorization")
    return Problem("compressed_sensing", float(match["ratio"]))


def parse_method(name: str) -> Method:
    """``lowshot-mmd-S10`` -> Method('lowshot', 'mmd', 10); baselines map to themselves."""
    if name in BASELINES:
        return Method(name)
    match = _METHOD_RE.match(name)
    if not match:
        raise ValueError(
            f"unknown method name {name!r}; "
            f"expected lowshot-<l2|mmd>-S<shots> or one of {BASELINES}"
        )
    return Method("lowshot", match["loss"], int(match["shots"]))


def problems(config: dict[str, Any]) -> list[Problem]:
    """The problems of a config, compressed sensing first in ratio order."""
    cs = config["problems"]["compressed_sensing"]
    found = [Problem("compressed_sensing", float(r)) for r in sorted(cs["ratios"])]
    if config["problems"]["colorization"]["enabled"]:
        found.append(Problem("colorization"))
    return found


def problem_names(config: dict[str, Any]) -> list[str]:
    return [problem.name for problem in problems(config)]


def methods(config: dict[str, Any]) -> list[Method]:
    """Low-shot models (every loss x shots) then the configured baselines."""
    lowshot = config["lowshot"]
    found = [
        Method("lowshot", loss, shots)
        for loss in lowshot["losses"]
        for shots in sorted(lowshot["shots"])
    ]
    found += [Method(name) for name in config["recover"]["baselines"]]
    return found


def method_names(config: dict[str, Any]) -> list[str]:
    return [method.name for method in methods(config)]


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


# --- per-job settings ----------------------------------------------------------------
# A recovery job receives only the settings it uses, so that changing one method's or one
# problem's settings reruns only the jobs they touch.


def method_settings(config: dict[str, Any], method: str) -> dict[str, Any]:
    """The ``recover.<kind>`` settings of a method name (or kind), as
    ``lowshot.methods.recover`` takes them; IAGAN's include its first stage's under
    ``csgm``. ``config`` needs only its ``recover`` section."""
    kind = method if method in (*BASELINES, "lowshot") else parse_method(method).kind
    recover = config["recover"]
    settings = dict(recover[kind])
    if kind == "iagan":
        settings["csgm"] = dict(recover["csgm"])
    return settings


def noise_std(config: dict[str, Any], problem: str) -> float:
    """Measurement-noise std of a problem name."""
    return float(config["problems"][parse_problem(problem).kind]["noise_std"])
