"""Training throughput of both trainers: iterations/s, image-steps/s, TFLOP/s, peak memory.

Times the very step functions the trainers run (``lowshot.training.build_wgan_gp`` and
``build_lowshot``: ``train_wgan_gp`` and ``pretrain_lowshot`` run the same ``step``), on
the current device:

- WGAN-GP: one iteration = ``--critic-steps`` critic updates (each a batch of real and
  generated images and the gradient penalty) and one generator update, at each batch
  size of ``--gan-batch``; image-steps/s = batch size x iterations/s;
- low-shot pre-training (eq. 1): one full-batch Adam step on theta and the S codes, for
  each S of ``--shots`` and each loss of ``--losses`` (l2, mmd with the median
  bandwidth); image-steps/s = S x iterations/s.

Per configuration: ``--warmup`` untimed steps, then ``--windows`` timed windows of
``--window-steps`` steps each (the device's queue drained around each window); the rate is
the median window's. FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one step
(matrix products and convolutions, forward and backward, the penalty's double backward
included; element-wise work is not counted), so TFLOP/s = FLOPs per step x iterations/s.
Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` of the configuration (reset
before it); on the CPU the process's peak resident set (``resource.getrusage``), which
only grows: a later row shows the maximum so far (rows run smallest first).

The data are random uint8 faces (timing does not depend on the pixels), the settings the
config schema's defaults (= config.yaml: batch 64, 5 critic steps) except the ones the
options set; ``--precision`` is the config's (``lowshot.devices.set_precision``: ``tf32``
and ``bf16`` apply on CUDA only, so they are refused on the CPU). ``--cuda-graphs`` adds,
on CUDA, a row per low-shot configuration with its step replayed as a CUDA graph
(``TrainingRun.cuda_graphs``; its FLOPs are those of the same step without graphs). It
prints a table; the last line is one JSON object with every figure.

    .venv/bin/python benchmarks/training.py --device cpu --threads 2 --width 16 \\
        --gan-batch 16 --shots 10 --windows 3 --window-steps 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from lowshot.config import schema_defaults
from lowshot.cuda_graphs import GRAPH_WARMUP, graphs_on
from lowshot.devices import PRECISIONS, peak_memory_mb, prepare_device, synchronise
from lowshot.training import TrainingRun, build_lowshot, build_wgan_gp

log = logging.getLogger("benchmarks.training")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    gan = schema_defaults("gan")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    parser.add_argument("--width", type=int, default=64, help="networks' base width (64: paper)")
    parser.add_argument(
        "--gan-batch", type=int, nargs="+", default=[gan["batch_size"]], help="GAN batch sizes"
    )
    parser.add_argument("--critic-steps", type=int, default=gan["critic_steps"])
    parser.add_argument("--shots", type=int, nargs="+", default=[10, 100], help="low-shot S")
    parser.add_argument("--losses", nargs="+", default=["l2", "mmd"], choices=["l2", "mmd"])
    parser.add_argument(
        "--trainers", nargs="+", default=["gan", "lowshot"], choices=["gan", "lowshot"]
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--windows", type=int, default=5, help="timed windows (median counts)")
    parser.add_argument("--window-steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="CUDA: also time the low-shot steps replayed as CUDA graphs",
    )
    args = parser.parse_args(argv)
    for name in ("width", "critic_steps", "windows", "window_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if min(args.gan_batch) < 2 or min(args.shots) < 2:
        parser.error("--gan-batch and --shots take values >= 2")
    return args


class GlobalOnly:
    """Stands in for ``FlopCounterMode``'s module tracker: every FLOP counts towards
    "Global" only. The tracker's per-module backward hooks break ``torch.autograd.grad``
    on leaf tensors ("A leaf node was passed to _will_engine_execute_node"), which the
    gradient penalty calls; the total is all this benchmark needs."""

    parents = frozenset({"Global"})

    def __enter__(self) -> GlobalOnly:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def count_flops(step: Callable[[], Any]) -> float:
    """FLOPs of one call of ``step`` (``FlopCounterMode``'s total)."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = GlobalOnly()  # type: ignore[assignment]
    with counter:
        step()
    return float(counter.get_total_flops())


def measure(
    step: Callable[[], Any],
    device: torch.device,
    args: argparse.Namespace,
    flops: float | None = None,
) -> dict[str, float]:
    """Warm-up, one step under the FLOP counter, then the timed windows of ``step``.

    ``flops``: given for a step replayed as a CUDA graph (a replay dispatches nothing to
    count): the same step's count without graphs; its warm-up then also covers the
    eager steps and the capture of ``lowshot.cuda_graphs.replayed``."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    warmup = args.warmup if flops is None else args.warmup + GRAPH_WARMUP + 1
    for _ in range(warmup):
        step()
    synchronise(device)
    if flops is None:
        flops = count_flops(step)
    synchronise(device)
    seconds = []
    for _ in range(args.windows):
        synchronise(device)
        started = time.perf_counter()
        for _ in range(args.window_steps):
            step()
        synchronise(device)
        seconds.append(time.perf_counter() - started)
    rate = args.window_steps / statistics.median(seconds)
    return {
        "iterations_per_s": rate,
        "flops_per_step": flops,
        "tflops_per_s": flops * rate / 1e12,
        "peak_memory_mib": peak_memory_mb(device),
        "window_seconds": seconds,
    }


def random_faces(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    device = prepare_device(args.device, args.threads, args.precision)
    if args.precision != "fp32" and device.type != "cuda":
        raise SystemExit(f"--precision {args.precision} applies on CUDA only; the CPU runs fp32")
    run = TrainingRun(
        latent_dim=schema_defaults("model")["latent_dim"],
        seed=args.seed,
        device=device,
        precision=args.precision,
        progress=False,
        width=args.width,
    )
    rows: list[dict[str, Any]] = []
    graphs = graphs_on(args.cuda_graphs, device)
    if args.cuda_graphs and not graphs:
        print("CUDA graphs: skipped (they need CUDA; this is the CPU)")
    if "gan" in args.trainers:
        for batch in sorted(args.gan_batch):
            settings = {
                **schema_defaults("gan"),
                "batch_size": batch,
                "critic_steps": args.critic_steps,
            }
            trainer = build_wgan_gp(random_faces(max(4 * batch, 256), args.seed), settings, run)
            figures = measure(trainer.step, device, args)
            label = f"batch {batch}, {args.critic_steps} critic steps"
            rows.append({"trainer": "wgan-gp", "config": label, "images": batch, **figures})
            del trainer
    if "lowshot" in args.trainers:
        for shots in sorted(args.shots):
            for loss in args.losses:
                faces = random_faces(shots, args.seed + 1)
                trainer = build_lowshot(faces, schema_defaults("lowshot"), run, loss=loss)
                figures = measure(trainer.step, device, args)
                label = f"S={shots}, {loss}"
                rows.append({"trainer": "lowshot", "config": label, "images": shots, **figures})
                del trainer
                if graphs:
                    graphed = dataclasses.replace(run, cuda_graphs=True)
                    trainer = build_lowshot(faces, schema_defaults("lowshot"), graphed, loss=loss)
                    replay = measure(trainer.step, device, args, figures["flops_per_step"])
                    label = f"S={shots}, {loss}, CUDA graphs"
                    rows.append({"trainer": "lowshot", "config": label, "images": shots, **replay})
                    del trainer
    for row in rows:
        row["image_steps_per_s"] = row["images"] * row["iterations_per_s"]

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    memory = (
        "CUDA max_memory_allocated"
        if device.type == "cuda"
        else "process peak RSS so far (getrusage)"
    )
    print(
        f"device: {name} ({torch.get_num_threads()} threads), precision {args.precision}, "
        f"width {args.width}; {args.warmup} warm-up steps, median of {args.windows} windows "
        f"x {args.window_steps} steps; torch {torch.__version__}"
    )
    header = (
        f"{'trainer':<8} {'config':<28} {'it/s':>9} {'image-steps/s':>14} "
        f"{'GFLOP/step':>11} {'TFLOP/s':>8} {'peak MiB':>9}"
    )
    print(header)
    for row in rows:
        print(
            f"{row['trainer']:<8} {row['config']:<28} {row['iterations_per_s']:>9.3f} "
            f"{row['image_steps_per_s']:>14.2f} {row['flops_per_step'] / 1e9:>11.2f} "
            f"{row['tflops_per_s']:>8.4f} {row['peak_memory_mib']:>9.0f}"
        )
    print(f"peak MiB: {memory}; image-steps/s = images per step (batch or S) x it/s")
    summary: dict[str, Any] = {
        "device": name,
        "threads": torch.get_num_threads(),
        "precision": args.precision,
        "width": args.width,
        "warmup": args.warmup,
        "windows": args.windows,
        "window_steps": args.window_steps,
        "memory": memory,
        "torch": torch.__version__,
        "rows": rows,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
