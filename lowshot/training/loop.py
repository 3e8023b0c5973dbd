"""What both trainers share: the resumable training loop and its checkpoints, the
networks' set-up and finish (batch-norm calibration), and the loss-log CSV.

``TrainingRun`` is how a training runs (latent size, seed, device, precision, and the
checkpoint, progress bar, ``stop_after`` and network width), as opposed to what it learns
(the ``settings`` mapping, a config section). ``train_loop`` runs a trainer's step
function from the checkpoint's step (or 0) to ``iterations``, logging, checkpointing and
stopping as the package docstring describes; the trainer hands it the objects to
checkpoint and restore.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lowshot.devices import resolve_device
from lowshot.images import to_float
from lowshot.io import atomic_path
from lowshot.models import Generator, GeneratorNorm, init_dcgan_weights
from lowshot.seeds import derive_seed, seeded_generator

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
# A trainer's step: does one training step, returns a function that makes the step's log
# row (its values, without "step"), called only on logging steps.
Step = Callable[[], Callable[[], dict[str, float]]]


# ---------------------------------------------------------------------------------------
# How a training runs


@dataclass(frozen=True)
class TrainingRun:
    """How a training runs, as opposed to what it learns (the trainer's ``settings``).

    latent_dim, seed, device, precision: the config's ``model.latent_dim``, ``seed``,
    ``device`` and ``precision`` (no defaults here: the config schema is their one home;
    a job passes its derived seed). device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a
    ``torch.device``; precision: ``"fp32"``, ``"tf32"`` or ``"bf16"``
    (``lowshot.devices.set_precision``, which the trainers apply).
    The rest are run mechanics: checkpoint_path, where the run checkpoints and resumes
    from (None: neither); progress, whether to show a progress bar; stop_after, return
    after that step as if killed there (package docstring; for testing resumption);
    width, the networks' base width (64: the paper's DCGAN; smaller only for tests);
    cuda_graphs, replay each low-shot pre-training step as a CUDA graph on CUDA (the
    config's ``cuda_graphs``, which the jobs pass; WGAN-GP's steps, which draw new random
    numbers every time, are never replayed).
    """

    latent_dim: int
    seed: int
    device: str | torch.device
    precision: str
    checkpoint_path: PathLike | None = None
    progress: bool = True
    stop_after: int | None = None
    width: int = 64
    cuda_graphs: bool = False


# ---------------------------------------------------------------------------------------
# Data, devices and networks


def _device(device: str | torch.device) -> torch.device:
    if isinstance(device, str) and device in ("auto", "cpu", "cuda"):
        return resolve_device(device)
    return torch.device(device)


def _as_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Accept (N, 3, 64, 64) float in [-1, 1], or the store's uint8 (N, 64, 64, 3)."""
    tensor = torch.as_tensor(images)
    if tensor.dim() != 4:
        raise ValueError(f"images must be 4-d, got shape {tuple(tensor.shape)}")
    if tensor.dtype == torch.uint8:
        if tensor.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (N, H, W, 3), got {tuple(tensor.shape)}")
    elif tensor.shape[1] != 3:
        raise ValueError(f"float images must be (N, 3, H, W), got {tuple(tensor.shape)}")
    return tensor


def _to_float(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of ``_as_images`` images -> (B, 3, H, W) float32 in [-1, 1] on ``device``."""
    batch = batch.to(device)
    if batch.dtype == torch.uint8:
        return to_float(batch)
    return batch.float()


def _fingerprint(images: torch.Tensor) -> list[float]:
    """Shape and a checksum of a strided subset: cheap, and catches other data."""
    stride = max(1, images.shape[0] // 64)
    return [*map(float, images.shape), float(images[::stride].double().sum())]


def _new_generator(run: TrainingRun, stage: str, device: torch.device) -> Generator:
    """A DCGAN-initialised generator (``run``'s latent size, width and seed) on
    ``device``, training mode, norm ``"batch"``."""
    generator = Generator(run.latent_dim, run.width)
    init_dcgan_weights(generator, seeded_generator(derive_seed(run.seed, stage, "generator-init")))
    generator = generator.to(device).train()
    generator.norm = "batch"
    return generator


@torch.no_grad()
def calibrate_batch_norm(generator: Generator, latents: Iterable[torch.Tensor]) -> None:
    """Set every BN layer's running statistics to the pooled statistics of its inputs.

    latents: batches (B_b, latent) of codes; each batch is passed through the generator in
    mode ``"batch"`` (normalised by its own statistics, as in training), and each layer's
    running mean / running variance become the mean / biased variance of its inputs
    pooled over all batches (float64 sums). Nothing else changes; the generator's norm
    mode and train/eval flag are restored. See the package docstring for why.
    """
    norms = [module for module in generator.modules() if isinstance(module, GeneratorNorm)]
    sums: dict[int, list[Any]] = {id(m): [0, 0.0, 0.0] for m in norms}

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].double()
        entry = sums[id(module)]
        entry[0] += x.numel() // x.shape[1]
        entry[1] = entry[1] + x.sum(dim=(0, 2, 3))
        entry[2] = entry[2] + x.pow(2).sum(dim=(0, 2, 3))

    mode, training = generator.norm, generator.training
    saved = {id(m): (m.momentum, m.num_batches_tracked.clone()) for m in norms}
    handles = [m.register_forward_pre_hook(record) for m in norms]
    device = next(generator.parameters()).device
    try:
        generator.norm = "batch"
        generator.train()
        for m in norms:
            m.momentum = 0.0  # keep the running buffers untouched while recording
        batches = 0
        for z in latents:
            generator(z.to(device=device, dtype=torch.float32))
            batches += 1
        if batches == 0:
            raise ValueError("calibrate_batch_norm needs at least one batch of codes")
    finally:
        for handle in handles:
            handle.remove()
        for m in norms:
            m.momentum, tracked = saved[id(m)]
            m.num_batches_tracked.copy_(tracked)
        generator.norm = mode
        generator.train(training)
    for m in norms:
        count, total, total_sq = sums[id(m)]
        mean = total / count
        var = (total_sq / count - mean.pow(2)).clamp_min(0.0)
        m.running_mean.copy_(mean.to(m.running_mean.dtype))
        m.running_var.copy_(var.to(m.running_var.dtype))


def _finish_generator(generator: Generator) -> Generator:
    generator = generator.cpu()
    generator.norm = "stored"
    return generator.eval()


# ---------------------------------------------------------------------------------------
# Checkpoints


def _save_checkpoint(path: PathLike, state: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)
    log.info("checkpoint: step %d -> %s", state["step"], path)


def _load_checkpoint(
    path: PathLike | None, settings: Mapping[str, Any], iterations: int
) -> dict[str, Any] | None:
    if path is None or not Path(path).exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("settings") != dict(settings):
        raise ValueError(
            f"checkpoint {path} belongs to another run: its settings "
            f"{state.get('settings')} differ from {dict(settings)}; delete it to start afresh"
        )
    if state["step"] > iterations:
        raise ValueError(f"checkpoint {path} is at step {state['step']} > iterations {iterations}")
    log.info("resuming from checkpoint %s at step %d", path, state["step"])
    return state


def _state_of(thing: Any) -> Any:
    """What a checkpoint stores of a network or optimiser (its state dict), a tensor
    (itself, detached), a ``torch.Generator`` (its state) or a mapping of those."""
    if isinstance(thing, Mapping):
        return {name: _state_of(value) for name, value in thing.items()}
    if isinstance(thing, torch.Generator):
        return thing.get_state()
    if isinstance(thing, torch.Tensor):
        return thing.detach()
    return thing.state_dict()


# An optimiser's implementation flags: how it runs on this device and loop (its state on
# the device for a CUDA-graph capture, one fused kernel, ...), not what it has learned.
OPTIMISER_FLAGS = ("foreach", "fused", "capturable", "differentiable")


def load_optimiser_state(optimiser: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """Load a checkpoint's optimiser ``state`` (moments, step counts, hyperparameters)
    into ``optimiser``, keeping ``optimiser``'s own ``OPTIMISER_FLAGS``.

    ``Optimizer.load_state_dict`` replaces every group setting with the saved one, flags
    included: a checkpoint written with CUDA graphs off would make a resumed graphed run's
    Adam non-capturable (its capture then fails), and one written on a card
    (``capturable=True``) makes a resumed CPU run fail at its first step. With the
    current flags in place before loading, torch also puts each step count where they
    want it (on the parameters' device for capturable or fused, else as saved).
    """
    saved = list(state["param_groups"])
    current = optimiser.param_groups
    if len(saved) == len(current):  # else load_state_dict raises its own error
        groups = []
        for old, new in zip(saved, current, strict=True):
            flags = {key: new[key] for key in OPTIMISER_FLAGS if key in new}
            changed = {key: old.get(key) for key in flags if old.get(key) != flags[key]}
            if changed:
                kept = {key: flags[key] for key in changed}
                log.info("resume: optimiser flags %s kept over the checkpoint's %s", kept, changed)
            rest = {key: value for key, value in old.items() if key not in OPTIMISER_FLAGS}
            groups.append({**rest, **flags})
        state = {**state, "param_groups": groups}
    optimiser.load_state_dict(dict(state))


def _restore(thing: Any, state: Any) -> None:
    """Put ``_state_of``'s ``state`` back into ``thing``, in place (an optimiser keeps its
    own implementation flags: ``load_optimiser_state``)."""
    if isinstance(thing, Mapping):
        for name, value in state.items():
            _restore(thing[name], value)
    elif isinstance(thing, torch.optim.Optimizer):
        load_optimiser_state(thing, state)
    elif isinstance(thing, torch.Generator):
        thing.set_state(state)
    elif isinstance(thing, torch.Tensor):
        with torch.no_grad():
            thing.copy_(state)
    else:
        thing.load_state_dict(state)


def _due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


# ---------------------------------------------------------------------------------------
# The loop


@dataclass(frozen=True)
class LoopResult:
    """Where ``train_loop`` ended: the whole log (resumed rows included), the step it
    started from, the last step done, and whether training is over (the last iteration,
    or an early stop: ``stopped_early``)."""

    log: list[dict[str, float]]
    start_step: int
    step: int
    finished: bool
    stopped_early: bool = False


def train_loop(
    step: Step,
    run: TrainingRun,
    *,
    state: Mapping[str, Any],
    identity: Mapping[str, Any],
    settings: Mapping[str, Any],
    desc: str,
    after_step: Callable[[int], bool] | None = None,
) -> LoopResult:
    """Run ``step`` for the steps after the checkpoint's (or 0) up to ``iterations``.

    state: the objects a checkpoint holds, by checkpoint key (networks and optimisers,
    tensors such as codes, ``torch.Generator`` states, or mappings of those); restored
    in place from ``run.checkpoint_path`` when it exists, saved there every
    ``checkpoint_every`` steps and at the last step, together with ``identity`` (key
    ``"settings"``: what a resumed run must match, ``"kind"`` naming the trainer in the
    log), the step and the log. settings: the trainer's checked config section, read for
    ``iterations``, ``checkpoint_every`` and ``log_every``. Every ``log_every`` steps and
    at the last step the step's row, led by ``"step"``, joins the log.
    ``run.stop_after``: return after that step as if killed there (package docstring).
    ``desc``: the progress bar's label (shown when ``run.progress``).
    ``after_step(step)``: called after every step (before its log row and checkpoint);
    True ends training there as finished (an early stop, whose step is logged). Its own state
    belongs in ``state``, so that a resumed run makes the same calls. The checkpoint of an
    early stop is written at once and says so (key ``"stopped_early"``): a run resumed
    from it returns at once, finished, instead of training on.
    """
    checkpoint_path, stop_after = run.checkpoint_path, run.stop_after
    iterations = settings["iterations"]
    rows: list[dict[str, float]] = []
    start = 0
    saved = _load_checkpoint(checkpoint_path, identity, iterations)
    if saved is not None:
        _restore(state, {name: saved[name] for name in state})
        rows, start = list(saved["log"]), int(saved["step"])
        if saved.get("stopped_early", False):
            log.info("the checkpoint's run stopped early at step %d: done", start)
            return LoopResult(rows, start, start, True, stopped_early=True)

    done, stopped_early = start, False
    bar = tqdm(total=iterations, initial=start, desc=desc, disable=not run.progress)
    for done in range(start + 1, iterations + 1):
        make_row = step()
        bar.update(1)
        if after_step is not None and after_step(done) and done < iterations:
            stopped_early = True
            log.info("%s: early stop at step %d", identity["kind"], done)
        if _due(done, settings["log_every"], iterations) or stopped_early:
            row = {"step": done, **make_row()}
            rows.append(row)
            log.info("%s %s", identity["kind"], " ".join(f"{k}={v:.4g}" for k, v in row.items()))
        due = _due(done, settings["checkpoint_every"], iterations)
        if checkpoint_path is not None and (due or stopped_early):
            extra = {"stopped_early": True} if stopped_early else {}
            _save_checkpoint(
                checkpoint_path,
                {"settings": identity, "step": done, **_state_of(state), "log": rows, **extra},
            )
        if stopped_early:
            break
        if stop_after is not None and done >= stop_after and done < iterations:
            log.info("stop_after=%d: stopping at step %d as if killed", stop_after, done)
            break
    bar.close()
    return LoopResult(rows, start, done, done >= iterations or stopped_early, stopped_early)


# ---------------------------------------------------------------------------------------
# Loss logs


def write_log_csv(path: PathLike, rows: Sequence[Mapping[str, float]]) -> None:
    """Write a loss log (one dict per logged step) as CSV, atomically.

    The columns are every key in order of first appearance; a row without a key leaves
    its cell empty. The csv module, not pandas: training jobs then never import pandas,
    whose import costs seconds on a small CPU.
    """
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
