"""Tiny stand-ins for running every registered problem and method: example problems of
each family, the models a method needs, settings of a few steps. Shared by the CPU's
capture-safety test (tests/test_capture_safety.py) and the GPU suite (tests/gpu/).

The registries are iterated, so a new problem family or method is covered without
editing its tests: a family whose default config section asks for no problem needs an
example in ``EXAMPLES``, a method whose model kind is new a stand-in in ``model_for``;
both fail loudly until given one.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from lowshot.config import NOISE_SCHEMA
from lowshot.io import LearnedRegStats, LowshotModel
from lowshot.methods import METHODS, RecoveryResult, recover, resolve_settings
from lowshot.models import Generator, init_dcgan_weights
from lowshot.problems import PROBLEMS, Operator, make_operator, parse_problem

LATENT = 16
WIDTH = 4
# Problems of the families whose default config section asks for none (our choice: one
# of each shape of operator the family has).
EXAMPLES = {
    "inpainting": ["inpaint-0.3", "inpaint-box32"],
    "super_resolution": ["sr-x4"],
    "denoising": ["denoise"],
    "noisy_cs": ["cs-0.05-noise0.1"],
}


def example_problems(kind: str) -> list[str]:
    """Problems of family ``kind``: what its default config section asks for, else
    ``EXAMPLES``; the first two at most (one of each shape is enough)."""
    cls = PROBLEMS[kind]
    section = {key: copy.deepcopy(schema["default"]) for key, schema in cls.settings.items()}
    section["noise_std"] = NOISE_SCHEMA["default"]
    names = cls.problem_names(section) or EXAMPLES.get(kind, [])
    assert names, f"problem family {kind!r}: add an example problem to EXAMPLES in {__file__}"
    return names[:2]


def every_problem() -> list[str]:
    """Up to two example problems of every registered family, families in table order."""
    return [
        name
        for cls in sorted(PROBLEMS, key=lambda c: c.order)
        for name in example_problems(cls.kind)
    ]


def one_problem_per_family() -> list[str]:
    """The first example problem of every registered family."""
    return [example_problems(cls.kind)[0] for cls in sorted(PROBLEMS, key=lambda c: c.order)]


def operator_of(name: str, device: str | torch.device = "cpu") -> Operator:
    """The operator of problem ``name`` (config seed 0) on ``device``."""
    return make_operator(parse_problem(name), config_seed=0, device=device)


def tiny_generator(seed: int = 0, latent: int = LATENT, width: int = WIDTH) -> Generator:
    """A small DCGAN (CPU) with stored batch-norm statistics, frozen."""
    generator = Generator(latent, width)
    init_dcgan_weights(generator, torch.Generator().manual_seed(seed))
    generator.norm = "stored"
    return generator.eval().requires_grad_(False)


def model_for(kind: str) -> Any:
    """A tiny stand-in (on the CPU) of the model a method of ``kind`` needs (its class's
    ``model``); for the untrained network, its optional template."""
    needs = METHODS[kind].model
    generator = tiny_generator(seed=1)
    if needs is None:
        # The untrained network takes an optional template: a tiny one keeps runs fast.
        return generator if kind == "untrained" else None
    if needs == "gan":
        return generator
    if needs == "lowshot":
        codes = torch.randn(4, LATENT, generator=torch.Generator().manual_seed(2))
        return LowshotModel(generator, codes, codes.mean(0), torch.eye(LATENT), {})
    if needs == "learned_reg":
        layers = tuple(name for name, _ in Generator(LATENT, WIDTH).named_parameters())
        size = len(layers)
        return LearnedRegStats(
            layers, torch.zeros(size, dtype=torch.float64), torch.eye(size, dtype=torch.float64),
            torch.zeros(2, size, dtype=torch.float64), LATENT, WIDTH,
            {"init": resolve_settings("learned_reg", None)["init"]},  # fitted as it recovers
        )  # fmt: skip
    pytest.fail(f"method {kind!r} needs a {needs!r} model: add a stand-in to {__file__}")


def tiny_settings(kind: str, steps: int = 2) -> dict[str, Any]:
    """The method's defaults with every step count at ``steps``, windows and restarts at
    1 (a window or a restart picks among near-equal iterates by their loss, which rounding
    may flip: with 1, runs that should agree pick the same one)."""
    settings = resolve_settings(kind, None)
    for key, value in settings.items():
        if isinstance(value, int) and not isinstance(value, bool):
            if key.endswith(("steps", "iterations")):
                settings[key] = steps
            elif key in ("window", "restarts"):
                settings[key] = 1
    return settings


def run_method(
    kind: str,
    operator: Operator,
    y: torch.Tensor,
    *,
    steps: int = 2,
    cuda_graphs: bool = True,
    device: str | torch.device = "cpu",
) -> RecoveryResult:
    """Method ``kind`` on measurements y (N, m) with its stand-in model and
    ``tiny_settings``; a method that starts from another gets that one's run first."""
    cls = METHODS[kind]
    start = None
    if cls.starts_from is not None:
        start = run_method(
            cls.starts_from, operator, y, steps=steps, cuda_graphs=cuda_graphs, device=device
        )
    return recover(
        kind, operator, y, seeds=[11 + i for i in range(y.shape[0])],
        settings=tiny_settings(kind, steps), model=model_for(kind), latent_dim=LATENT,
        device=device, start=start, cuda_graphs=cuda_graphs, progress=False,
    )  # fmt: skip
