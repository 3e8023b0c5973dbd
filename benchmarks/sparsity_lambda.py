"""Choose the sparsity method's lam on validation faces: PSNR over a log grid of lam.

Loads the validation faces of a data store (``results/data/images.h5``, rows
``load_split(results/data/splits.h5).validation``; never the test faces), measures them
with the pipeline's Gaussian compressed sensing at each ratio (the operator of config
seed ``--seed``, noise as a job draws it), and runs the sparsity method's FISTA
(``lowshot.methods.sparsity``) for every lam of the grid at once, lam given as a
fraction of lam_max = ||W A^T y||_inf (the method's ``lam`` setting). It prints, per
ratio, the mean PSNR (dB, on [0, 1]) over the faces for every lam after each checkpoint
of the steps, then the mean over the ratios after the last step, and chooses the lam
with the highest one. When the split has no validation rows it falls back to the first
GAN-corpus rows and says so (training faces: a worse, but still non-test, choice).

    .venv/bin/python benchmarks/sparsity_lambda.py
    .venv/bin/python benchmarks/sparsity_lambda.py --faces 5 --steps 200 --ratios 0.1

The last line is one JSON object: the chosen lam, the table and the settings used.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from lowshot import data, jobs, metrics, problems
from lowshot.devices import prepare_device
from lowshot.methods import resolve_settings
from lowshot.methods.sparsity import (
    LIPSCHITZ_MARGIN,
    dct_matrix,
    fista,
    images_from_coefficients,
    lam_max,
    operator_norm_squared,
)
from lowshot.seeds import derive_seed

log = logging.getLogger("benchmarks.sparsity_lambda")
DEFAULT_LAMS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-h5", default="results/data/images.h5", type=Path)
    parser.add_argument("--splits-h5", default="results/data/splits.h5", type=Path)
    parser.add_argument(
        "--faces", type=int, default=None, help="the first this many validation faces (all)"
    )
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.5])
    parser.add_argument(
        "--lams", type=float, nargs="+", default=list(DEFAULT_LAMS), help="lam / lam_max"
    )
    parser.add_argument("--steps", type=int, default=1000, help="FISTA steps")
    parser.add_argument(
        "--checkpoints", type=int, nargs="+", default=[100, 250, 500], help="steps reported"
    )
    parser.add_argument("--noise-std", type=float, default=0.0, help="config.yaml: 0")
    parser.add_argument("--seed", type=int, default=0, help="the config seed")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser.parse_args(argv)


def validation_faces(
    images_h5: Path, splits_h5: Path, count: int | None
) -> tuple[torch.Tensor, list[str], str]:
    """The first ``count`` (all: None) validation faces (N, 3, 64, 64) in [-1, 1], their
    ids, and which rows they are."""
    for path in (images_h5, splits_h5):
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run the workflow's data stage first")
    split = data.load_split(splits_h5)
    rows, what = split.validation, "validation rows"
    if rows.size == 0:
        rows, what = split.gan_corpus, "GAN-corpus rows (NO validation rows in the split)"
        count = 20 if count is None else count
        log.warning("%s has no validation rows: using the first GAN-corpus rows", splits_h5)
    rows = rows[:count] if count is not None else rows
    if rows.size == 0:
        raise SystemExit(f"{splits_h5}: no faces to validate on")
    return data.load_images(images_h5, rows), data.load_ids(images_h5, rows), what


def sweep(
    problem: str,
    faces: torch.Tensor,
    ids: list[str],
    lams: list[float],
    args: argparse.Namespace,
    device: torch.device,
) -> dict[int, np.ndarray]:
    """Mean PSNR (len(lams),) after each checkpoint step, all lams in one FISTA batch."""
    truth = faces.to(device)
    operator, y = problems.observe(
        problem, truth, ids, config_seed=args.seed, noise_std=args.noise_std, device=device
    )
    seeds = jobs.method_seeds(args.seed, "sparsity", problem, ids)
    power = resolve_settings("sparsity", None)["power_iterations"]
    basis = dct_matrix().to(device=device, dtype=torch.float32)
    norm2 = operator_norm_squared(operator, [derive_seed(s, "power") for s in seeds], power, device)
    # Row g * F + f: lam g, face f.
    grid = len(lams)
    fractions = torch.tensor(lams, device=device).repeat_interleave(len(ids))
    lam = fractions * lam_max(operator, y, basis).repeat(grid)
    checkpoints = sorted({*args.checkpoints, args.steps} & set(range(1, args.steps + 1)))
    table: dict[int, np.ndarray] = {}

    def observe(step: int, c: torch.Tensor) -> None:
        if step in checkpoints:
            images = images_from_coefficients(c, basis).cpu()
            psnr = metrics.psnr(images, truth.cpu().repeat(grid, 1, 1, 1))
            table[step] = psnr.reshape(grid, len(ids)).mean(axis=1)

    started = time.perf_counter()
    fista(
        operator,
        y.repeat(grid, 1),
        lam,
        LIPSCHITZ_MARGIN * norm2.repeat(grid),
        args.steps,
        basis=basis,
        observe=observe,
    )
    log.info("%s: %d rows x %d steps in %.0f s", problem, lam.numel(), args.steps,
             time.perf_counter() - started)  # fmt: skip
    return table


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = prepare_device(args.device, args.threads)
    faces, ids, what = validation_faces(args.images_h5, args.splits_h5, args.faces)
    print(f"{len(ids)} faces: {what} of {args.images_h5}; device {device}")
    lams = sorted(args.lams)
    final: dict[str, list[float]] = {}
    for ratio in args.ratios:
        problem = f"cs-{ratio:g}"
        table = sweep(problem, faces, ids, lams, args, device)
        print(f"\n{problem}: mean PSNR (dB) by lam / lam_max (rows) and FISTA steps (columns)")
        print("lam       " + "".join(f"{step:>9d}" for step in table))
        for g, fraction in enumerate(lams):
            print(f"{fraction:<10.0e}" + "".join(f"{table[s][g]:9.2f}" for s in table))
        final[problem] = [float(v) for v in table[args.steps]]
    mean = np.mean([final[p] for p in final], axis=0)
    best = int(np.argmax(mean))
    print(f"\nafter {args.steps} steps: mean PSNR (dB) over {', '.join(final)}")
    print("lam       " + "".join(f"{p:>9s}" for p in final) + "     mean")
    for g, fraction in enumerate(lams):
        row = "".join(f"{final[p][g]:9.2f}" for p in final)
        print(f"{fraction:<10.0e}{row}{mean[g]:9.2f}" + ("  <- chosen" if g == best else ""))
    print(f"\nchosen lam = {lams[best]:g} x lam_max ({what})")
    summary = {
        "chosen_lam": lams[best],
        "lams": lams,
        "psnr": final,
        "faces": len(ids),
        "rows": what,
        "steps": args.steps,
        "noise_std": args.noise_std,
        "seed": args.seed,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
