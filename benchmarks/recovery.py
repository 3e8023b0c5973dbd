"""Per-image loop versus batched recovery: image-steps per second, z-only and joint.

Runs the same Gaussian compressed-sensing recovery (the paper's DCGAN, "stored" batch
norm) on the current device, for each batch size of ``--images``:
- z-only (eq. 2): ``optimise_latent`` called once per image, then once on all images;
- joint (eq. 3): a plain per-image loop (its own generator copy, ordinary forward, torch's
  default Adam on its parameters and z), then ``optimise_joint`` on all images (per-image
  parameters stacked) along each path of ``--joint-path``:
  ``gemm``: the batched matrix products of ``lowshot.methods.batched_generator``,
  ``vmap``: functional_call under vmap (both with the engine's fused Adam),
  ``before``: vmap with torch's default Adam, i.e. the engine before the gemm path.
Every repeat runs all variants one after the other (loop and batched side by side, so
that a machine shared with other work slows both alike); the figures are medians over
``--repeats``. The loop runs on at most ``--loop-images`` of the images (its rate per
image does not depend on how many there are).

Printed per stage, path and batch size: image-steps/s of the loop and of the batched
run, the speed-up, the achieved TFLOP/s (the FLOPs of one image-step, generator forward
and backward plus the operator, counted once by ``torch.utils.flop_counter``, times the
image-step rate), the peak memory of each run (CUDA: ``max_memory_allocated``; CPU: the
process's peak resident set during the run, VmHWM reset through /proc/self/clear_refs
where Linux allows it, else the process's peak so far, marked "(process)"), and for the
joint stage the largest difference between the batched and the looped final images.
``--cuda-graphs`` adds, on CUDA, the batched runs with every step after the first three
replayed as one CUDA graph (``cuda_graphs=True`` of the engine: path ``graphs`` for
z-only, ``<path>+graphs`` for joint, the first ``--joint-path``) and their largest
difference from the same batched run without graphs; on CPU it says it was skipped. A
graphed run's rate counts its replays only, as ``benchmarks/training.py`` does: the
steps after the first ``GRAPH_WARMUP + 1`` (the eager warm-up steps and the step that
captures), timed from the end of that step to the end of the last one
(``StepTimer``; ``--steps`` must exceed ``GRAPH_WARMUP + 1``). Its eager counterpart is
timed over the same steps (``batch_steady_image_steps_per_s``, and
``graphs_vs_eager``, the ratio of the two), so that neither includes a stage's set-up.
``--bf16-psnr`` adds, on CUDA, the PSNR of fp32 and bf16-autocast recoveries of the same
images (z-only and joint, ``--psnr-steps`` steps); on CPU it says it was skipped. The last
line is one JSON object: ``device``, ``zonly_speedup`` and ``joint_speedup`` (first batch
size, first joint path), and every figure under ``runs``.

    .venv/bin/python benchmarks/recovery.py --images 8 --threads 2 --steps 5 --repeats 5
    .venv/bin/python benchmarks/recovery.py --images 8 50 500 --joint-path gemm vmap --bf16-psnr
    python benchmarks/recovery.py --images 50 500 --joint-path gemm vmap --cuda-graphs
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import torch
from torch.utils.flop_counter import FlopCounterMode

from lowshot import cuda_graphs
from lowshot.cuda_graphs import GRAPH_WARMUP
from lowshot.devices import peak_memory_mb, prepare_device, synchronise
from lowshot.methods import engine
from lowshot.methods.engine import (
    measurement_loss,
    optimise_joint,
    optimise_latent,
    stack_parameters,
    standard_normal,
)
from lowshot.metrics import psnr
from lowshot.models import Generator, make_generator
from lowshot.problems import Operator
from lowshot.problems.compressed_sensing import GaussianCS
from lowshot.seeds import derive_seed

LATENT = 128
LR = {"zonly": 5e-2, "joint": 1e-4}
JOINT_PATHS = ("gemm", "vmap", "before")
log = logging.getLogger("benchmarks.recovery")
T = TypeVar("T")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", type=int, nargs="+", default=[8], help="batch sizes (images recovered together)"
    )
    parser.add_argument("--steps", type=int, default=5, help="Adam steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (the median counts)")
    parser.add_argument(
        "--joint-path",
        nargs="+",
        choices=JOINT_PATHS,
        default=["gemm", "before"],
        help="batched joint variants to time (gemm: the engine's default for the DCGAN)",
    )
    parser.add_argument(
        "--loop-images", type=int, default=16, help="at most this many images in the loops"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--ratio", type=float, default=0.1, help="compression ratio m/n")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bf16-psnr", action="store_true", help="CUDA: PSNR of bf16 against fp32 recoveries"
    )
    parser.add_argument(
        "--cuda-graphs", action="store_true", help="CUDA: also time the steps as CUDA graphs"
    )
    parser.add_argument("--psnr-steps", type=int, default=100, help="steps of the PSNR runs")
    return parser.parse_args(argv)


def timed(run: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """``run()``'s result and its wall time in seconds, the device's queue drained."""
    synchronise(device)
    start = time.perf_counter()
    result = run()
    synchronise(device)
    return result, time.perf_counter() - start


class StepTimer:
    """Wall time of the steps of one engine stage after its first ``skip``.

    ``timing(steps)`` patches ``lowshot.cuda_graphs.stepper``, the one place where every
    stage turns its step into calls: the stage's ``skip``-th call ends with the device's
    queue drained and the clock started, its ``steps``-th with the queue drained and the
    clock read into ``seconds`` (the time of ``steps - skip`` steps). With graphs,
    ``skip = GRAPH_WARMUP + 1`` leaves out the eager warm-up steps and the capture, so
    that only replays are timed. One stage per ``timing`` block.
    """

    def __init__(self, device: torch.device, skip: int = GRAPH_WARMUP + 1) -> None:
        self.device, self.skip = device, skip
        self.seconds: float | None = None

    @contextlib.contextmanager
    def timing(self, steps: int) -> Iterator[StepTimer]:
        if steps <= self.skip:
            raise ValueError(f"timing steps after the first {self.skip} needs more than {steps}")
        original = cuda_graphs.stepper
        self.seconds = None
        started = 0.0

        def stepper(step: Callable[[], T], device: torch.device, graphs: bool) -> Callable[[], T]:
            run, calls = original(step, device, graphs), 0

            def timed_step() -> T:
                nonlocal calls, started
                result = run()
                calls += 1
                if calls in (self.skip, steps):
                    synchronise(self.device)
                    if calls == self.skip:
                        started = time.perf_counter()
                    else:
                        self.seconds = time.perf_counter() - started
                return result

            return timed_step

        with mock.patch.object(cuda_graphs, "stepper", stepper):
            yield self
        if self.seconds is None:
            raise RuntimeError(f"the stage ran fewer than {steps} steps")


_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset_peak_memory(device: torch.device) -> bool:
    """Start a new peak: CUDA's allocator peak, or Linux's VmHWM. False where the CPU's
    peak cannot be reset (then ``peak_memory_mib`` is the process's peak so far)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: the allocator's peak; CPU: the peak resident set since the last reset
    (VmHWM), else the process's (``lowshot.devices.peak_memory_mb``)."""
    if device.type == "cpu":
        with contextlib.suppress(OSError):
            for line in _STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    return peak_memory_mb(device)


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


def default_adam(
    groups: list[dict[str, Any]],
    optimiser: str = "adam",
    momentum: float = 0.0,
    capturable: bool = False,
):
    """The engine's optimiser before fused Adam: torch's default Adam implementation."""
    if optimiser == "adam":
        return torch.optim.Adam(groups, capturable=capturable)
    return torch.optim.RMSprop(groups, momentum=momentum, capturable=capturable)


@contextlib.contextmanager
def joint_variant(path: str) -> Iterator[str]:
    """The engine as ``path`` runs it; yields the engine's ``path`` argument."""
    if path == "before":
        with mock.patch.object(engine, "make_optimiser", default_adam):
            yield "vmap"
    else:
        yield path


def flops_per_image_step(
    generator: Generator, operator: Operator, y: torch.Tensor, z0: torch.Tensor, joint: bool
) -> int:
    """FLOPs of one image's step: generator forward, operator, backward (to z, and to
    theta when ``joint``), as ``FlopCounterMode`` counts them (matrix products and
    convolutions)."""
    net = copy.deepcopy(generator).requires_grad_(joint)
    z = z0[:1].clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        measurement_loss(operator, net(z), y[:1]).sum().backward()
    return counter.get_total_flops()


def bf16_psnr(
    generator: Generator,
    operator: Operator,
    truth: torch.Tensor,
    y: torch.Tensor,
    z0: torch.Tensor,
    steps: int,
) -> dict[str, dict[str, float]]:
    """Mean PSNR (dB) of z-only and joint (gemm path) recoveries in fp32 and in bf16, and
    the mean and largest per-image |difference|."""
    figures: dict[str, dict[str, float]] = {}
    for stage in ("zonly", "joint"):
        scores = {}
        for precision in ("fp32", "bf16"):
            options = {"steps": steps, "precision": precision, "progress": False}
            if stage == "zonly":
                result = optimise_latent(generator, operator, y, z0, lr=LR["zonly"], **options)
            else:
                params = stack_parameters(generator, y.shape[0])
                result = optimise_joint(
                    generator, params, operator, y, z0, theta_lr=LR["joint"], z_lr=LR["joint"],
                    **options,
                )  # fmt: skip
            scores[precision] = torch.as_tensor(psnr(result.images.cpu(), truth.cpu()))
        diff = (scores["bf16"] - scores["fp32"]).abs()
        figures[stage] = {
            "fp32_psnr_db": float(scores["fp32"].mean()),
            "bf16_psnr_db": float(scores["bf16"].mean()),
            "mean_abs_diff_db": float(diff.mean()),
            "max_abs_diff_db": float(diff.max()),
        }
    return figures


def benchmark(
    args: argparse.Namespace, generator: Generator, operator: Operator, n: int, device: torch.device
) -> list[dict[str, Any]]:
    """Every variant's figures for ``n`` images (see the module docstring)."""
    steps, quiet = args.steps, {"progress": False}
    with torch.no_grad():
        truth = generator(standard_normal(range(n), LATENT).to(device))
    y = operator.A(truth)
    z0 = standard_normal(range(n, 2 * n), LATENT).to(device)
    looped = min(n, args.loop_images)

    def zonly_loop() -> None:
        for i in range(looped):
            optimise_latent(
                generator, operator, y[i : i + 1], z0[i : i + 1], steps=steps, lr=LR["zonly"],
                **quiet,
            )  # fmt: skip

    def zonly_batch(cuda_graphs: bool = False) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            return optimise_latent(
                generator, operator, y, z0, steps=steps, lr=LR["zonly"],
                cuda_graphs=cuda_graphs, **quiet,
            ).images  # fmt: skip

        return run

    def joint_loop() -> torch.Tensor:
        return torch.cat(
            [
                plain_joint(generator, operator, y[i : i + 1], z0[i : i + 1], steps, LR["joint"])
                for i in range(looped)
            ]
        )

    def joint_batch(path: str, cuda_graphs: bool = False) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with joint_variant(path) as engine_path:
                params = stack_parameters(generator, n)
                return optimise_joint(
                    generator, params, operator, y, z0, steps=steps, theta_lr=LR["joint"],
                    z_lr=LR["joint"], path=engine_path, cuda_graphs=cuda_graphs, **quiet,
                ).images  # fmt: skip

        return run

    graphs = cuda_graphs.graphs_on(args.cuda_graphs, device)
    if graphs and steps <= GRAPH_WARMUP + 1:
        raise SystemExit(
            f"--cuda-graphs times the replays after {GRAPH_WARMUP} eager steps and the "
            f"capture: --steps must be at least {GRAPH_WARMUP + 2}, not {steps}"
        )
    first_path = args.joint_path[0]
    runs: dict[str, tuple[Callable[[], Any], int]] = {
        "zonly_loop": (zonly_loop, looped),
        "zonly_batch": (zonly_batch(), n),
        "joint_loop": (joint_loop, looped),
        **{f"joint_batch_{path}": (joint_batch(path), n) for path in args.joint_path},
    }
    if graphs:
        runs["zonly_batch_graphs"] = (zonly_batch(cuda_graphs=True), n)
        runs[f"joint_batch_{first_path}+graphs"] = (joint_batch(first_path, True), n)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    peaks: dict[str, float] = {}
    exact: dict[str, bool] = {}
    outputs: dict[str, Any] = {}
    for name, (run, _) in runs.items():  # warm-up (allocator, kernels), peak memory
        exact[name] = reset_peak_memory(device)
        outputs[name], wall = timed(run, device)
        peaks[name] = peak_memory_mib(device)
        log.info("%d images, warm-up %s: %.2f s", n, name, wall)
    # The batched runs that graphs are compared with, and the graphed runs themselves:
    # timed over the steps after the warm-up and the capture (StepTimer) as well.
    windowed = [name for name in runs if graphs and name.endswith("graphs")]
    windowed += [name.removesuffix("_graphs").removesuffix("+graphs") for name in windowed]
    timer = StepTimer(device)
    steady: dict[str, list[float]] = {name: [] for name in windowed}
    for repeat in range(args.repeats):
        for name, (run, _) in runs.items():
            if name in steady:
                with timer.timing(steps):
                    seconds[name].append(timed(run, device)[1])
                steady[name].append(timer.seconds)  # type: ignore[arg-type]
            else:
                seconds[name].append(timed(run, device)[1])
            log.info("%d images, repeat %d %s: %.2f s", n, repeat, name, seconds[name][-1])
    rate = {
        name: count * steps / statistics.median(seconds[name]) for name, (_, count) in runs.items()
    }
    timed_steps = steps - timer.skip
    steady_rate = {
        name: runs[name][1] * timed_steps / statistics.median(times)
        for name, times in steady.items()
    }
    for name in steady:  # a graphed run's rate is its replays' (module docstring)
        if name.endswith("graphs"):
            rate[name] = steady_rate[name]
    flops = {
        stage: flops_per_image_step(generator, operator, y, z0, stage == "joint")
        for stage in ("zonly", "joint")
    }
    rows = []
    variants = {"zonly": ["-"], "joint": list(args.joint_path)}
    if graphs:
        variants["zonly"].append("graphs")
        variants["joint"].append(f"{first_path}+graphs")
    for stage, paths in variants.items():
        for path in paths:
            loop, batch = f"{stage}_loop", f"{stage}_batch" + ("" if path == "-" else f"_{path}")
            row = {
                "stage": stage,
                "path": path,
                "images": n,
                "loop_images": looped,
                "loop_image_steps_per_s": rate[loop],
                "batch_image_steps_per_s": rate[batch],
                "speedup": rate[batch] / rate[loop],
                "gflop_per_image_step": flops[stage] / 1e9,
                "loop_tflops": rate[loop] * flops[stage] / 1e12,
                "batch_tflops": rate[batch] * flops[stage] / 1e12,
                "loop_peak_mib": peaks[loop],
                "batch_peak_mib": peaks[batch],
                "peak_is_per_run": exact[loop] and exact[batch],
                "loop_seconds": seconds[loop],
                "batch_seconds": seconds[batch],
            }
            if stage == "joint":
                diff = (outputs[batch][:looped] - outputs[loop]).abs().max()
                row["max_abs_diff_vs_loop"] = float(diff)
            if batch in steady:
                row["batch_steady_image_steps_per_s"] = steady_rate[batch]
                row["batch_steady_seconds"] = steady[batch]
                row["steady_steps"] = timed_steps
            if path.endswith("graphs"):
                eager = batch.removesuffix("_graphs").removesuffix("+graphs")
                diff = (outputs[batch] - outputs[eager]).abs().max()
                row["max_abs_diff_vs_eager"] = float(diff)
                row["graphs_vs_eager"] = steady_rate[batch] / steady_rate[eager]
            rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'stage':<6} {'path':<7} {'images':>6} {'loop img-st/s':>14} {'batched img-st/s':>17}"
        f" {'speed-up':>9} {'loop TFLOP/s':>13} {'batch TFLOP/s':>14} {'loop peak MiB':>14}"
        f" {'batch peak MiB':>15} {'max|diff|':>10}"
    )
    print(header)
    for row in rows:
        mark = "" if row["peak_is_per_run"] else " (process)"
        diff = f"{row['max_abs_diff_vs_loop']:.1e}" if "max_abs_diff_vs_loop" in row else "-"
        print(
            f"{row['stage']:<6} {row['path']:<7} {row['images']:>6}"
            f" {row['loop_image_steps_per_s']:>14.2f} {row['batch_image_steps_per_s']:>17.2f}"
            f" {row['speedup']:>8.2f}x {row['loop_tflops']:>13.4f} {row['batch_tflops']:>14.4f}"
            f" {row['loop_peak_mib']:>14.0f} {row['batch_peak_mib']:>15.0f}{mark} {diff:>10}"
        )


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    # fp32: the policy the engine's stages apply too, so that the plain loops (torch's
    # own Adam, no engine) run the same IEEE fp32 convolutions on CUDA.
    device = prepare_device(args.device, args.threads, "fp32")
    generator = make_generator(LATENT, torch.Generator().manual_seed(args.seed)).to(device)
    generator.norm = "stored"
    generator.requires_grad_(False)
    operator = GaussianCS(args.ratio, derive_seed(args.seed, "operator"), device=device)
    rows = [row for n in args.images for row in benchmark(args, generator, operator, n, device)]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device: {name} ({torch.get_num_threads()} threads), {args.steps} steps, "
        f"median of {args.repeats} repeats; image-steps/s (img-st/s)"
    )
    print_table(rows)
    first = {row["stage"]: row for row in reversed(rows) if row["images"] == args.images[0]}
    figures: dict[str, object] = {
        "device": name,
        "threads": torch.get_num_threads(),
        "images": args.images,
        "steps": args.steps,
        "repeats": args.repeats,
        "ratio": args.ratio,
        "zonly_speedup": first["zonly"]["speedup"],
        "joint_speedup": first["joint"]["speedup"],
        "joint_path": args.joint_path[0],
        "runs": rows,
    }
    if args.cuda_graphs and device.type != "cuda":
        print("CUDA graphs: skipped (they need CUDA; this is the CPU)")
    for row in rows:
        if "max_abs_diff_vs_eager" in row:
            print(
                f"CUDA graphs, {row['stage']} {row['images']} images: "
                f"{row['graphs_vs_eager']:.2f}x the steps/s without graphs (both over steps "
                f"{GRAPH_WARMUP + 2}..{args.steps}: replays only); largest |difference| from"
                f" the same run without graphs {row['max_abs_diff_vs_eager']:.1e}"
            )
    if args.bf16_psnr:
        if device.type == "cuda":
            n = args.images[0]
            with torch.no_grad():
                truth = generator(standard_normal(range(n), LATENT).to(device))
            z0 = standard_normal(range(n, 2 * n), LATENT).to(device)
            scores = bf16_psnr(generator, operator, truth, operator.A(truth), z0, args.psnr_steps)
            print(f"bf16 vs fp32, {n} images, {args.psnr_steps} steps (mean PSNR, dB):")
            for stage, figure in scores.items():
                print(
                    f"  {stage:<6} fp32 {figure['fp32_psnr_db']:.2f}  bf16 "
                    f"{figure['bf16_psnr_db']:.2f}  |diff| mean {figure['mean_abs_diff_db']:.3f}"
                    f" max {figure['max_abs_diff_db']:.3f}"
                )
            figures["bf16_psnr"] = scores
        else:
            print("bf16 vs fp32 PSNR: skipped (bf16 autocast needs CUDA; this is the CPU)")
            figures["bf16_psnr"] = "skipped: no CUDA"
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main()
