"""One tuning procedure for every tuned recovery method, on validation faces.

The paper gives no step sizes. Where a method's settings are not its authors' (README,
"Scientific choices"), they are chosen here, the same way for every method, on the
split's *validation* faces (never the test faces, never trained on: ``split.n_validation``):

- what is tuned: each setting of the method whose key ends in ``lr`` (``lr``, ``z_lr``,
  ``joint_theta_lr``, ``joint_z_lr``, ...), each on its own, on a log scale, and each
  setting whose schema lists its values (``enum``: the untrained network's ``init``);
  ``--tune KIND=KEY,KEY`` names other ones (numbers > 0: log scale); every other setting
  is the config's;
- how: a coordinate (compass) search from the config's settings. In turn, for each tuned
  setting, the incumbent's neighbours along it are run: a number times and divided by
  ``10 ** step`` (``--step``, 1: a factor of 10), a categorical setting's other values.
  A run becomes the incumbent when it diverges on fewer images, or as often but scores
  more than ``--min-gain`` dB (0.2) above it; a number whose neighbours did not improve
  on it has its step halved (factors 10, 3.16, 1.78, ...). Cycles repeat until the method has
  had exactly ``--budget`` runs (distinct settings; a setting met again is not rerun);
- the budget: every method gets the same number of runs (``--budget``, default 6: one
  full cycle for the low-shot recipe, the start and the neighbours of its three rates,
  one of which the paper's bound rules out; for the untrained network the neighbours of
  its rate and its init, and one more), each on the same faces, problems and step
  counts;
- the paper's constraints (a method's ``tuning_bounds``, e.g. the low-shot method's:
  "we optimized the untrained neural network's parameters for a longer period of time
  and with a higher learning rate than our low shot models"): a setting bounded by
  another method's is compared with that method's chosen value when that method is
  tuned in the same sweep (it is tuned first), else with its config value; runs that
  break a bound are never made, and a start that breaks one is moved inside it first
  (divided by ``10 ** step`` until it holds);
- each run recovers the ``--images`` validation faces after the first ``--skip`` on
  each of ``--problems`` (for a method of the low-shot models, with each
  ``--lowshot-model``: one recipe for all of them); its score is the mean PSNR (dB, on
  [0, 1]) over models, images and problems;
- the choice: the last incumbent (a step size that makes the loss or the output
  non-finite is disqualified by the rule above; a gain below ``--min-gain`` keeps the
  earlier settings, so noise does not pick them);
- a method that continues another's result (its class's ``starts_from``, IAGAN from
  CSGM) starts from that method run once per problem with its config settings, so only
  its own stage is tuned;
- a latent search (``search_latent``) met again with the same inputs is not repeated
  (``memoised_latent_searches``: it is deterministic): runs that change only a joint
  stage cost only that stage. The ``seconds`` column is what each run took here.

Measurements are the workflow's: operator seed from (config seed, problem), noise seeds
from (config seed, "noise", problem, image id); a method's draws from (config seed,
"sweep", kind, problem, image id), the same for every run, so runs are paired.

It prints, per method, the runs in order (the tuned settings, mean PSNR, the
per-problem columns, diverged images, seconds; ``*`` marks the choice) and as its last
line one JSON object with everything. ``--score-only`` runs the config's settings as they
are, bounds or not, and nothing else (e.g. old against new defaults on validation faces
not used in the tuning, with ``--skip``).

    .venv/bin/python benchmarks/sweep.py --configfile config.yaml \\
        --images-h5 results/data/images.h5 --splits-h5 results/data/splits.h5 \\
        --lowshot-model results/models/lowshot/l2_S5/model.h5 \\
        --lowshot-model results/models/lowshot/mmd_S10/model.h5 \\
        --methods untrained lowshot --images 2 --budget 6 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import operator
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lowshot import data
from lowshot.config import load_config
from lowshot.devices import prepare_device
from lowshot.io import load_gan, load_lowshot
from lowshot.methods import METHODS, RecoveryResult, method_settings, recover
from lowshot.metrics import psnr
from lowshot.problems import noise_std, observe, parse_problem
from lowshot.seeds import derive_seed

DEFAULT_BUDGET = 6
DEFAULT_STEP = 1.0
# A run replaces the incumbent only when it scores this much more (dB), or diverges on
# fewer images: a smaller gain is within what a few faces can tell apart, and moving on it
# would let noise pick the settings. Ours: the threshold benchmarks/step_doubling.py reads
# as "no change" (0.2 dB).
DEFAULT_MIN_GAIN = 0.2
DEFAULT_PROBLEMS = ("cs-0.05", "colorization")
# A number's log10 step is halved down to this (a factor of 1.04) and no further.
MIN_STEP = 1.0 / 64
BOUND_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
log = logging.getLogger("benchmarks.sweep")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", required=True, help="workflow config (the start)")
    parser.add_argument("--images-h5", required=True, help="the data stage's images.h5")
    parser.add_argument("--splits-h5", required=True, help="a splits.h5 with validation rows")
    parser.add_argument("--gan", default=None, help="generator.h5 (methods with model gan)")
    parser.add_argument(
        "--lowshot-model",
        action="append",
        default=[],
        help="a low-shot model.h5 (methods with model lowshot); repeat for several",
    )
    parser.add_argument(
        "--methods", nargs="+", default=None, help="method kinds (default: recover.methods)"
    )
    parser.add_argument(
        "--tune",
        action="append",
        default=[],
        metavar="KIND=KEY,KEY",
        help="the settings tuned for KIND (default: its *lr and enum settings)",
    )
    parser.add_argument("--problems", nargs="+", default=list(DEFAULT_PROBLEMS))
    parser.add_argument(
        "--budget", type=int, default=DEFAULT_BUDGET, help="runs per method (the same for all)"
    )
    parser.add_argument(
        "--step", type=float, default=DEFAULT_STEP, help="initial log10 step of a number"
    )
    parser.add_argument(
        "--min-gain",
        type=float,
        default=DEFAULT_MIN_GAIN,
        help="dB by which a run must beat the incumbent to replace it",
    )
    parser.add_argument(
        "--score-only",
        action="store_true",
        help="one run per method, the config's settings as they are (no search, no bounds)",
    )
    parser.add_argument("--images", type=int, default=3, help="validation faces recovered")
    parser.add_argument("--skip", type=int, default=0, help="validation faces skipped first")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.images < 1 or args.skip < 0:
        parser.error(f"need --images >= 1 and --skip >= 0, not {args.images}, {args.skip}")
    if args.budget < 1:
        parser.error(f"--budget must be >= 1, not {args.budget}")
    if not math.isfinite(args.step) or args.step <= 0:
        parser.error(f"--step must be finite and > 0, not {args.step}")
    if not math.isfinite(args.min_gain) or args.min_gain < 0:
        parser.error(f"--min-gain must be finite and >= 0, not {args.min_gain}")
    try:
        args.tune = parse_tune(args.tune)
    except ValueError as error:
        parser.error(str(error))
    return args


def parse_tune(items: Sequence[str]) -> dict[str, list[str]]:
    """``["lowshot=z_lr,joint_theta_lr"]`` -> {"lowshot": ["z_lr", "joint_theta_lr"]}."""
    tune: dict[str, list[str]] = {}
    for item in items:
        kind, _, keys = item.partition("=")
        if not kind or not keys:
            raise ValueError(f"--tune takes KIND=KEY[,KEY...], not {item!r}")
        tune[kind] = [key for key in keys.split(",") if key]
    return tune


@dataclass(frozen=True)
class Dimension:
    """A tuned setting: ``key``, and its ``values`` when categorical (None: a number > 0,
    searched on a log scale)."""

    key: str
    values: tuple[Any, ...] | None = None


def dimensions(kind: str, keys: Sequence[str] | None = None) -> list[Dimension]:
    """The tuned settings of method ``kind``: ``keys`` (in that order), or by default every
    setting whose key ends in ``lr`` and every one whose schema has an ``enum``, in the
    order of the method's settings."""
    schema = METHODS[kind].settings
    if keys is None:
        keys = [key for key, spec in schema.items() if key.endswith("lr") or "enum" in spec]
    unknown = [key for key in keys if key not in schema]
    if unknown:
        raise ValueError(f"{kind} has no settings {unknown}; known {sorted(schema)}")
    return [
        Dimension(key, tuple(schema[key]["enum"]) if "enum" in schema[key] else None)
        for key in keys
    ]


def shifted(value: float, step: float, sign: int) -> float:
    """``value`` times 10 ** (sign * step), to 6 significant digits (so 1e-3 / 10 reads
    1e-4)."""
    return float(f"{value * 10.0 ** (sign * step):.6g}")


def neighbours(point: Mapping[str, Any], dim: Dimension, step: float) -> list[Any]:
    """The values of ``dim`` next to the incumbent's: below then above for a number, the
    other values in schema order for a categorical setting."""
    value = point[dim.key]
    if dim.values is not None:
        return [other for other in dim.values if other != value]
    if not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{dim.key} = {value!r}: a log-scale search needs a number > 0")
    return [shifted(value, step, -1), shifted(value, step, +1)]


@dataclass(frozen=True)
class Bound:
    """``key`` ``op`` ``limit`` (op one of ``BOUND_OPERATORS``): a constraint on a setting,
    its ``source`` the text it comes from."""

    key: str
    op: str
    limit: Any
    source: str

    def holds(self, settings: Mapping[str, Any]) -> bool:
        return BOUND_OPERATORS[self.op](settings[self.key], self.limit)

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.limit:g}"


def bounds_of(
    kind: str, config: Mapping[str, Any], chosen: Mapping[str, Mapping[str, Any]]
) -> list[Bound]:
    """Method ``kind``'s ``tuning_bounds`` ({key: (other kind, its key, op, source)}) with
    their limits: the other method's chosen settings when it was tuned in this sweep
    (``chosen``, by kind), else its config settings."""
    found = []
    for key, (other, other_key, op, source) in getattr(METHODS[kind], "tuning_bounds", {}).items():
        settings = chosen.get(other) or config["recover"][other]
        found.append(Bound(key, op, settings[other_key], source))
    return found


def feasible_start(
    start: Mapping[str, Any], bounds: Sequence[Bound], step: float
) -> dict[str, Any]:
    """``start`` moved inside ``bounds``: a number that breaks an upper bound ("<", "<=")
    divided by ``10 ** step`` (a lower bound: multiplied) until it holds."""
    point = dict(start)
    for bound in bounds:
        sign = -1 if bound.op in ("<", "<=") else +1
        for _ in range(64):
            if bound.holds(point):
                break
            point[bound.key] = shifted(point[bound.key], step, sign)
        else:
            raise ValueError(f"cannot move {bound.key} inside {bound}")
    return point


@dataclass
class Run:
    """One run of a method: its settings; per (model, problem) column, per-image PSNR (dB)
    and diverged flags; seconds."""

    method: str
    kind: str
    index: int
    settings: dict[str, Any]
    psnr: dict[str, np.ndarray] = field(default_factory=dict)
    diverged: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n_diverged(self) -> int:
        return int(sum(int(flags.sum()) for flags in self.diverged.values()))

    def column_score(self, column: str) -> float:
        """Mean PSNR of one column's images (NaN when one is not finite)."""
        return float(np.mean(self.psnr[column]))

    def problem_score(self, problem: str) -> float:
        """Mean PSNR of a problem's images over every model."""
        values = [v for c, v in self.psnr.items() if c.rsplit("|", 1)[-1] == problem]
        return float(np.mean(np.concatenate(values)))

    @property
    def score(self) -> float:
        """Mean PSNR over models, images and problems (every column has the same images)."""
        return float(np.mean(np.concatenate(list(self.psnr.values()))))


def beats(run: Run, incumbent: Run, min_gain: float = DEFAULT_MIN_GAIN) -> bool:
    """Whether ``run`` replaces ``incumbent``: it diverges on fewer images, or on as many
    and scores more than ``min_gain`` dB (>= 0) above it (a non-finite score never does)."""
    if run.n_diverged != incumbent.n_diverged:
        return run.n_diverged < incumbent.n_diverged
    score = run.score if math.isfinite(run.score) else -math.inf
    best = incumbent.score if math.isfinite(incumbent.score) else -math.inf
    return score > best + min_gain


def choose(runs: Sequence[Run], min_gain: float = DEFAULT_MIN_GAIN) -> Run:
    """The chosen run: the incumbent after comparing every run in order with ``beats``
    (the first run the start), as ``compass_search`` moved; ties keep the earlier run."""
    incumbent = runs[0]
    for run in runs[1:]:
        if beats(run, incumbent, min_gain):
            incumbent = run
    return incumbent


def compass_search(
    evaluate: Callable[[dict[str, Any]], Run],
    start: Mapping[str, Any],
    dims: Sequence[Dimension],
    budget: int,
    *,
    step: float = DEFAULT_STEP,
    min_gain: float = DEFAULT_MIN_GAIN,
    allowed: Callable[[Mapping[str, Any]], bool] = lambda settings: True,
) -> list[Run]:
    """The coordinate search of the module docstring: exactly ``budget`` calls of
    ``evaluate`` on distinct settings (fewer only when no allowed neighbour is left), the
    first on ``start``; a run replaces the incumbent when it ``beats`` it by ``min_gain``.
    Returns the runs in order; ``choose(runs, min_gain)`` is the last incumbent."""
    runs: list[Run] = []
    seen: set[str] = set()

    def run(settings: dict[str, Any]) -> Run:
        seen.add(settings_key(settings))
        runs.append(evaluate(settings))
        return runs[-1]

    best = run(dict(start))
    steps = {dim.key: step for dim in dims if dim.values is None}
    while len(runs) < budget:
        evaluated = len(runs)
        for dim in dims:
            improved = False
            for value in neighbours(best.settings, dim, steps.get(dim.key, step)):
                candidate = {**best.settings, dim.key: value}
                if len(runs) >= budget:
                    break
                if settings_key(candidate) in seen or not allowed(candidate):
                    continue
                if beats(result := run(candidate), best, min_gain):
                    best, improved = result, True
            if dim.key in steps and not improved:
                steps[dim.key] /= 2
        stuck = len(runs) == evaluated
        if stuck and all(value < MIN_STEP for value in steps.values()):
            break
    return runs


@contextlib.contextmanager
def memoised_latent_searches() -> Iterator[dict[str, Any]]:
    """Inside the block, ``lowshot.methods.engine.search_latent`` (in the engine and in
    every module that imported it) returns a stored result when called again with the
    same inputs: the same network values, operator, measurements, starts, steps,
    learning rate and options. The search is deterministic, so a run that changes only a
    later stage (a joint stage's learning rate) reuses its latent search instead of
    repeating it; results are unchanged. Yields the store (key -> StageResult); the
    modules get their function back on exit."""
    import hashlib
    import sys

    import torch

    from lowshot.methods import engine

    original = engine.search_latent
    store: dict[str, Any] = {}

    def digest(*tensors: torch.Tensor) -> str:
        hasher = hashlib.sha256()
        for tensor in tensors:
            hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return hasher.hexdigest()

    def search_latent(generator, operator_, y, starts, **options):  # type: ignore[no-untyped-def]
        key = json.dumps(
            [
                digest(*generator.state_dict().values()),
                id(operator_),
                digest(y, *starts),
                {k: v for k, v in options.items() if k not in ("progress", "desc")},
            ],
            default=str,
        )
        if key not in store:
            store[key] = original(generator, operator_, y, starts, **options)
        return store[key]

    patched = [
        m for m in list(sys.modules.values()) if getattr(m, "search_latent", None) is original
    ]
    for module in patched:
        module.search_latent = search_latent  # type: ignore[attr-defined]
    try:
        yield store
    finally:
        for module in patched:
            module.search_latent = original  # type: ignore[attr-defined]


def settings_key(settings: Mapping[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


@dataclass
class Candidate:
    """One tuned method: kind, workflow names (one per model), base settings, models."""

    kind: str
    names: list[str]
    settings: dict[str, Any]
    models: list[Any]
    starts_from: str | None

    @property
    def name(self) -> str:
        """The label of its runs: its kind, or its one instance's name."""
        return self.names[0] if len(self.names) == 1 else self.kind


def load_models(args: argparse.Namespace) -> dict[str, list[Any]]:
    """The trained models the arguments name, by ``RecoveryMethod.model`` value."""
    models: dict[str, list[Any]] = {}
    if args.gan is not None:
        models["gan"] = [load_gan(args.gan)]
    if args.lowshot_model:
        models["lowshot"] = [load_lowshot(path) for path in args.lowshot_model]
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
    config: Mapping[str, Any], kinds: Sequence[str], models: Mapping[str, list[Any]]
) -> tuple[list[Candidate], dict[str, str]]:
    """The methods to tune (those a bound refers to first) and, by kind, why others are
    skipped."""
    found, skipped = [], {}
    for kind in kinds:
        cls = METHODS[kind]  # ValueError naming the known kinds
        needs = cls.model
        if needs is not None and needs not in models:
            option = {"gan": "--gan", "lowshot": "--lowshot-model"}.get(needs, "a model")
            skipped[kind] = f"needs its {needs} model ({option} not given)"
            continue
        own = models.get(needs, [None]) if needs is not None else [None]
        names = [instance_name(kind, config, model) for model in own]
        try:
            settings = method_settings(config, names[0])
        except ValueError:  # an instance name the method's parse does not take
            settings = dict(config["recover"][kind])
        found.append(Candidate(kind, names, settings, own, getattr(cls, "starts_from", None)))
    # A method bounded by another is tuned after it, so that its bound is the choice.
    tuned = {c.kind for c in found}
    found.sort(
        key=lambda c: any(
            other in tuned for other, *_ in getattr(METHODS[c.kind], "tuning_bounds", {}).values()
        )
    )
    return found, skipped


def format_settings(settings: Mapping[str, Any], keys: Sequence[str]) -> str:
    return " ".join(
        f"{key}={settings[key]:.3g}"
        if isinstance(settings[key], float)
        else f"{key}={settings[key]}"
        for key in keys
    )


def print_runs(
    name: str, runs: Sequence[Run], chosen: Run, keys: Sequence[str], problems: Sequence[str]
) -> None:
    """One method's runs: index, mean and per-problem PSNR, diverged images, seconds,
    the tuned settings; ``*`` marks the choice."""
    columns = [f"{p:>{max(len(p), 7)}}" for p in problems]
    print(f"{name}:")
    print(
        f"  {'run':>3}  {'mean dB':>7}  {'  '.join(columns)}  {'diverged':>8}  "
        f"{'seconds':>7}  settings"
    )
    for run in runs:
        mark = "*" if run is chosen else " "
        cells = [f"{run.problem_score(p):>{max(len(p), 7)}.2f}" for p in problems]
        print(
            f"  {run.index:>3}  {run.score:>7.2f}{mark} {'  '.join(cells)}  "
            f"{run.n_diverged:>8d}  {run.seconds:>7.1f}  {format_settings(run.settings, keys)}"
        )


def finite(value: float) -> float | None:
    """JSON has no NaN: non-finite numbers become null."""
    return float(value) if math.isfinite(value) else None


def tune_all(
    args: argparse.Namespace,
    config: Mapping[str, Any],
    methods: Sequence[Candidate],
    models: Mapping[str, list[Any]],
    specs: Mapping[str, Any],
    recover_all: Callable[..., tuple[RecoveryResult, float]],
    truth: Any,
    skipped: dict[str, str],
) -> tuple[
    dict[str, list[Run]],
    dict[str, Run],
    dict[str, list[str]],
    dict[str, list[Bound]],
    dict[str, str],
]:
    """Tune every method in order (``compass_search``): its runs, its chosen run, its tuned
    keys and bounds (by method name), and the starts of the methods that continue another
    one. ``recover_all(kind, problem, settings, model, start)`` -> (result, seconds);
    ``skipped`` gains the methods whose start failed."""
    all_runs: dict[str, list[Run]] = {}
    chosen: dict[str, Run] = {}
    chosen_settings: dict[str, dict[str, Any]] = {}
    tuned_keys: dict[str, list[str]] = {}
    bounds: dict[str, list[Bound]] = {}
    start_of: dict[str, str] = {}
    for method in methods:
        dims = dimensions(method.kind, args.tune.get(method.kind))
        tuned_keys[method.name] = [dim.key for dim in dims]
        # starts: (model index, problem) -> the start method's result, or None
        starts: dict[tuple[int, str], Any] = {
            (m, p): None for m in range(len(method.models)) for p in specs
        }
        if method.starts_from is not None:
            first = method.starts_from
            try:
                first_cls = METHODS[first]
                first_model = models[first_cls.model][0] if first_cls.model else None
                first_settings = dict(config["recover"][first])
                for problem in specs:
                    result, _ = recover_all(first, problem, first_settings, first_model, None)
                    for m in range(len(method.models)):
                        starts[m, problem] = result
            except Exception as error:  # a failed start skips its method only
                skipped[method.name] = (
                    f"its start ({first}) failed: {type(error).__name__}: {error}"
                )
                print(f"note: {method.name} skipped: {skipped[method.name]}")
                continue
            start_of[method.name] = f"{first} with its config settings"
        bounds[method.name] = bounds_of(method.kind, config, chosen_settings)

        def evaluate(
            settings: dict[str, Any], method: Candidate = method, starts: dict = starts
        ) -> Run:
            run = Run(method.name, method.kind, len(all_runs.get(method.name, [])), settings)
            for m, (name, model) in enumerate(zip(method.names, method.models, strict=True)):
                for problem in specs:
                    result, seconds = recover_all(
                        method.kind, problem, settings, model, starts[m, problem]
                    )
                    column = f"{name}|{problem}"
                    run.seconds += seconds
                    run.psnr[column] = psnr(result.images, truth)
                    run.diverged[column] = np.asarray(result.diverged, bool) | ~np.isfinite(
                        run.psnr[column]
                    )
            all_runs.setdefault(method.name, []).append(run)
            print(
                f"{method.name} run {run.index}: {run.score:.2f} dB "
                f"({format_settings(settings, tuned_keys[method.name])}; {run.seconds:.0f} s)",
                flush=True,
            )
            return run

        limits = bounds[method.name]
        if args.score_only:
            chosen[method.name] = evaluate(dict(method.settings))
            chosen_settings[method.kind] = chosen[method.name].settings
            continue
        start = feasible_start(method.settings, limits, args.step)
        runs = compass_search(
            evaluate,
            start,
            dims,
            args.budget,
            step=args.step,
            min_gain=args.min_gain,
            allowed=lambda s, limits=limits: all(b.holds(s) for b in limits),
        )
        chosen[method.name] = choose(runs, args.min_gain)
        chosen_settings[method.kind] = chosen[method.name].settings

    return all_runs, chosen, tuned_keys, bounds, start_of


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.configfile)
    seed = int(config["seed"])
    device = prepare_device(args.device, args.threads, config["precision"])
    kinds = list(args.methods or config["recover"]["methods"])
    specs = {name: parse_problem(name) for name in args.problems}

    truth, image_ids = data.load_validation(args.images_h5, args.splits_h5, args.skip + args.images)
    truth, image_ids = truth[args.skip :], list(image_ids[args.skip :])
    if len(image_ids) < args.images:
        print(f"note: {args.splits_h5} holds {len(image_ids)} validation images after the skip")
    if not image_ids:
        raise SystemExit("no validation faces left after --skip")

    models = load_models(args)
    methods, skipped = candidates(config, kinds, models)
    for kind, why in skipped.items():
        print(f"note: {kind} skipped: {why}")

    measurements = {
        name: observe(
            name,
            truth,
            image_ids,
            config_seed=seed,
            noise_std=noise_std(config, name),
            device=device,
        )
        for name in specs
    }

    def recover_all(
        kind: str, problem: str, settings: Mapping[str, Any], model: Any, start: Any
    ) -> tuple[RecoveryResult, float]:
        """Recover the validation faces of ``problem`` -> (result, seconds)."""
        operator_, y = measurements[problem]
        started = time.perf_counter()
        result = recover(
            kind,
            operator_,
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
        return result, time.perf_counter() - started

    with memoised_latent_searches():
        all_runs, chosen, tuned_keys, bounds, start_of = tune_all(
            args, config, methods, models, specs, recover_all, truth, skipped
        )
    print()
    print(
        f"tuning: {len(image_ids)} validation faces ({', '.join(image_ids)}), problems "
        f"{', '.join(specs)}, "
        + (
            "the config's settings only"
            if args.score_only
            else f"budget {args.budget} runs per method, initial step x{10**args.step:g}"
        )
        + f", config {args.configfile}, device {device}, seed {seed}"
    )
    for name, what in start_of.items():
        print(f"{name} starts from {what}, run once per problem")
    for name, limits in bounds.items():
        for bound in limits:
            print(f"{name}: {bound} ({bound.source})")
    for method in methods:
        if len(method.names) > 1:
            print(f"{method.name}: one recipe for {', '.join(method.names)} (score: their mean)")
    print()
    for name, runs in all_runs.items():
        print_runs(name, runs, chosen[name], tuned_keys[name], list(specs))
        print()
    print("chosen (* above):")
    for name, run in chosen.items():
        start_run = all_runs[name][0]
        print(
            f"  {name}: run {run.index}, {format_settings(run.settings, tuned_keys[name])} "
            f"({run.score:.2f} dB, {run.score - start_run.score:+.2f} dB vs run 0)"
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
        "budget": 1 if args.score_only else args.budget,
        "score_only": args.score_only,
        "step": args.step,
        "models": {
            "gan": None if args.gan is None else str(Path(args.gan)),
            "lowshot": [str(Path(p)) for p in args.lowshot_model],
        },
        "starts": start_of,
        "bounds": {name: [str(b) for b in limits] for name, limits in bounds.items()},
        "tuned": tuned_keys,
        "runs": [
            {
                "method": run.method,
                "kind": run.kind,
                "index": run.index,
                "settings": {key: run.settings[key] for key in tuned_keys[run.method]},
                "mean_psnr": finite(run.score),
                "psnr": {p: finite(run.problem_score(p)) for p in specs},
                "psnr_per_image": {c: [finite(v) for v in run.psnr[c].tolist()] for c in run.psnr},
                "diverged": run.n_diverged,
                "seconds": run.seconds,
            }
            for runs in all_runs.values()
            for run in runs
        ],
        "chosen": {
            name: {
                "index": run.index,
                "settings": {key: run.settings[key] for key in tuned_keys[name]},
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
