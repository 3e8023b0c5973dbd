"""fp32 versus bf16 autocast: training speed and recovery PSNR on real faces.

On the current device (bf16 only changes anything on CUDA) it
1. times WGAN-GP training steps on the GAN corpus in fp32 and in bf16 (iterations/s);
2. pre-trains one low-shot model (``--loss``, ``--shots``) in fp32 and in bf16, timing both
   and printing the final fit PSNR of each;
3. recovers ``--images`` test images with the fp32 low-shot model (``lowshot`` method,
   ``--z-steps`` z steps and ``--joint-steps`` joint steps) for compressed sensing at each
   ``--ratios`` and for colorization, once in fp32 and once in bf16, and prints the mean
   PSNR of each, the mean and largest per-image difference, and the wall time.
The last line is one JSON object with every figure.

    python benchmarks/precision.py --images-h5 results/data/images.h5 \\
        --splits-h5 results/data/splits.h5 --images 20
"""

from __future__ import annotations

import argparse
import json
import logging
from functools import partial
from typing import Any

import numpy as np
import torch
from recovery import timed  # the sibling benchmark script

from lowshot import data, training
from lowshot.config import schema_defaults
from lowshot.devices import log_device, resolve_device
from lowshot.io import LowshotModel
from lowshot.methods import recover
from lowshot.methods.engine import JOINT_STAGE, LATENT_SEARCH
from lowshot.metrics import psnr
from lowshot.problems import GaussianNoise, make_operator, measure, parse_problem
from lowshot.seeds import derive_seed

PRECISIONS = ("fp32", "bf16")
log = logging.getLogger("benchmarks.precision")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-h5", required=True, help="the data stage's images.h5")
    parser.add_argument("--splits-h5", required=True, help="the data stage's splits.h5")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--images", type=int, default=20, help="test images recovered")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.05, 0.2])
    parser.add_argument("--loss", default="mmd", choices=["l2", "mmd"])
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--pretrain-iterations", type=int, default=5000)
    parser.add_argument("--gan-iterations", type=int, default=100)
    parser.add_argument("--z-steps", type=int, default=LATENT_SEARCH["steps"])
    parser.add_argument("--joint-steps", type=int, default=JOINT_STAGE["steps"])
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = resolve_device(args.device)
    log_device(device)
    split = data.load_split(args.splits_h5)
    figures: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    }

    latent_dim = schema_defaults("model")["latent_dim"]
    corpus = data.load_uint8(args.images_h5, split.gan_corpus)
    runs = {
        precision: training.TrainingRun(
            latent_dim=latent_dim,
            seed=args.seed,
            device=device,
            precision=precision,
            progress=False,
        )
        for precision in PRECISIONS
    }
    for precision in PRECISIONS:
        _, seconds = timed(
            partial(
                training.train_wgan_gp,
                corpus,
                {**schema_defaults("gan"), "iterations": args.gan_iterations},
                runs[precision],
            ),
            device,
        )
        figures[f"gan_{precision}_iterations_per_s"] = args.gan_iterations / seconds
        print(f"WGAN-GP {precision}: {args.gan_iterations / seconds:.1f} iterations/s")

    examples = data.load_images(args.images_h5, split.shots[args.shots])
    models = {}
    for precision in PRECISIONS:
        result, seconds = timed(
            partial(
                training.pretrain_lowshot,
                examples,
                {**schema_defaults("lowshot"), "iterations": args.pretrain_iterations},
                runs[precision],
                loss=args.loss,
            ),
            device,
        )
        models[precision] = result
        rate = args.pretrain_iterations / seconds
        fit = result.log[-1]["nearest_psnr"]  # fit_psnr (paired) exists for l2 only
        figures[f"pretrain_{precision}_iterations_per_s"] = rate
        figures[f"pretrain_{precision}_nearest_psnr"] = fit
        print(f"low-shot {args.loss} S={args.shots} {precision}: {rate:.1f} it/s, fit {fit:.2f} dB")

    model = models["fp32"]
    test_rows = split.test[: args.images]
    truth = data.load_images(args.images_h5, test_rows)
    settings = {"z_steps": args.z_steps, "joint_steps": args.joint_steps}
    problems = [parse_problem(f"cs-{ratio:g}") for ratio in args.ratios]
    problems.append(parse_problem("colorization"))
    print(f"{'problem':<14} {'fp32 dB':>8} {'bf16 dB':>8} {'mean |d|':>9} {'max |d|':>8}")
    for problem in problems:
        operator = make_operator(problem, config_seed=args.seed, device=device)
        seeds = [derive_seed(args.seed, "lowshot", problem.name, int(r)) for r in test_rows]
        y = measure(operator, GaussianNoise(), truth.to(device), seeds)
        scores = {}
        for precision in PRECISIONS:
            recovered, seconds = timed(
                partial(
                    recover,
                    "lowshot",
                    operator,
                    y,
                    seeds=seeds,
                    settings=settings,
                    model=LowshotModel(
                        model.generator, model.codes, model.mean, model.covariance, {}
                    ),
                    device=device,
                    precision=precision,
                    progress=False,
                ),
                device,
            )
            scores[precision] = psnr(recovered.images, truth)
            figures[f"{problem.name}_{precision}_psnr"] = float(scores[precision].mean())
            figures[f"{problem.name}_{precision}_seconds"] = seconds
        difference = np.abs(scores["bf16"] - scores["fp32"])
        figures[f"{problem.name}_mean_abs_difference"] = float(difference.mean())
        print(
            f"{problem.name:<14} {scores['fp32'].mean():8.2f} {scores['bf16'].mean():8.2f}"
            f" {difference.mean():9.3f} {difference.max():8.3f}"
        )
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
