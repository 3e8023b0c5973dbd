"""Peak memory of a 50-image joint stage (a recovery job's default shard: all of the
paper's 50 test images) on the card, against what the gpu-node profile reserves for it."""

from __future__ import annotations

import pytest
import torch
import yaml

from gpu.conftest import REPO
from lowshot.methods.engine import optimise_joint, stack_parameters, standard_normal
from lowshot.models import make_generator
from lowshot.problems import make_operator, parse_problem

IMAGES = 50
LATENT = 128


def reserved_for_a_recovery() -> int:
    """MB of the card that profiles/gpu-node lets each recovery job take (gpu_mem_mb)."""
    profile = yaml.safe_load((REPO / "profiles" / "gpu-node" / "config.yaml").read_text())
    return int(profile["set-resources"]["recover"]["gpu_mem_mb"])


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_a_50_image_joint_stage_fits_the_profiles_share_of_the_card(
    cuda_graphs: bool, device: torch.device, on_card: bool, figures: dict
) -> None:
    """The paper's DCGAN (latent 128, width 64), 50 images, a few joint steps on the GEMM
    path, CUDA graphs off and on. Bound: the profile's gpu_mem_mb for a recovery (8000 MB),
    the figure that decides how many recoveries share the card; the allocator's peak is
    what torch itself holds (the CUDA context adds a few hundred MB outside it)."""
    generator = make_generator(LATENT, torch.Generator().manual_seed(0)).to(device)
    generator.norm = "stored"
    generator.eval().requires_grad_(False)
    operator = make_operator(parse_problem("cs-0.1"), config_seed=0, device=device)
    y = torch.randn(IMAGES, operator.m, generator=torch.Generator().manual_seed(1)).to(device)
    z0 = standard_normal(range(IMAGES), LATENT).to(device)
    if on_card:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    params = stack_parameters(generator, IMAGES)
    optimise_joint(
        generator, params, operator, y, z0, steps=6, theta_lr=1e-3, z_lr=1e-4,
        cuda_graphs=cuda_graphs, progress=False,
    )  # fmt: skip
    if not on_card:
        return  # a rehearsal: the CPU has no allocator peak to compare
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    reserved = torch.cuda.max_memory_reserved(device) / 2**20
    label = "graphs" if cuda_graphs else "plain"
    figures[f"joint_{IMAGES}_images_{label}_peak_allocated_mib"] = round(peak)
    figures[f"joint_{IMAGES}_images_{label}_peak_reserved_mib"] = round(reserved)
    assert reserved < reserved_for_a_recovery(), f"{reserved:.0f} MiB reserved"
