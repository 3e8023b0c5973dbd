"""The trainers' settings: the config sections ``gan`` and ``lowshot``, checked.

The config schema (``lowshot/config.schema.yaml``) is the one home of their keys and
defaults: a trainer takes its section as one mapping in which every key is required, so
no default is written twice (tests start from ``lowshot.config.schema_defaults("gan")``
and override a few keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lowshot.config import schema_defaults

# The ``lowshot`` section's keys that choose which models are trained, not how:
# ``pretrain_lowshot`` accepts and ignores them, ``lowshot_settings`` drops them (so they
# stay out of the rule's params: more replicates or shot counts retrain no model).
LOWSHOT_SELECTION_KEYS = ("shots", "losses", "replicates")
# The ``gan`` section's keys of the validation curve (``lowshot.training.validation``).
GAN_VALIDATION_KEYS = ("validate_every", "validation_faces", "validation_steps", "patience")


def section_settings(
    section: str, settings: Mapping[str, Any], ignored: Sequence[str] = ()
) -> dict[str, Any]:
    """``settings`` reduced to the keys of the schema's ``section`` less ``ignored`` (in the
    schema's order); every one of them is required.

    A missing key, or one outside the section, raises a ValueError naming it.
    """
    keys = [key for key in schema_defaults(section) if key not in ignored]
    missing = [key for key in keys if key not in settings]
    unknown = sorted(set(settings) - set(keys) - set(ignored))
    if missing or unknown:
        raise ValueError(
            f"{section} settings: missing {missing}, unknown {unknown}; expected exactly "
            f"the keys {list(keys)} (the schema's defaults: "
            f"lowshot.config.schema_defaults({section!r}))"
        )
    return {key: settings[key] for key in keys}


def gan_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The ``gan`` section as ``train_wgan_gp`` takes it (every key required)."""
    return section_settings("gan", settings)


def lowshot_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The training part of the ``lowshot`` section (every key but the selection keys).

    ``shots``, ``losses`` and ``replicates`` (``LOWSHOT_SELECTION_KEYS``) may be present
    and are dropped, so the whole section can be passed; any other key is an error.
    """
    return section_settings("lowshot", settings, LOWSHOT_SELECTION_KEYS)


def gan_rule_settings(section: Mapping[str, Any]) -> dict[str, Any]:
    """The ``gan`` section as rule ``train_gan``'s params: without the validation keys
    (``GAN_VALIDATION_KEYS``) while ``validate_every`` is 0.

    Snakemake reruns a job whose params changed; so a config that leaves the validation
    curve off keeps the params it had before these keys existed, and a trained GAN is not
    retrained for nothing. ``with_validation_defaults`` puts the keys back.
    """
    if section.get("validate_every", 0):
        return dict(section)
    return {key: value for key, value in section.items() if key not in GAN_VALIDATION_KEYS}


def with_validation_defaults(section: Mapping[str, Any]) -> dict[str, Any]:
    """``section`` with the validation keys it lacks at their schema defaults (off)."""
    defaults = schema_defaults("gan")
    return {**{key: defaults[key] for key in GAN_VALIDATION_KEYS}, **section}
