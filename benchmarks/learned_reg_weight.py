"""The learned regulariser's weight (CS-DIP's lambda), compared on validation faces.

CS-DIP tuned lambda per dataset (its utils.py, lambdas_lr: x-ray 100, retina 1000,
MNIST 0); faces are none of those. This script scores a list of weights on the split's
*validation* faces (never the test faces, never trained on):

- the prior: the statistics file given by ``--stats``, or fitted here to the split's
  ``--shots``-shot subset exactly as the rule fit_learned_reg fits it
  (``lowshot.training.learned_reg``; ``--save-stats`` keeps it);
- every weight recovers the first ``--images`` validation faces of each of
  ``--problems`` with the config's ``recover.learned_reg`` settings (``--steps``
  overrides the step count of the fit and of the recoveries, for a quick look on a CPU);
  weight 0 is the untrained baseline itself;
- measurements are the workflow's (operator seed from (config seed, problem), noise
  seeds from (config seed, "noise", problem, image id)); the networks' draws come from
  (config seed, "learned_reg_weight", problem, image id), the same for every weight, so
  the weights are compared on paired starts;
- the chosen weight has the fewest diverged images, then the highest mean PSNR over
  images and problems.

It prints the table it chose from (weight: mean PSNR, per-problem PSNR, its paired gain
over weight 0, diverged images, seconds; ``*`` marks the choice) and, as its last line,
one JSON object with everything.

    .venv/bin/python benchmarks/learned_reg_weight.py --configfile configs/quick.yaml \\
        --images-h5 results/data/images.h5 --splits-h5 results/data/splits.h5 \\
        --shots 10 --images 4 --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lowshot import data
from lowshot.config import load_config
from lowshot.devices import prepare_device
from lowshot.io import LearnedRegStats, load_learned_reg, save_learned_reg
from lowshot.methods import recover
from lowshot.methods.learned_reg import LearnedReg, fit_settings
from lowshot.metrics import psnr
from lowshot.problems import noise_std, observe
from lowshot.seeds import derive_seed
from lowshot.training import TrainingRun
from lowshot.training.learned_reg import fit_learned_reg

DEFAULT_WEIGHTS = (0.0, 1.0, 10.0, 100.0, 1000.0)
DEFAULT_PROBLEMS = ("cs-0.1", "colorization")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", required=True, help="workflow config (base settings)")
    parser.add_argument("--images-h5", required=True, help="the data stage's images.h5")
    parser.add_argument("--splits-h5", required=True, help="a splits.h5 with validation rows")
    parser.add_argument("--stats", default=None, help="a stats.h5 (else fitted here)")
    parser.add_argument("--shots", type=int, default=10, help="S of the fit (without --stats)")
    parser.add_argument("--save-stats", default=None, help="write the fitted stats.h5 here")
    parser.add_argument("--weights", type=float, nargs="+", default=list(DEFAULT_WEIGHTS))
    parser.add_argument("--problems", nargs="+", default=list(DEFAULT_PROBLEMS))
    parser.add_argument("--images", type=int, default=4, help="validation faces per problem")
    parser.add_argument(
        "--steps", type=int, default=None, help="override recover.learned_reg.steps"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of torch")
    args = parser.parse_args(argv)
    if any(not math.isfinite(w) or w < 0 for w in args.weights):
        parser.error(f"--weights must be finite and >= 0, got {args.weights}")
    return args


@dataclass
class Row:
    """One weight's run: per problem, per-image PSNR (dB) and diverged flags."""

    weight: float
    psnr: dict[str, np.ndarray]
    diverged: dict[str, np.ndarray]
    seconds: float

    @property
    def score(self) -> float:
        return float(np.mean(np.concatenate(list(self.psnr.values()))))

    @property
    def n_diverged(self) -> int:
        return int(sum(int(flags.sum()) for flags in self.diverged.values()))


def choose(rows: Sequence[Row]) -> Row:
    """Fewest diverged images, then the highest finite mean PSNR, then the smaller weight."""
    return min(
        rows,
        key=lambda r: (r.n_diverged, -r.score if math.isfinite(r.score) else math.inf, r.weight),
    )


def prior(
    args: argparse.Namespace, config: Mapping[str, Any], device: torch.device
) -> LearnedRegStats:
    """The statistics of ``--stats``, or fitted here to the ``--shots`` subset."""
    if args.stats is not None:
        return load_learned_reg(args.stats)
    split = data.load_split(args.splits_h5)
    if args.shots not in split.shots:
        raise SystemExit(
            f"{args.splits_h5} has no {args.shots}-shot subset ({sorted(split.shots)})"
        )
    settings = fit_settings(config["recover"]["learned_reg"])
    if args.steps is not None:
        settings["steps"] = args.steps
    run = TrainingRun(
        latent_dim=int(config["model"]["latent_dim"]),
        seed=derive_seed(int(config["seed"]), "fit_learned_reg"),
        device=device,
        precision=config["precision"],
        progress=False,
    )
    started = time.perf_counter()
    result = fit_learned_reg(
        data.load_images(args.images_h5, split.shots[args.shots]), settings, run
    )
    fits = [row["fit_psnr"] for row in result.log]
    print(
        f"fitted {args.shots} examples in {time.perf_counter() - started:.0f} s "
        f"(fit PSNR {np.mean(fits):.2f} dB, min {np.min(fits):.2f})"
    )
    if args.save_stats is not None:
        save_learned_reg(args.save_stats, result.stats, {"seed": run.seed})
    return result.stats


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.configfile)
    seed = int(config["seed"])
    device = prepare_device(args.device, args.threads, config["precision"])
    truth, image_ids = data.load_validation(args.images_h5, args.splits_h5, args.images)
    stats = prior(args, config, device)
    settings = dict(config["recover"]["learned_reg"])
    if args.steps is not None:
        settings["steps"] = args.steps
        settings["window"] = min(settings["window"], args.steps)

    rows: list[Row] = []
    for weight in args.weights:
        row = Row(weight, {}, {}, 0.0)
        for problem in args.problems:
            operator, y = observe(
                problem,
                truth,
                image_ids,
                config_seed=seed,
                noise_std=noise_std(config, problem),
                device=device,
            )
            started = time.perf_counter()
            result = recover(
                LearnedReg.kind,
                operator,
                y,
                seeds=[derive_seed(seed, "learned_reg_weight", problem, i) for i in image_ids],
                settings={**settings, "weight": weight},
                model=stats,
                latent_dim=int(config["model"]["latent_dim"]),
                device=device,
                precision=config["precision"],
                progress=False,
            )
            row.seconds += time.perf_counter() - started
            row.psnr[problem] = psnr(result.images, truth)
            row.diverged[problem] = result.diverged | ~np.isfinite(row.psnr[problem])
        rows.append(row)
        print(f"weight {weight:g}: {row.score:.2f} dB ({row.seconds:.0f} s)", flush=True)

    chosen = choose(rows)
    baseline = next((r for r in rows if r.weight == 0), None)
    print()
    print(
        f"learned_reg weight: {len(image_ids)} validation faces ({', '.join(image_ids)}), "
        f"S={stats.layer_means.shape[0]}, steps {settings['steps']}, window "
        f"{settings['window']}, device {device}, seed {seed}"
    )
    header = "  ".join(f"{p:>12}" for p in args.problems)
    print(f"{'weight':>8}  {'mean dB':>7}  {header}  {'vs 0 (dB)':>9}  {'diverged':>8}  seconds")
    for row in rows:
        mark = "*" if row is chosen else " "
        cells = "  ".join(f"{float(np.mean(row.psnr[p])):>12.2f}" for p in args.problems)
        gain = f"{row.score - baseline.score:>+9.2f}" if baseline is not None else f"{'':>9}"
        print(
            f"{row.weight:>8g}  {row.score:>7.2f}{mark} {cells}  {gain}  {row.n_diverged:>8d}  "
            f"{row.seconds:.0f}"
        )
    summary = {
        "config": str(args.configfile),
        "images": list(image_ids),
        "problems": list(args.problems),
        "shots": int(stats.layer_means.shape[0]),
        "settings": settings,
        "chosen_weight": chosen.weight,
        "rows": [
            {
                "weight": row.weight,
                "mean_psnr": row.score if math.isfinite(row.score) else None,
                "psnr": {p: [float(v) for v in row.psnr[p]] for p in args.problems},
                "diverged": row.n_diverged,
                "seconds": row.seconds,
            }
            for row in rows
        ],
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
