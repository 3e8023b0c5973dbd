"""Per-image loop versus batched recovery: image-steps per second, z-only and joint.

Runs the same Gaussian compressed-sensing recovery twice on the current device:
- z-only (eq. 2): ``optimise_latent`` called once per image, then once on all images;
- joint (eq. 3): a plain per-image loop (its own generator copy, ordinary forward, Adam
  on its parameters and z), then ``optimise_joint`` on all images (per-image parameters
  stacked, one vmapped call).
It prints a table of image-steps/s (medians over ``--repeats``) and the speed-ups; the
last line is one JSON object with ``device``, ``zonly_speedup``, ``joint_speedup`` and the
raw figures.

    .venv/bin/python benchmarks/recovery.py --images 4 --steps 5 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import torch

from lowshot.devices import log_device, resolve_device
from lowshot.methods.engine import (
    measurement_loss,
    optimise_joint,
    optimise_latent,
    stack_parameters,
    standard_normal,
)
from lowshot.models import Generator, make_generator
from lowshot.problems import Operator
from lowshot.problems.compressed_sensing import GaussianCS
from lowshot.seeds import derive_seed

LATENT = 128
log = logging.getLogger("benchmarks.recovery")
T = TypeVar("T")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="images recovered together")
    parser.add_argument("--steps", type=int, default=5, help="Adam steps per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (the median counts)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--ratio", type=float, default=0.1, help="compression ratio m/n")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """``run()``'s result and its wall time in seconds, the device's queue drained."""
    synchronise(device)
    start = time.perf_counter()
    result = run()
    synchronise(device)
    return result, time.perf_counter() - start


def plain_joint(
    generator: Generator,
    operator: Operator,
    y: torch.Tensor,
    z0: torch.Tensor,
    steps: int,
    lr: float,
) -> torch.Tensor:
    """Joint recovery of one image the unbatched way: its own generator copy and Adam."""
    net = copy.deepcopy(generator).requires_grad_(True)
    z = z0.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([z, *net.parameters()], lr=lr)
    for _ in range(steps):
        optimiser.zero_grad(set_to_none=True)
        measurement_loss(operator, net(z), y).sum().backward()
        optimiser.step()
    with torch.no_grad():
        return net(z)


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    log_device(device)
    n, steps = args.images, args.steps
    generator = make_generator(LATENT, torch.Generator().manual_seed(args.seed)).to(device)
    generator.norm = "stored"
    generator.requires_grad_(False)
    operator = GaussianCS(args.ratio, derive_seed(args.seed, "operator"), device=device)
    with torch.no_grad():
        truth = generator(standard_normal(range(n), LATENT).to(device))
    y = operator.A(truth)
    z0 = standard_normal(range(n, 2 * n), LATENT).to(device)
    quiet = {"progress": False}

    def zonly_loop() -> None:
        for i in range(n):
            optimise_latent(
                generator, operator, y[i : i + 1], z0[i : i + 1], steps=steps, lr=5e-2, **quiet
            )

    def zonly_batch() -> None:
        optimise_latent(generator, operator, y, z0, steps=steps, lr=5e-2, **quiet)

    def joint_loop() -> None:
        for i in range(n):
            plain_joint(generator, operator, y[i : i + 1], z0[i : i + 1], steps, 1e-4)

    def joint_batch() -> None:
        params = stack_parameters(generator, n)
        optimise_joint(generator, params, operator, y, z0, steps=steps, lr=1e-4, **quiet)

    runs = {
        "zonly_loop": zonly_loop,
        "zonly_batch": zonly_batch,
        "joint_loop": joint_loop,
        "joint_batch": joint_batch,
    }
    for name, run in runs.items():  # warm-up: allocator, kernels, autotuning
        log.info("warm-up %s: %.2f s", name, timed(run, device)[1])
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.repeats):
        for name, run in runs.items():
            seconds[name].append(timed(run, device)[1])
            log.info("repeat %d %s: %.2f s", repeat, name, seconds[name][-1])
    rate = {name: n * steps / statistics.median(times) for name, times in seconds.items()}
    figures: dict[str, object] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "images": n,
        "steps": steps,
        "repeats": args.repeats,
        "ratio": args.ratio,
        "zonly_speedup": rate["zonly_batch"] / rate["zonly_loop"],
        "joint_speedup": rate["joint_batch"] / rate["joint_loop"],
        **{f"{name}_image_steps_per_s": value for name, value in rate.items()},
    }
    print(f"device: {figures['device']} ({figures['threads']} threads), {n} images, {steps} steps")
    print(f"{'stage':<8} {'per-image loop':>16} {'batched':>12} {'speed-up':>9}  (image-steps/s)")
    for stage in ("zonly", "joint"):
        loop, batch = rate[f"{stage}_loop"], rate[f"{stage}_batch"]
        print(f"{stage:<8} {loop:>16.2f} {batch:>12.2f} {batch / loop:>8.2f}x")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main()
