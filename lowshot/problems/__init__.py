"""Inverse problems: one file per operator family, each registering itself.

``PROBLEMS`` holds the families (``lowshot.problems.base.Operator`` subclasses) by kind;
every module of this package is imported on first use, and plugins (config key
``plugins``) add more. The functions below are how the rest of the pipeline asks about
problems; none of it names a family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lowshot.problems.base import (
    IMAGE_SHAPE,
    IMAGE_SIZE,
    PROBLEMS,
    GaussianNoise,
    Operator,
    ProblemSpec,
    measure,
    register,
)
from lowshot.seeds import derive_seed

__all__ = [
    "IMAGE_SHAPE",
    "IMAGE_SIZE",
    "PROBLEMS",
    "GaussianNoise",
    "Operator",
    "ProblemSpec",
    "family",
    "make_operator",
    "measure",
    "noise_std",
    "observe",
    "parse_problem",
    "problem_specs",
    "register",
    "sort_key",
]


parse_problem = PROBLEMS.parse
family = PROBLEMS.family


def problem_specs(config: Mapping[str, Any]) -> list[ProblemSpec]:
    """The problems of a (validated) config: families by ``order``, names as each gives them."""
    sections = config["problems"]
    specs = []
    for cls in sorted(PROBLEMS, key=lambda c: c.order):
        if cls.kind in sections:
            specs += [parse_problem(name) for name in cls.problem_names(sections[cls.kind])]
    return specs


def sort_key(spec: ProblemSpec) -> tuple[int, str, float]:
    """Tables' order: family ``order``, then the family's parameter."""
    cls = PROBLEMS[spec.kind]
    return (cls.order, cls.kind, spec.ratio if spec.ratio is not None else float("inf"))


def make_operator(
    spec: ProblemSpec, *, config_seed: int, device: str | torch.device = "cpu"
) -> Operator:
    """The operator of ``spec`` on ``device``."""
    return PROBLEMS[spec.kind].build(spec, config_seed=config_seed, device=device)


def noise_std(config: Mapping[str, Any], name: str) -> float:
    """The measurement-noise std (>= 0) of a problem name in a validated config: its
    family's ``Operator.noise_std`` of the section ``problems.<kind>``, which is that
    section's ``noise_std`` unless the family decides per problem (a noise sweep)."""
    spec = parse_problem(name)
    return PROBLEMS[spec.kind].noise_std(spec, config["problems"][spec.kind])


def observe(
    name: str,
    truth: torch.Tensor,
    image_ids: Sequence[str],
    *,
    config_seed: int,
    noise_std: float,
    device: str | torch.device = "cpu",
) -> tuple[Operator, torch.Tensor]:
    """The workflow's measurements of problem ``name``: its operator (seeded by the config
    seed and the name) and y = A x + eta (N, m) float32 for the true images ``truth``
    (N, 3, 64, 64) in [-1, 1], with eta of std ``noise_std`` seeded per (config seed,
    "noise", name, image id). Every method, job and benchmark that measures image i of a
    problem sees this same y."""
    operator = make_operator(parse_problem(name), config_seed=config_seed, device=device)
    noise_seeds = [derive_seed(config_seed, "noise", name, image_id) for image_id in image_ids]
    return operator, measure(operator, GaussianNoise(noise_std), truth.to(device), noise_seeds)
