"""One step-size choice for every recovery method, made on validation faces.

The paper gives no step sizes; the defaults are the reference codes' (README). This script
checks them the same way for every method, on the split's *validation* faces (never the
test faces, never trained on: ``split.n_validation``):

- every setting of a method whose key ends in ``lr`` (``lr``, ``z_lr``, ``joint_theta_lr``,
  ``joint_z_lr``, ...) is multiplied by one common factor from ``--factors``, so every
  method gets the same budget of runs (default 5: 0.1 0.3 1 3 10 times the config's);
  every other setting (step counts, restarts, ...) is the config's;
- each run recovers the first ``--images`` validation faces on each of ``--problems``;
  its score is the mean PSNR (dB, on [0, 1]) over images and problems;
- a method that continues another's result (its class's ``starts_from``, IAGAN from
  CSGM) starts from that method run once per problem with its own, unscaled settings, so
  only the method's own stage is swept;
- per method the chosen factor is the one with the fewest diverged images (a step size
  that makes the loss or the output non-finite is disqualified), then the highest score.

Measurements are the workflow's: operator seed from (config seed, problem), noise seeds
from (config seed, "noise", problem, image id); a method's draws from (config seed,
"sweep", kind, problem, image id), the same for every factor, so factors are paired.

It prints the table it chose from (method x factor: mean PSNR, the per-problem columns,
diverged images, seconds; ``*`` marks the chosen factor), the chosen learning rates per
method, and as its last line one JSON object with everything.

    .venv/bin/python benchmarks/sweep.py --configfile configs/quick.yaml \\
        --images-h5 results/data/images.h5 --splits-h5 results/data/splits.h5 \\
        --gan results/models/gan/generator.h5 \\
        --lowshot-model results/models/lowshot/mmd_S10/model.h5 --images 4 --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lowshot import data
from lowshot.config import load_config
from lowshot.devices import prepare_device
from lowshot.io import load_gan, load_lowshot
from lowshot.methods import METHODS, RecoveryResult, method_settings, recover
from lowshot.metrics import psnr
from lowshot.problems import noise_std, observe, parse_problem
from lowshot.seeds import derive_seed

DEFAULT_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)
DEFAULT_PROBLEMS = ("cs-0.1", "colorization")
log = logging.getLogger("benchmarks.sweep")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", required=True, help="workflow config (base settings)")
    parser.add_argument("--images-h5", required=True, help="the data stage's images.h5")
    parser.add_argument("--splits-h5", required=True, help="a splits.h5 with validation rows")
    parser.add_argument("--gan", default=None, help="generator.h5 (methods with model gan)")
    parser.add_argument(
        "--lowshot-model", default=None, help="one low-shot model.h5 (methods with model lowshot)"
    )
    parser.add_argument(
        "--methods", nargs="+", default=None, help="method kinds (default: recover.methods)"
    )
    parser.add_argument("--problems", nargs="+", default=list(DEFAULT_PROBLEMS))
    parser.add_argument(
        "--factors",
        type=float,
        nargs="+",
        default=list(DEFAULT_FACTORS),
        help="common multipliers of every *lr setting",
    )
    parser.add_argument("--images", type=int, default=4, help="validation faces recovered")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error(f"--images must be >= 1, not {args.images}")
    if any(not math.isfinite(f) or f <= 0 for f in args.factors):
        parser.error(f"--factors must be finite and > 0, not {args.factors}")
    if len(set(args.factors)) != len(args.factors):
        parser.error(f"--factors repeats a value: {args.factors}")
    return args


def lr_keys(settings: Mapping[str, Any]) -> list[str]:
    """The settings a sweep scales: keys ending in ``lr`` (sorted)."""
    return sorted(key for key in settings if key.endswith("lr"))


def scaled(settings: Mapping[str, Any], factor: float) -> dict[str, Any]:
    """``settings`` with every ``*lr`` value multiplied by ``factor`` (rounded to 12
    significant digits, so 0.1 x 3 reads 0.3); the rest unchanged."""
    return {
        key: float(f"{value * factor:.12g}") if key.endswith("lr") else value
        for key, value in settings.items()
    }


@dataclass
class Candidate:
    """One method instance of the sweep: its kind, workflow name, base settings, model."""

    kind: str
    name: str
    settings: dict[str, Any]
    model: Any
    starts_from: str | None


@dataclass
class Run:
    """One (method, factor) run: per problem, per-image PSNR (dB) and diverged flags."""

    method: str
    kind: str
    factor: float
    settings: dict[str, Any]
    psnr: dict[str, np.ndarray] = field(default_factory=dict)
    diverged: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n_diverged(self) -> int:
        return int(sum(int(flags.sum()) for flags in self.diverged.values()))

    def problem_score(self, problem: str) -> float:
        """Mean PSNR of the problem's images (NaN when one is not finite)."""
        return float(np.mean(self.psnr[problem]))

    @property
    def score(self) -> float:
        """Mean PSNR over images and problems (every problem has the same images)."""
        return float(np.mean(np.concatenate(list(self.psnr.values()))))


def choose(runs: Sequence[Run]) -> Run:
    """The chosen run: fewest diverged images, then highest finite score, then the factor
    nearest 1 (on a log scale)."""

    def key(run: Run) -> tuple[int, float, float]:
        score = run.score if math.isfinite(run.score) else -math.inf
        return (run.n_diverged, -score, abs(math.log(run.factor)))

    return min(runs, key=key)


def load_models(args: argparse.Namespace) -> dict[str, Any]:
    """The trained models the arguments name, by ``RecoveryMethod.model`` value."""
    models: dict[str, Any] = {}
    if args.gan is not None:
        models["gan"] = load_gan(args.gan)
    if args.lowshot_model is not None:
        models["lowshot"] = load_lowshot(args.lowshot_model)
    return models


def instance_name(kind: str, config: Mapping[str, Any], model: Any) -> str:
    """The workflow name of ``kind``'s instance: for a method of the low-shot model, the
    config's instance with the model file's loss and shots; otherwise the kind."""
    cls = METHODS[kind]
    if cls.model != "lowshot" or model is None:
        return kind
    loss, shots = model.attrs.get("loss"), model.attrs.get("shots")
    for name in cls.method_names(config):
        spec = cls.parse(name)
        if spec is not None and spec.loss == loss and spec.shots == shots:
            return name
    guess = f"{kind}-{loss}-S{shots}"
    return guess if cls.parse(guess) is not None else kind


def candidates(
    config: Mapping[str, Any], kinds: Sequence[str], models: Mapping[str, Any]
) -> tuple[list[Candidate], dict[str, str]]:
    """The methods to sweep and, by kind, why others are skipped."""
    found, skipped = [], {}
    for kind in kinds:
        cls = METHODS[kind]  # ValueError naming the known kinds
        needs = cls.model
        if needs is not None and needs not in models:
            option = {"gan": "--gan", "lowshot": "--lowshot-model"}.get(needs, "a model")
            skipped[kind] = f"needs its {needs} model ({option} not given)"
            continue
        model = models.get(needs) if needs is not None else None
        name = instance_name(kind, config, model)
        try:
            settings = method_settings(config, name)
        except ValueError:  # an instance name the method's parse does not take
            settings = dict(config["recover"][kind])
        if not lr_keys(settings):
            skipped[kind] = f"has no setting ending in 'lr' to scale ({sorted(settings)})"
            continue
        start = getattr(cls, "starts_from", None)
        found.append(Candidate(kind, name, settings, model, start))
    return found, skipped


def format_lrs(settings: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={settings[key]:.3g}" for key in lr_keys(settings))


def print_table(runs: Sequence[Run], chosen: Mapping[str, Run], problems: Sequence[str]) -> None:
    """The method x factor table: mean and per-problem PSNR, diverged images, seconds."""
    width = max([len("method"), *(len(run.method) for run in runs)])
    columns = [f"{p:>{max(len(p), 7)}}" for p in problems]
    print(
        f"{'method':<{width}}  {'factor':>6}  {'mean dB':>7}  {'  '.join(columns)}  "
        f"{'diverged':>8}  {'seconds':>7}  learning rates"
    )
    for run in runs:
        best = "*" if chosen.get(run.method) is run else " "
        cells = [f"{run.problem_score(p):>{max(len(p), 7)}.2f}" for p in problems]
        print(
            f"{run.method:<{width}}  {run.factor:>6g}  {run.score:>7.2f}{best} "
            f"{'  '.join(cells)}  {run.n_diverged:>8d}  {run.seconds:>7.1f}  "
            f"{format_lrs(run.settings)}"
        )


def finite(value: float) -> float | None:
    """JSON has no NaN: non-finite numbers become null."""
    return float(value) if math.isfinite(value) else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.configfile)
    seed = int(config["seed"])
    device = prepare_device(args.device, args.threads, config["precision"])
    kinds = list(args.methods or config["recover"]["methods"])
    specs = {name: parse_problem(name) for name in args.problems}

    truth, image_ids = data.load_validation(args.images_h5, args.splits_h5, args.images)
    if len(image_ids) < args.images:
        print(f"note: {args.splits_h5} holds {len(image_ids)} validation images; using all")

    models = load_models(args)
    methods, skipped = candidates(config, kinds, models)
    for kind, why in skipped.items():
        print(f"note: {kind} skipped: {why}")

    measurements: dict[str, tuple[Any, torch.Tensor]] = {}
    for name in specs:
        measurements[name] = observe(
            name,
            truth,
            image_ids,
            config_seed=seed,
            noise_std=noise_std(config, name),
            device=device,
        )

    # (kind, problem, settings) -> (result, seconds it took)
    cache: dict[tuple[str, str, str], tuple[RecoveryResult, float]] = {}

    def run_method(
        kind: str,
        problem: str,
        settings: Mapping[str, Any],
        model: Any,
        start: RecoveryResult | None,
    ) -> tuple[RecoveryResult, float]:
        """Recover the validation faces of ``problem`` -> (result, seconds). Cached by
        kind, problem and settings: a method's x1 run is the start its followers need."""
        key = (kind, problem, json.dumps(settings, sort_keys=True, default=str))
        if key not in cache:
            operator, y = measurements[problem]
            started = time.perf_counter()
            result = recover(
                kind,
                operator,
                y,
                seeds=[derive_seed(seed, "sweep", kind, problem, i) for i in image_ids],
                settings=settings,
                model=model,
                start=start,
                latent_dim=int(config["model"]["latent_dim"]),
                device=device,
                precision=config["precision"],
                progress=False,
            )
            cache[key] = (result, time.perf_counter() - started)
        return cache[key]

    runs: list[Run] = []
    start_of: dict[str, str] = {}
    for method in methods:
        starts: dict[str, RecoveryResult | None] = dict.fromkeys(specs)
        if method.starts_from is not None:
            first = method.starts_from
            try:
                first_cls = METHODS[first]
                first_model = models[first_cls.model] if first_cls.model is not None else None
                first_settings = dict(config["recover"][first])
                for problem in specs:
                    starts[problem] = run_method(first, problem, first_settings, first_model, None)[
                        0
                    ]
            except Exception as error:  # a failed start skips its method only
                skipped[method.name] = (
                    f"its start ({first}) failed: {type(error).__name__}: {error}"
                )
                print(f"note: {method.name} skipped: {skipped[method.name]}")
                continue
            start_of[method.name] = (
                f"{first} with its config settings ({format_lrs(first_settings)})"
            )
        for factor in args.factors:
            settings = scaled(method.settings, factor)
            run = Run(method.name, method.kind, factor, settings)
            for problem in specs:
                result, seconds = run_method(
                    method.kind, problem, settings, method.model, starts[problem]
                )
                run.seconds += seconds
                run.psnr[problem] = psnr(result.images, truth)
                run.diverged[problem] = np.asarray(result.diverged, bool) | ~np.isfinite(
                    run.psnr[problem]
                )
            runs.append(run)

    by_method: dict[str, list[Run]] = {}
    for run in runs:
        by_method.setdefault(run.method, []).append(run)
    chosen = {name: choose(group) for name, group in by_method.items()}

    print()
    print(
        f"step-size sweep: {len(image_ids)} validation faces ({', '.join(image_ids)}), "
        f"problems {', '.join(specs)}, config {args.configfile}, device {device}, seed {seed}"
    )
    for name, what in start_of.items():
        print(f"{name} starts from {what}, run once per problem")
    print()
    print_table(runs, chosen, list(specs))
    print()
    print("chosen learning rates (* above):")
    for name, run in chosen.items():
        base = next((r for r in by_method[name] if r.factor == 1), None)
        gain = f", {run.score - base.score:+.2f} dB vs x1" if base is not None else ""
        print(
            f"  {name}: x{run.factor:g} -> {format_lrs(run.settings)} "
            f"(config: {format_lrs(scaled(run.settings, 1 / run.factor))}; "
            f"{run.score:.2f} dB{gain})"
        )
    for name, why in skipped.items():
        print(f"  {name}: skipped ({why})")

    summary: dict[str, Any] = {
        "config": str(args.configfile),
        "splits": str(args.splits_h5),
        "device": str(device),
        "seed": seed,
        "images": list(image_ids),
        "problems": list(specs),
        "factors": list(args.factors),
        "models": {
            "gan": None if args.gan is None else str(Path(args.gan)),
            "lowshot": None if args.lowshot_model is None else str(Path(args.lowshot_model)),
        },
        "starts": start_of,
        "runs": [
            {
                "method": run.method,
                "kind": run.kind,
                "factor": run.factor,
                "learning_rates": {key: run.settings[key] for key in lr_keys(run.settings)},
                "mean_psnr": finite(run.score),
                "psnr": {p: finite(run.problem_score(p)) for p in specs},
                "psnr_per_image": {p: [finite(v) for v in run.psnr[p].tolist()] for p in specs},
                "diverged": run.n_diverged,
                "seconds": run.seconds,
            }
            for run in runs
        ],
        "chosen": {
            name: {
                "factor": run.factor,
                "learning_rates": {key: run.settings[key] for key in lr_keys(run.settings)},
                "mean_psnr": finite(run.score),
            }
            for name, run in chosen.items()
        },
        "skipped": skipped,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
