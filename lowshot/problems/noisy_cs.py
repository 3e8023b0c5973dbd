"""A noise sweep of Gaussian compressed sensing (beyond the paper): one A, several sigmas."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from lowshot.config import ConfigError
from lowshot.problems._names import parse_numbers
from lowshot.problems.base import ProblemSpec, register
from lowshot.problems.compressed_sensing import GaussianCS
from lowshot.seeds import derive_seed

_NAME = re.compile(r"cs-(?P<ratio>[0-9.eE+-]+?)-noise(?P<std>[0-9.eE+-]+)")


@register
class NoisyCS(GaussianCS):
    """Gaussian compressed sensing at one ratio m/n under several noise levels sigma
    (problem names ``cs-<ratio>-noise<sigma>``, e.g. ``cs-0.1-noise10``).

    The operator is the plain problem ``cs-<ratio>``'s: ``build`` seeds its Gaussian A
    with ``derive_seed(config_seed, "operator", "cs-<ratio>")``, so every sigma of the
    sweep, and ``compressed_sensing`` at that ratio, share one A; sigma = 0 is that plain
    problem. Each problem's noise std is the sigma of its name (``noise_std``), not the
    section's ``noise_std``, which must stay 0. sigma is in y's units: y has rms
    sqrt(n * mean x^2), about 66 for CelebA faces, so sigma = 1 is an SNR of about 36 dB.
    The noise itself is drawn per (problem, image) like every problem's, so two sigmas
    see independent draws.

    ``ratio`` of the spec is sigma, the family's swept parameter: tables order the sweep
    by it and Figure 1 plots PSNR against it when ``report.figure1_problem`` is
    ``noisy_cs``; m/n is in the name, the label and the operator's ``ratio``.
    """

    kind = "noisy_cs"
    description = (
        "Gaussian compressed sensing at one ratio under several noise levels "
        "(cs-<ratio>-noise<sigma>, the A of cs-<ratio>); beyond the paper."
    )
    settings = {
        "ratio": {
            "description": (
                "Compression ratio m/n of the sweep, in (0, 1]. Default 0.1 (our choice: "
                "mid-range of the paper-grid ratios 0.01-0.5, where recovery works without "
                "noise, so the noise's effect shows)."
            ),
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "default": 0.1,
        },
        "noise_stds": {
            "description": (
                "Noise stds sigma, each > 0, in y's units: one problem "
                "cs-<ratio>-noise<sigma> each; sigma = 0 is compressed_sensing's "
                "cs-<ratio>. y = A x with N(0, 1) entries has rms sqrt(n * mean x^2), about "
                "66 for CelebA faces in [-1, 1], so e.g. [1, 3, 10, 30] spans an SNR of about "
                "36 to 7 dB. Default none (our choice: the paper has no noise sweep, so its "
                "grid is unchanged)."
            ),
            "type": "array",
            "items": {"type": "number", "exclusiveMinimum": 0},
            "uniqueItems": True,
            "default": [],
        },
    }
    order = 50
    parameter_label = "noise std σ"

    @classmethod
    def problem_names(cls, section: Mapping[str, Any]) -> list[str]:
        """One name per sigma, ascending; ``ConfigError`` when the unused section
        ``noise_std`` is set (the sigmas are ``noise_stds``)."""
        if section.get("noise_std", 0) != 0:
            raise ConfigError(
                "problems.noisy_cs.noise_std: not used by the sweep, whose noise levels are "
                "problems.noisy_cs.noise_stds; leave it 0"
            )
        ratio = float(section["ratio"])
        return [f"cs-{ratio:g}-noise{float(std):g}" for std in sorted(section["noise_stds"])]

    @classmethod
    def parse(cls, name: str) -> ProblemSpec | None:
        numbers = parse_numbers(_NAME, name)
        if numbers is None:
            return None
        ratio, std = numbers["ratio"], numbers["std"]
        return ProblemSpec(cls.kind, f"cs-{ratio:g}-noise{std:g}", std)

    @classmethod
    def label(cls, spec: ProblemSpec) -> str:
        ratio, std = cls._ratio_and_std(spec)
        return f"m/n = {ratio:g}, σ = {std:g}"

    @classmethod
    def noise_std(cls, spec: ProblemSpec, section: Mapping[str, Any]) -> float:
        """The sigma of the problem's name (the section's ``noise_std`` is unused)."""
        del section
        return cls._ratio_and_std(spec)[1]

    @classmethod
    def build(cls, spec: ProblemSpec, *, config_seed: int, device: str | torch.device) -> NoisyCS:
        ratio, _ = cls._ratio_and_std(spec)
        plain = f"cs-{ratio:g}"
        operator = cls(ratio, derive_seed(config_seed, "operator", plain), device=device)
        operator.name = spec.name
        return operator

    @classmethod
    def _ratio_and_std(cls, spec: ProblemSpec) -> tuple[float, float]:
        numbers = parse_numbers(_NAME, spec.name)
        if numbers is None:
            raise ValueError(f"{spec.name!r} is not a noise-sweep name cs-<ratio>-noise<sigma>")
        return numbers["ratio"], numbers["std"]
