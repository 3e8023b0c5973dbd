"""Recovery methods: the shared optimisation engine and one file per method.

``METHODS`` holds the methods (``lowshot.methods.base.RecoveryMethod`` subclasses) by
kind; every module of this package is imported on first use, and plugins (config key
``plugins``) add more. The functions below are how the rest of the pipeline asks about
methods; none of it names one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lowshot.methods.base import (
    METHODS,
    REPLICATE_FOLDER_SUFFIX,
    MethodSpec,
    RecoveryMethod,
    RecoveryTask,
    recover,
    register,
    replicate_of_suffix,
    replicate_suffix,
    resolve_settings,
)
from lowshot.methods.engine import RecoveryResult, StageResult

__all__ = [
    "METHODS",
    "REPLICATE_FOLDER_SUFFIX",
    "MethodSpec",
    "RecoveryMethod",
    "RecoveryResult",
    "RecoveryTask",
    "StageResult",
    "family",
    "method_settings",
    "method_specs",
    "parse_method",
    "recover",
    "register",
    "replicate_of_suffix",
    "replicate_suffix",
    "resolve_settings",
    "sort_key",
]


parse_method = METHODS.parse
family = METHODS.family


def method_specs(config: Mapping[str, Any]) -> list[MethodSpec]:
    """The method instances of a (validated) config, in table order."""
    specs = [
        parse_method(name)
        for kind in config["recover"]["methods"]
        for name in METHODS[kind].method_names(config)
    ]
    return sorted(specs, key=sort_key)


def sort_key(spec: MethodSpec) -> tuple[Any, ...]:
    """Tables' and figures' order: the class's ``order``, then its own ``sort_key``."""
    cls = METHODS[spec.kind]
    return (cls.order, cls.kind, *cls.sort_key(spec))


def method_settings(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A method's ``recover.<kind>`` settings (as ``recover`` takes them). ``config``
    needs only ``recover``."""
    return dict(config["recover"][family(name).kind])
