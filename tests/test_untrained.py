"""The untrained network's start and terms: the initialisations (``lowshot.models.INITS``),
the per-image parameters drawn straight into the stack (host memory at 500 images),
CS-DIP's total-variation term."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from lowshot.methods import recover, resolve_settings
from lowshot.methods.untrained import initial_parameters, total_variation
from lowshot.models import INITS, Generator, init_dcgan_weights, init_weights, initial_value
from lowshot.problems.colorization import Colorization
from lowshot.seeds import derive_seed, seeded_generator

LATENT = 128


def test_pytorch_init_is_torch_s_own_default_and_dcgan_is_unchanged() -> None:
    # torch's modules draw from the global generator: the same seed, the same values.
    torch.manual_seed(7)
    conv = nn.ConvTranspose2d(16, 8, 4, 2, 1, bias=True)
    norm = nn.BatchNorm2d(8)
    generator = torch.Generator().manual_seed(7)
    assert torch.equal(initial_value(conv, "weight", "pytorch", generator), conv.weight.detach())
    assert torch.equal(initial_value(conv, "bias", "pytorch", generator), conv.bias.detach())
    assert torch.equal(initial_value(norm, "weight", "pytorch"), torch.ones(8))
    # "dcgan" through init_weights is exactly init_dcgan_weights (the draws of every
    # network built before the setting existed).
    a, b = Generator(LATENT, 8), Generator(LATENT, 8)
    init_dcgan_weights(a, torch.Generator().manual_seed(3))
    init_weights(b, "dcgan", torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    with pytest.raises(ValueError, match="init must be one of"):
        initial_value(conv, "weight", "xavier")
    with pytest.raises(ValueError, match="does not cover a Linear"):
        initial_value(nn.Linear(3, 3), "weight", "pytorch")


def test_pytorch_0_4_init_bounds_by_in_channels_and_draws_norm_scales_uniformly() -> None:
    """torch 0.4.1: b = 1 / sqrt(in_channels * k * k) for a transposed convolution too
    (today's torch uses its weight.shape[1] = out_channels), batch-norm scales U(0, 1)."""
    conv = nn.ConvTranspose2d(64, 512, 4, bias=False)
    generator = torch.Generator().manual_seed(0)
    weight = initial_value(conv, "weight", "pytorch-0.4", generator)
    old, new = 1 / math.sqrt(64 * 16), 1 / math.sqrt(512 * 16)
    assert weight.abs().max() <= old and weight.abs().max() > 0.99 * old
    today = initial_value(conv, "weight", "pytorch", generator)
    assert today.abs().max() <= new < 0.5 * old
    scales = initial_value(nn.BatchNorm2d(4096), "weight", "pytorch-0.4", generator)
    assert scales.min() >= 0 and scales.max() < 1 and abs(float(scales.mean()) - 0.5) < 0.02
    assert torch.equal(initial_value(nn.BatchNorm2d(4), "bias", "pytorch-0.4"), torch.zeros(4))


@pytest.mark.parametrize("init", INITS)
def test_each_stacked_row_is_its_seed_s_network(init: str) -> None:
    template = Generator(LATENT, 4)
    seeds = [11, 12, 13]
    stacked = initial_parameters(template, seeds, init, "cpu")
    for row, seed in enumerate(seeds):
        network = copy.deepcopy(template)
        init_weights(network, init, seeded_generator(derive_seed(seed, "theta")))
        for name, param in network.named_parameters():
            assert torch.equal(stacked[name][row], param.detach()), (init, name)
    assert all(value.requires_grad and value.is_leaf for value in stacked.values())


def test_the_init_setting_changes_the_start_and_the_recovery() -> None:
    assert resolve_settings("untrained", None)["init"] in INITS
    operator = Colorization()
    y = torch.randn(1, operator.m, generator=torch.Generator().manual_seed(0))
    images = {
        init: recover(
            "untrained",
            operator,
            y,
            seeds=[5],
            settings={"steps": 1, "window": 1, "init": init},
            model=Generator(LATENT, 4),
            progress=False,
        ).images
        for init in INITS
    }
    assert not torch.allclose(images["dcgan"], images["pytorch-0.4"], atol=1e-3)
    assert not torch.allclose(images["pytorch-0.4"], images["pytorch"], atol=1e-3)


# Peak host memory of the start of 500 images (issue 21, defect 6): the stacked
# parameters (width 4: 306 kB per image, 153 MB in all) are the only large allocation.
# Building 500 networks first and then stacking them holds both, over twice the stack;
# this bound (the stack plus a quarter plus 16 MB for the allocator) fails then.
MEMORY_SCRIPT = textwrap.dedent(
    """
    import torch
    from lowshot.methods.untrained import initial_parameters
    from lowshot.models import Generator

    def status_kb(field):
        # VmHWM: this process's peak resident memory since its exec (ru_maxrss would
        # carry over the parent's peak across fork and exec).
        with open("/proc/self/status") as handle:
            line = next(line for line in handle if line.startswith(field + ":"))
        return int(line.split()[1])

    torch.set_num_threads(1)
    template = Generator(128, 4)
    before = status_kb("VmRSS")
    params = initial_parameters(template, list(range(500)), "pytorch-0.4", "cpu")
    stack = sum(p.numel() * p.element_size() for p in params.values()) // 1024
    print(status_kb("VmHWM") - before, stack)
    """
)


def test_the_stacked_start_of_500_images_holds_one_copy_in_host_memory() -> None:
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, check=True
    )
    grown_kb, stack_kb = map(int, done.stdout.split())
    assert stack_kb > 140_000  # 500 images x 76,620 parameters x 4 bytes
    assert grown_kb < 1.25 * stack_kb + 16_384, (grown_kb, stack_kb)


def test_total_variation_is_cs_dip_s_and_the_tv_term_smooths() -> None:
    x = torch.zeros(1, 3, 4, 4)
    x[..., ::2, ::2] = x[..., 1::2, 1::2] = 1.0  # a checkerboard: every neighbour differs
    assert total_variation(x).tolist() == [3 * (4 * 3 + 4 * 3)]
    assert total_variation(torch.ones(2, 3, 4, 4)).tolist() == [0.0, 0.0]
    operator = Colorization()
    y = torch.randn(2, operator.m, generator=torch.Generator().manual_seed(1))

    def run(tv_weight: float) -> torch.Tensor:
        settings = {"steps": 5, "window": 1, "lr": 1e-2, "tv_weight": tv_weight}
        return recover(
            "untrained", operator, y, seeds=[1, 2], settings=settings,
            model=Generator(LATENT, 4), progress=False,
        ).images  # fmt: skip

    plain, smooth = run(0.0), run(10.0)
    assert (total_variation(smooth) < 0.9 * total_variation(plain)).all()
