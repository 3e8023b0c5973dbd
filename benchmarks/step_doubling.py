"""Are the step counts long enough? Every method's validation PSNR with all steps doubled.

The check: on validation faces, doubling every step count (training and recovery) should
change each method's mean PSNR by less than ``--tolerance`` (0.2 dB); a larger change
means the config stops its optimisations before they converge (or, for a drop, that
longer runs over-fit the measurements) and its numbers depend on the budget.

For every method instance the config runs (``recover.methods``; the low-shot models and
learned regularisation once per loss and S, as in the workflow) and each problem of
``--problems``, it recovers the split's first ``--images`` validation faces (never test
faces, never trained on: ``split.n_validation``):

- ``x1``: with the config's settings and the trained models of ``--results`` (the
  workflow's files: ``models/gan/generator.h5``, ``models/lowshot/{loss}_S{shots}[_r{r}]/
  model.h5``, ``models/learned_reg/S{shots}/stats.h5``);
- ``x2 recovery``: every integer setting whose key ends in ``steps`` (``steps``,
  ``z_steps``, ``joint_steps``, ...) times ``--factor``, the same models;
- ``x2 all`` (only with ``--retrain DIR``): the recovery settings of ``x2 recovery`` with
  models retrained with their training step counts times ``--factor``
  (``gan.iterations``, ``lowshot.iterations``, the learned prior's fitting ``steps``)
  into DIR by the workflow's own jobs (a model already in DIR is reused). That is the
  whole training grid again, twice as long: meant for a GPU (``--device cuda``), hours
  for the paper's config; on a CPU only with a quick config.

A method that continues another's result (IAGAN from CSGM) starts from that method's
result of the same column. Measurements and seeds are the workflow's: operator from
(config seed, problem), noise from (config seed, "noise", problem, image id), the
method's draws from ``lowshot.jobs.method_seeds``; every column uses the same ones, so
the differences are paired. Instances whose model file is missing are skipped (listed).

Prints the table (method: mean PSNR over images and problems per column, the
differences, diverged images, whether every difference is within the tolerance; the
per-problem differences), and as its last line one JSON object with everything.

    .venv/bin/python benchmarks/step_doubling.py --configfile configs/quick.yaml \\
        --results results --images 4 --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lowshot import data, jobs
from lowshot.config import load_config, runtime_settings
from lowshot.devices import prepare_device
from lowshot.methods import (
    METHODS,
    MethodSpec,
    RecoveryResult,
    method_settings,
    parse_method,
    recover,
    sort_key,
)
from lowshot.methods.learned_reg import fit_settings
from lowshot.methods.lowshot import model_folder
from lowshot.metrics import psnr
from lowshot.problems import noise_std, observe

DEFAULT_PROBLEMS = ("cs-0.1", "colorization")
BASE, RECOVERY, ALL = "x1", "x2 recovery", "x2 all"
log = logging.getLogger("benchmarks.step_doubling")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", required=True, help="workflow config (x1 settings)")
    parser.add_argument(
        "--results", default="results", help="the workflow's results folder (data/, models/)"
    )
    parser.add_argument(
        "--methods", nargs="+", default=None, help="method kinds (default: recover.methods)"
    )
    parser.add_argument("--problems", nargs="+", default=list(DEFAULT_PROBLEMS))
    parser.add_argument("--images", type=int, default=4, help="validation faces recovered")
    parser.add_argument("--factor", type=int, default=2, help="step-count multiplier")
    parser.add_argument("--tolerance", type=float, default=0.2, help="dB")
    parser.add_argument(
        "--retrain",
        default=None,
        metavar="DIR",
        help="also retrain the models with --factor times the training steps into DIR "
        "(expensive: a GPU job) and add the 'x2 all' column",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error(f"--images must be >= 1, not {args.images}")
    if args.factor < 2:
        parser.error(f"--factor must be >= 2, not {args.factor}")
    if not math.isfinite(args.tolerance) or args.tolerance <= 0:
        parser.error(f"--tolerance must be > 0, not {args.tolerance}")
    return args


def step_keys(settings: Mapping[str, Any]) -> list[str]:
    """The settings that count steps: integer values whose key ends in ``steps``."""
    return sorted(
        key
        for key, value in settings.items()
        if key.endswith("steps") and isinstance(value, int) and not isinstance(value, bool)
    )


def multiplied(settings: Mapping[str, Any], factor: int) -> dict[str, Any]:
    """``settings`` with every step count times ``factor``; the rest unchanged."""
    keys = set(step_keys(settings))
    return {key: value * factor if key in keys else value for key, value in settings.items()}


def model_file(models: Path, kind: str, spec: MethodSpec) -> Path:
    """Where the workflow keeps the model of ``kind`` (``RecoveryMethod.model``) for
    ``spec`` (the paths of rules/common.smk's MODEL_FILES)."""
    if kind == "gan":
        return models / "gan" / "generator.h5"
    if kind == "lowshot":
        return models / "lowshot" / model_folder(spec) / "model.h5"
    if kind == "learned_reg":
        return models / "learned_reg" / f"S{spec.shots}" / "stats.h5"
    raise ValueError(f"no model file known for model kind {kind!r}")


def retrain(
    kind: str,
    spec: MethodSpec,
    config: Mapping[str, Any],
    args: argparse.Namespace,
    runtime: jobs.Runtime,
    folder: Path,
) -> Path:
    """Train the model of ``kind`` for ``spec`` with ``--factor`` times the training steps
    into ``folder`` (the workflow's layout) by the workflow's job; reused when present."""
    models = folder / "models"
    target = model_file(models, kind, spec)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    inputs = (Path(args.results) / "data" / "images.h5", Path(args.results) / "data" / "splits.h5")
    checkpoints = folder / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if kind == "gan":
        settings = {**config["gan"], "iterations": config["gan"]["iterations"] * args.factor}
        jobs.train_gan_job(
            *inputs,
            generator_out=target,
            losses_out=target.parent / "losses.csv",
            samples_out=target.parent / "samples.png",
            validation_out=target.parent / "validation.csv",
            checkpoint=checkpoints / "gan.pt",
            settings=settings,
            runtime=runtime,
            progress=False,
        )
    elif kind == "lowshot":
        section = config["lowshot"]
        jobs.pretrain_lowshot_job(
            *inputs,
            loss=spec.loss,
            shots=spec.shots,
            model_out=target,
            losses_out=target.parent / "losses.csv",
            checkpoint=checkpoints / f"{model_folder(spec)}.pt",
            settings={**section, "iterations": section["iterations"] * args.factor},
            runtime=runtime,
            replicate=spec.replicate or 1,
            progress=False,
        )
    elif kind == "learned_reg":
        jobs.fit_learned_reg_job(
            *inputs,
            shots=spec.shots,
            stats_out=target,
            fits_out=target.parent / "fits.csv",
            settings=multiplied(fit_settings(config["recover"]["learned_reg"]), args.factor),
            runtime=runtime,
            progress=False,
        )
    else:
        raise ValueError(f"cannot retrain model kind {kind!r}")
    print(f"retrained {target} ({time.perf_counter() - started:.0f} s)")
    return target


@dataclass
class Row:
    """One method instance: per column and problem, per-image PSNR and diverged flags."""

    name: str
    kind: str
    settings: dict[str, Any]
    psnr: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    diverged: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def mean(self, column: str, problem: str | None = None) -> float:
        """Mean PSNR over the images (of one problem, or of all) of a column."""
        values = self.psnr[column]
        chosen = [values[problem]] if problem is not None else list(values.values())
        return float(np.mean(np.concatenate(chosen)))

    def n_diverged(self, column: str) -> int:
        return int(sum(int(flags.sum()) for flags in self.diverged[column].values()))


def finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.configfile)
    seed = int(config["seed"])
    device = prepare_device(args.device, args.threads, config["precision"])
    latent_dim = int(config["model"]["latent_dim"])
    results = Path(args.results)
    images_h5, splits_h5 = results / "data" / "images.h5", results / "data" / "splits.h5"
    truth, image_ids = data.load_validation(images_h5, splits_h5, args.images)
    if len(image_ids) < args.images:
        print(f"note: {splits_h5} holds {len(image_ids)} validation faces; using all")
    kinds = list(args.methods or config["recover"]["methods"])
    specs = sorted(
        (parse_method(name) for kind in kinds for name in METHODS[kind].method_names(config)),
        key=sort_key,
    )
    columns = [BASE, RECOVERY] + ([ALL] if args.retrain else [])
    runtime = jobs.Runtime(
        **{**runtime_settings(config), "device": str(device.type)}, threads=args.threads
    )

    measurements: dict[str, tuple[Any, torch.Tensor]] = {}
    for problem in args.problems:
        measurements[problem] = observe(
            problem,
            truth,
            image_ids,
            config_seed=seed,
            noise_std=noise_std(config, problem),
            device=device,
        )

    skipped: dict[str, str] = {}
    loaded: dict[Path, Any] = {}

    def model_for(spec: MethodSpec, column: str) -> Any:
        """The trained model a column's recovery of ``spec`` uses (None: needs none)."""
        kind = METHODS[spec.kind].model
        if kind is None:
            return None
        if column == ALL:
            path = retrain(kind, spec, config, args, runtime, Path(args.retrain))
        else:
            path = model_file(results / "models", kind, spec)
        if path not in loaded:
            if not path.exists():
                raise FileNotFoundError(f"its model {path} is missing")
            loaded[path] = jobs.MODEL_LOADERS[kind](path)
        return loaded[path]

    cache: dict[tuple[str, str, str], tuple[RecoveryResult, float]] = {}

    def run(spec: MethodSpec, problem: str, column: str) -> tuple[RecoveryResult, float]:
        """``spec``'s recovery of the validation faces of ``problem`` in ``column``
        (cached: a method's result is the start of the one that continues it)."""
        key = (spec.name, problem, column)
        if key not in cache:
            cls = METHODS[spec.kind]
            settings = method_settings(config, spec.name)
            if column != BASE:
                settings = multiplied(settings, args.factor)
            start = None
            if cls.starts_from is not None:
                first = parse_method(METHODS[cls.starts_from].method_names(config)[0])
                start = run(first, problem, column)[0]
            operator, y = measurements[problem]
            started = time.perf_counter()
            result = recover(
                spec.kind,
                operator,
                y,
                seeds=jobs.method_seeds(seed, spec.name, problem, image_ids),
                settings=settings,
                model=model_for(spec, column),
                start=start,
                latent_dim=latent_dim,
                device=device,
                precision=config["precision"],
                progress=False,
            )
            cache[key] = (result, time.perf_counter() - started)
        return cache[key]

    table: list[Row] = []
    for spec in specs:
        settings = method_settings(config, spec.name)
        row = Row(spec.name, spec.kind, settings)
        try:
            for column in columns:
                row.psnr[column], row.diverged[column] = {}, {}
                row.seconds[column] = 0.0
                for problem in args.problems:
                    result, seconds = run(spec, problem, column)
                    values = psnr(result.images, truth)
                    row.psnr[column][problem] = values
                    row.diverged[column][problem] = np.asarray(result.diverged, bool) | ~(
                        np.isfinite(values)
                    )
                    row.seconds[column] += seconds
        except (FileNotFoundError, ValueError) as error:
            skipped[spec.name] = f"{type(error).__name__}: {error}"
            print(f"note: {spec.name} skipped: {skipped[spec.name]}")
            continue
        table.append(row)

    print()
    print(
        f"step doubling (x{args.factor}): {len(image_ids)} validation faces "
        f"({', '.join(image_ids)}), problems {', '.join(args.problems)}, config "
        f"{args.configfile}, models {results / 'models'}"
        + (f" and retrained {args.retrain}" if args.retrain else "")
        + f", device {device}, seed {seed}"
    )
    print_table(table, columns, args.problems, args.tolerance)
    for name, why in skipped.items():
        print(f"  {name}: skipped ({why})")

    summary: dict[str, Any] = {
        "config": str(args.configfile),
        "results": str(results),
        "retrain": args.retrain,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "seed": seed,
        "factor": args.factor,
        "tolerance_db": args.tolerance,
        "images": image_ids,
        "problems": list(args.problems),
        "methods": [
            {
                "method": row.name,
                "kind": row.kind,
                "step_settings": {key: row.settings[key] for key in step_keys(row.settings)},
                "mean_psnr": {column: finite(row.mean(column)) for column in columns},
                "difference_db": {
                    column: finite(row.mean(column) - row.mean(BASE)) for column in columns[1:]
                },
                "psnr": {
                    column: {p: finite(row.mean(column, p)) for p in args.problems}
                    for column in columns
                },
                "psnr_per_image": {
                    column: {
                        p: [finite(v) for v in row.psnr[column][p].tolist()] for p in args.problems
                    }
                    for column in columns
                },
                "diverged": {column: row.n_diverged(column) for column in columns},
                "seconds": row.seconds,
                "within_tolerance": within(row, columns, args.tolerance),
            }
            for row in table
        ],
        "skipped": skipped,
    }
    print(json.dumps(summary))
    return summary


def within(row: Row, columns: Sequence[str], tolerance: float) -> bool:
    """Every doubled column's mean within ``tolerance`` dB of x1 (and finite)."""
    base = row.mean(BASE)
    return all(abs(row.mean(column) - base) < tolerance for column in columns[1:])


def print_table(
    table: Sequence[Row], columns: Sequence[str], problems: Sequence[str], tolerance: float
) -> None:
    """Method x column mean PSNR, the differences to x1, per-problem differences."""
    width = max([len("method"), *(len(row.name) for row in table)])
    cells: list[tuple[str, Callable[[Row], str]]] = [(BASE, lambda row: f"{row.mean(BASE):.2f}")]
    for column in columns[1:]:
        cells.append((column, lambda row, c=column: f"{row.mean(c):.2f}"))
        cells.append((f"d({column})", lambda row, c=column: f"{row.mean(c) - row.mean(BASE):+.2f}"))
    last = columns[-1]
    for problem in problems:
        cells.append(
            (
                f"d {problem}",
                lambda row, p=problem: f"{row.mean(last, p) - row.mean(BASE, p):+.2f}",
            )
        )
    cells.append(("diverged", lambda row: "/".join(str(row.n_diverged(c)) for c in columns)))
    cells.append(
        (f"<{tolerance:g} dB", lambda row: "yes" if within(row, columns, tolerance) else "NO")
    )
    widths = [max(len(title), 7) for title, _ in cells]
    print(
        f"{'method':<{width}}  "
        + "  ".join(f"{t:>{w}}" for (t, _), w in zip(cells, widths, strict=True))
    )
    for row in table:
        print(
            f"{row.name:<{width}}  "
            + "  ".join(f"{cell(row):>{w}}" for (_, cell), w in zip(cells, widths, strict=True))
        )
    print(
        f"mean PSNR (dB) over images and problems; d(...): minus x1; 'd <problem>': {last} "
        "minus x1 on that problem; diverged: per column"
    )


if __name__ == "__main__":
    main()
