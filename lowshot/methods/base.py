"""What every recovery method shares: the class it subclasses, its spec, the registry.

A method is one ``RecoveryMethod`` subclass in one file of this package (or a plugin)
decorated with ``@register``. The class owns everything about the method:

- ``kind``: its name in the registry, in ``recover.methods`` and its config section
  ``recover.<kind>``; ``settings``: the JSON-schema properties of that section, each with
  its default (the one home of the method's defaults; stages that several methods run
  share their recipe from ``lowshot.methods.engine``);
- ``starts_from``: another method whose result (same problem, same images) it continues
  (IAGAN continues CSGM's: one edge of the workflow), or None;
- ``method_names(config)`` and ``parse(name)``: the workflow names of its instances
  (one, its kind, unless the method is a family such as ``lowshot-<loss>-S<shots>``);
- ``model``: the trained model its jobs need: None, ``"gan"`` (the WGAN-GP generator)
  or ``"lowshot"`` (the low-shot model of the instance's loss and shots);
- ``method_label``/``line_style``/``order``: its name, line and place in tables and figures;
- ``run``: the recovery itself, batched over the images of a job.

Seeds: the caller passes one seed per image, derived from (config seed, the method's
``seed_name``, problem name, image id); a method derives its sub-streams with
``derive_seed(seed, ...)`` and draws on the CPU (``lowshot.seeds.seeded_generator``), so
results are the same on every device and do not depend on which images share a job.
Instances that share a ``seed_name`` share their draws: every low-shot model starts
from the same eps per (problem, image), so that comparisons across S and loss are paired.
"""

from __future__ import annotations

import abc
import copy
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from lowshot.devices import check_precision
from lowshot.methods.engine import RecoveryResult, StageResult
from lowshot.problems import Operator
from lowshot.registry import Registry

log = logging.getLogger(__name__)

METHODS: Registry[type[RecoveryMethod]] = Registry("method", "lowshot.methods")
register = METHODS.register


@dataclass(frozen=True)
class RecoveryTask:
    """One job's recovery, as a method's ``run`` receives it.

    operator: the problem's operator on the device; y: (N, m) float32 measurements on the
    device; seeds: one per image; settings: resolved (defaults filled in); model: what the
    method's ``model`` names, loaded (or None); latent_dim: size of z when no model fixes
    it; precision: "fp32", "tf32" or "bf16" (``lowshot.devices.set_precision``);
    progress: show progress bars; start: the result of the ``starts_from`` method for the
    same images (or None); cuda_graphs: the engine's steps as CUDA graphs (on CUDA);
    noise_std: the std (>= 0, in image units) of the noise in y, which a method may use
    (IAGAN back-projects only noiseless measurements by default).
    """

    operator: Operator
    y: torch.Tensor
    seeds: list[int]
    settings: Mapping[str, Any]
    model: Any
    latent_dim: int
    precision: str
    progress: bool
    start: RecoveryResult | None = None
    cuda_graphs: bool = False
    noise_std: float = 0.0

    @property
    def options(self) -> dict[str, Any]:
        """The engine's keyword options (``optimise_latent``/``optimise_joint``)."""
        return {
            "precision": self.precision,
            "cuda_graphs": self.cuda_graphs,
            "progress": self.progress,
        }


@dataclass(frozen=True)
class MethodSpec:
    """One method instance: ``kind`` (its class), ``name`` (the workflow's wildcard) and,
    for methods fitted to S examples with a loss, ``loss`` and ``shots``.

    ``replicate``: for a method fitted to S examples (``shots`` given), which independent
    draw of the shots and seeds it is (``lowshot.replicates``): 1, the paper's single
    model per S, unless its name says another; None for methods fitted to no shots. A
    spec with shots and no replicate is replicate 1 (so a plugin's specs need not say it).
    """

    kind: str
    name: str
    loss: str | None = None
    shots: int | None = None
    replicate: int | None = None

    def __post_init__(self) -> None:
        if self.shots is None:
            if self.replicate is not None:
                raise ValueError(f"{self.name}: a replicate without shots ({self.replicate})")
        elif self.replicate is None:
            object.__setattr__(self, "replicate", 1)
        elif self.replicate < 1:
            raise ValueError(f"{self.name}: replicate must be >= 1, not {self.replicate}")


# Replicate r >= 2 in names (replicate 1, the paper's model, has no suffix, so a name
# never has two spellings): a whole number from 2 on, without leading zeros.
REPLICATE_NUMBER = r"[2-9]|[1-9][0-9]+"
# The suffix of a replicate's folder ("" or "_r<r>"), as a regular expression (the
# Snakemake wildcard constraint of rule pretrain_lowshot's ``replicate``).
REPLICATE_FOLDER_SUFFIX = rf"(_r({REPLICATE_NUMBER}))?"


def replicate_suffix(replicate: int, separator: str) -> str:
    """The suffix of replicate ``replicate`` (>= 1) in names: "" for replicate 1 (the
    paper's model keeps its names), ``<separator>r<replicate>`` otherwise ("-" in method
    names, "_" in model folders)."""
    if replicate < 1:
        raise ValueError(f"replicate must be >= 1, not {replicate}")
    return "" if replicate == 1 else f"{separator}r{replicate}"


def replicate_of_suffix(suffix: str) -> int:
    """The replicate of a folder suffix (``REPLICATE_FOLDER_SUFFIX``, e.g. rule
    pretrain_lowshot's ``replicate`` wildcard): "" -> 1, "_r<r>" -> r (r >= 2). Raises
    ValueError for anything else."""
    if not re.fullmatch(REPLICATE_FOLDER_SUFFIX, suffix):
        raise ValueError(f"not a replicate suffix: {suffix!r} ('' or '_r<r>' with r >= 2)")
    return int(suffix[2:]) if suffix else 1


class RecoveryMethod(abc.ABC):
    """Base class of recovery methods (module docstring). Methods are stateless: every
    hook is a classmethod."""

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    settings: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    starts_from: ClassVar[str | None] = None
    model: ClassVar[str | None] = None
    label: ClassVar[str] = ""
    style: ClassVar[Mapping[str, Any]] = {}
    # Position in tables and figures (smaller first); part of recover.methods by default.
    order: ClassVar[int] = 100
    enabled_by_default: ClassVar[bool] = True

    @classmethod
    def method_names(cls, config: Mapping[str, Any]) -> list[str]:
        """The instances a (validated) config runs; by default the one named ``kind``."""
        del config
        return [cls.kind]

    @classmethod
    def parse(cls, name: str) -> MethodSpec | None:
        """The spec of ``name`` when it names an instance of this method, else None."""
        return MethodSpec(cls.kind, name) if name == cls.kind else None

    @classmethod
    def seed_name(cls, spec: MethodSpec) -> str:
        """The name the per-image seeds derive from: instances with the same one make the
        same random draws. By default the instance's own name."""
        return spec.name

    @classmethod
    def method_label(cls, spec: MethodSpec) -> str:
        """The instance's name in tables and figures."""
        del spec
        return cls.label or cls.kind

    @classmethod
    def line_style(cls, spec: MethodSpec, siblings: Sequence[MethodSpec]) -> dict[str, Any]:
        """Matplotlib style of the instance's line in Figure 1 (``siblings``: every
        instance of this kind in the figure)."""
        del spec, siblings
        return dict(cls.style)

    @classmethod
    def sort_key(cls, spec: MethodSpec) -> tuple[Any, ...]:
        """Order among the instances of this kind."""
        return (spec.name,)

    @classmethod
    def restarts(cls, settings: Mapping[str, Any]) -> int:
        """Random initialisations tried per image (a method that ``starts_from`` another
        reports that one's)."""
        del settings
        return 1

    @classmethod
    @abc.abstractmethod
    def run(cls, task: RecoveryTask) -> StageResult:
        """Recover the N images of ``task.y`` on its device, batched."""


def resolve_settings(kind: str, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """``settings`` over the defaults of method ``kind``; unknown keys are an error."""
    cls = METHODS[kind]
    defaults = {key: copy.deepcopy(schema["default"]) for key, schema in cls.settings.items()}
    given = dict(settings or {})
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(
            f"{kind} settings: unknown keys {sorted(unknown)}; known {sorted(defaults)}"
        )
    return {**defaults, **given}


def recover(
    method: str,
    operator: Operator,
    y: torch.Tensor,
    *,
    seeds: Sequence[int],
    settings: Mapping[str, Any] | None = None,
    model: Any = None,
    latent_dim: int = 128,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    cuda_graphs: bool = False,
    progress: bool = True,
    max_batch: int | None = None,
    start: RecoveryResult | None = None,
    noise_std: float = 0.0,
) -> RecoveryResult:
    """Recover N images from their measurements y (N, m) with method kind ``method``.

    operator: the problem's operator, on ``device``.
    seeds: one per image, from (config seed, method name, problem name, image id).
    settings: the method's settings (``lowshot.config.method_settings``); missing keys
        take the method's defaults.
    model: what the method's ``model`` names, loaded (``lowshot.io.load_gan`` or
        ``load_lowshot``); the untrained network takes an optional template generator.
    latent_dim: size of z when no model fixes it.
    precision: one of ``lowshot.devices.PRECISIONS`` (``set_precision``: fp32, tf32, or
        bf16 autocast of the generator on CUDA, losses in fp32).
    cuda_graphs: on CUDA, each optimisation step after the first few replays one
        captured CUDA graph (``lowshot.methods.engine.Stage``); ignored on the CPU.
    max_batch: recover at most this many images at once (memory); None: all at once.
        The result does not depend on it.
    start: the result of the method's ``starts_from`` method on the same N images.
    noise_std: the std of the noise in y (the problem's ``noise_std``; 0: noiseless).
    Returns images (N, 3, 64, 64) in [-1, 1] on the CPU and per-image diagnostics.
    """
    cls = METHODS[method]
    resolved = resolve_settings(method, settings)
    check_precision(precision)
    device = torch.device(device)
    y = torch.as_tensor(y).to(device=device, dtype=torch.float32)
    n = y.shape[0]
    seeds = [int(s) for s in seeds]
    if len(seeds) != n:
        raise ValueError(f"recover: {n} measurement rows but {len(seeds)} seeds")
    if y.shape[1] != operator.m:
        raise ValueError(f"recover: y has {y.shape[1]} measurements, operator {operator.m}")
    if cls.model is not None and model is None:
        raise ValueError(f"{method} needs its {cls.model} model")
    if (cls.starts_from is None) != (start is None):
        raise ValueError(
            f"{method} starts from {cls.starts_from}'s result: give it (and only then) as start"
            if cls.starts_from
            else f"{method} does not start from another method's result"
        )
    if start is not None and len(start) != n:
        raise ValueError(f"recover: {n} measurement rows but a start of {len(start)} images")
    if max_batch is not None and n > max_batch:
        return RecoveryResult.concat(
            [
                recover(
                    method,
                    operator,
                    y[first : first + max_batch],
                    seeds=seeds[first : first + max_batch],
                    settings=resolved,
                    model=model,
                    latent_dim=latent_dim,
                    device=device,
                    precision=precision,
                    cuda_graphs=cuda_graphs,
                    progress=progress,
                    start=None if start is None else start.select(slice(first, first + max_batch)),
                    noise_std=noise_std,
                )
                for first in range(0, n, max_batch)
            ]
        )
    stage = cls.run(
        RecoveryTask(
            operator,
            y,
            seeds,
            resolved,
            model,
            latent_dim,
            precision,
            progress,
            start,
            cuda_graphs,
            float(noise_std),
        )
    )
    result = RecoveryResult(
        images=stage.images.detach().cpu(),
        z=stage.z.detach().float().cpu(),
        measurement_loss=stage.loss.detach().cpu().double().numpy(),
        iterations=stage.iterations.cpu().numpy().astype(np.int64),
        restarts=(
            np.asarray(start.restarts, dtype=np.int64)
            if start is not None
            else np.full(n, cls.restarts(resolved), dtype=np.int64)
        ),
        diverged=stage.diverged.cpu().numpy().astype(bool),
    )
    if result.diverged.any():
        log.warning(
            "%s on %s: %d of %d images diverged (flagged, not averaged)",
            method,
            operator.name,
            int(result.diverged.sum()),
            n,
        )
    log.info(
        "%s on %s: %d images, median measurement loss %.4g",
        method,
        operator.name,
        n,
        float(np.nanmedian(result.measurement_loss)) if n else math.nan,
    )
    return result
