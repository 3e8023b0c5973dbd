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
# ``pretrain_lowshot`` accepts and ignores them, ``lowshot_settings`` drops them.
LOWSHOT_SELECTION_KEYS = ("shots", "losses")


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

    ``shots`` and ``losses`` (``LOWSHOT_SELECTION_KEYS``) may be present and are dropped,
    so the whole section can be passed; any other key is an error.
    """
    return section_settings("lowshot", settings, LOWSHOT_SELECTION_KEYS)
