"""The batched joint stage on the card against the plain per-image loop: the same
recovery, image by image, whichever way the N networks are evaluated."""

from __future__ import annotations

import copy

import pytest
import torch
from standins import operator_of

from lowshot.methods.engine import (
    measurement_loss,
    optimise_joint,
    stack_parameters,
    standard_normal,
)
from lowshot.models import Generator, make_generator

LATENT = 128  # the paper's DCGAN: latent 128, width 64
STEPS = 5
LR = 1e-4  # IAGAN's z learning rate; theta and z alike here
# Our bound: with TF32 off (the fp32 policy) both sides compute IEEE fp32 and differ by the
# rounding of differently ordered sums (bmm and col2im against cuDNN's transposed
# convolutions; fused against foreach Adam): on the CPU, 7.8e-7 (GEMM) and 6.2e-7 (vmap)
# after these 5 steps (docs/measurements.md). 1e-4 is the CPU's bound for the same
# comparison (tests/test_benchmarks.py): two orders above that rounding, and the test
# also asserts that the steps moved the images by more than 10 times it, so a path that
# computes another function or mixes images fails.
TOLERANCE = 1e-4


def per_image_loop(
    generator: Generator, operator, y: torch.Tensor, z0: torch.Tensor
) -> torch.Tensor:
    """Each image on its own: its own copy of the network, torch's own Adam over its
    parameters and z, ordinary forward passes."""
    images = []
    for i in range(y.shape[0]):
        net = copy.deepcopy(generator).requires_grad_(True)
        z = z0[i : i + 1].clone().requires_grad_(True)
        optimiser = torch.optim.Adam([*net.parameters(), z], lr=LR)
        for _ in range(STEPS):
            optimiser.zero_grad(set_to_none=True)
            measurement_loss(operator, net(z), y[i : i + 1]).sum().backward()
            optimiser.step()
        with torch.no_grad():
            images.append(net(z))
    return torch.cat(images)


@pytest.mark.parametrize("path", ["gemm", "vmap"])
def test_the_batched_joint_stage_equals_the_per_image_loop(
    path: str, device: torch.device, figures: dict
) -> None:
    generator = make_generator(LATENT, torch.Generator().manual_seed(0)).to(device)
    generator.norm = "stored"
    generator.eval().requires_grad_(False)
    operator = operator_of("cs-0.1", device)
    with torch.no_grad():
        truth = generator(standard_normal(range(4), LATENT).to(device))
    y = operator.A(truth)
    z0 = standard_normal(range(4, 8), LATENT).to(device)
    batched = optimise_joint(
        generator, stack_parameters(generator, 4), operator, y, z0, steps=STEPS,
        theta_lr=LR, z_lr=LR, path=path, progress=False,
    ).images  # fmt: skip
    looped = per_image_loop(generator, operator, y, z0)
    difference = float((batched - looped).abs().max())
    figures[f"joint_{path}_vs_loop_max_abs"] = difference
    assert difference < TOLERANCE, f"{path}: {difference:.2e} from the per-image loop"
    # Not a comparison of two no-ops: the steps moved the images far beyond the bound.
    with torch.no_grad():
        start = generator(z0)
    assert float((batched - start).abs().max()) > 10 * TOLERANCE
