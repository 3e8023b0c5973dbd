"""IAGAN with and without its back-projection, on validation faces.

IAGAN's code (github shadyabh/IAGAN, main.py) returns the image-adaptive result
back-projected, x + A⁺(y - A x) (``I_IA_BP``); ``recover.iagan.back_project`` does the
same (default true). This script shows what it changes: for each of ``--problems`` it
recovers the first ``--images`` validation faces of a split with CSGM then IAGAN as the
workflow runs them (measurements, operators and per-image seeds are the workflow's; the
recipes are the config's ``recover.csgm`` and ``recover.iagan``, ``--csgm-steps`` and
``--joint-steps`` override their step counts for a quick look on a CPU), IAGAN with
``back_project: never``, then back-projects that same result exactly as IAGAN does with
the setting on (``lowshot.methods.iagan.back_projected``): the two columns are paired.

It prints the PSNR table (CSGM, IAGAN without and with the back-projection, the paired
gain and its smallest per-image value, the mean relative misfit ||A x - y|| / ||y|| of
IAGAN's result before the projection, which makes A x = y) and, as its last line, one
JSON object.

    .venv/bin/python benchmarks/iagan_back_projection.py --configfile config.yaml \\
        --generator results/models/gan/generator.h5 --images-h5 results/data/images.h5 \\
        --splits-h5 results/data/splits.h5 --images 4 --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import numpy as np

from lowshot import data
from lowshot.config import load_config
from lowshot.devices import prepare_device
from lowshot.io import load_gan
from lowshot.jobs import method_seeds
from lowshot.methods import method_settings, recover
from lowshot.methods.engine import StageResult
from lowshot.methods.iagan import back_projected
from lowshot.metrics import psnr
from lowshot.problems import noise_std, observe

DEFAULT_PROBLEMS = ("cs-0.1", "colorization")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", required=True, help="workflow config (recipes, seed)")
    parser.add_argument("--generator", required=True, help="a trained GAN's generator.h5")
    parser.add_argument("--images-h5", required=True, help="the data stage's images.h5")
    parser.add_argument("--splits-h5", required=True, help="a splits.h5 with validation rows")
    parser.add_argument("--problems", nargs="+", default=list(DEFAULT_PROBLEMS))
    parser.add_argument("--images", type=int, default=4, help="validation faces per problem")
    parser.add_argument("--csgm-steps", type=int, default=None, help="override csgm steps")
    parser.add_argument("--joint-steps", type=int, default=None, help="override joint_steps")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of torch")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.configfile)
    seed = int(config["seed"])
    device = prepare_device(args.device, args.threads)
    truth, image_ids = data.load_validation(args.images_h5, args.splits_h5, args.images)
    generator = load_gan(args.generator)
    csgm_settings = method_settings(config, "csgm")
    iagan_settings = {**method_settings(config, "iagan"), "back_project": "never"}
    if args.csgm_steps is not None:
        csgm_settings["steps"] = args.csgm_steps
    if args.joint_steps is not None:
        iagan_settings["joint_steps"] = args.joint_steps
    common = {
        "model": generator,
        "latent_dim": int(config["model"]["latent_dim"]),
        "device": device,
        "precision": config["precision"],
        "progress": False,
    }

    rows = []
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
        csgm = recover(
            "csgm",
            operator,
            y,
            seeds=method_seeds(seed, "csgm", problem, image_ids),
            settings=csgm_settings,
            **common,
        )
        plain = recover(
            "iagan",
            operator,
            y,
            seeds=method_seeds(seed, "iagan", problem, image_ids),
            settings=iagan_settings,
            start=csgm,
            **common,
        )
        recovery_seconds = time.perf_counter() - started
        started = time.perf_counter()
        projected = back_projected(StageResult.from_result(plain, device), operator, y)
        projection_seconds = time.perf_counter() - started
        scores = {
            "csgm": psnr(csgm.images, truth),
            "iagan": psnr(plain.images, truth),
            "iagan_bp": psnr(projected.images.cpu(), truth),
        }
        gain = scores["iagan_bp"] - scores["iagan"]
        # How far the image-adaptive result is from meeting y: ||A x - y|| / ||y||.
        misfit = np.sqrt(2 * plain.measurement_loss) / y.norm(dim=1).double().cpu().numpy()
        rows.append(
            {
                "problem": problem,
                **{name: [float(v) for v in values] for name, values in scores.items()},
                "mean": {name: float(np.mean(values)) for name, values in scores.items()},
                "gain": float(np.mean(gain)),
                "min_gain": float(np.min(gain)),
                "misfit": [float(v) for v in misfit],
                "recovery_seconds": recovery_seconds,
                "projection_seconds": projection_seconds,
            }
        )
        print(f"{problem}: done in {recovery_seconds:.0f} s", flush=True)

    print()
    print(
        f"IAGAN back-projection: {len(image_ids)} validation faces ({', '.join(image_ids)}), "
        f"csgm steps {csgm_settings['steps']} x {csgm_settings['restarts']} restarts, "
        f"joint steps {iagan_settings['joint_steps']}, device {device}, seed {seed}"
    )
    print(
        f"{'problem':>14}  {'CSGM':>6}  {'IAGAN':>6}  {'IAGAN+BP':>8}  {'gain':>6}  "
        f"{'min gain':>8}  {'misfit':>7}  BP seconds"
    )
    for row in rows:
        mean = row["mean"]
        print(
            f"{row['problem']:>14}  {mean['csgm']:>6.2f}  {mean['iagan']:>6.2f}  "
            f"{mean['iagan_bp']:>8.2f}  {row['gain']:>+6.2f}  {row['min_gain']:>+8.2f}  "
            f"{np.mean(row['misfit']):>7.1e}  {row['projection_seconds']:.3f}"
        )
    summary = {
        "config": str(args.configfile),
        "generator": str(args.generator),
        "images": list(image_ids),
        "csgm": csgm_settings,
        "iagan": iagan_settings,
        "rows": rows,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
