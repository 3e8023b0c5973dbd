"""The pipeline's jobs: file in, file out, one function per heavy rule.

Each function reads the HDF5 intermediates, calls the science (``training``,
``operators``, ``methods``, ``metrics``) and writes its outputs atomically. Rule scripts
in ``scripts/`` only unpack ``snakemake`` objects and call these, so every job can also be
run and tested without Snakemake.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lowshot import data, images, methods, metrics, problems
from lowshot.cuda_graphs import graphs_on
from lowshot.devices import effective_precision, log_peak_memory, peak_memory_mb, prepare_device
from lowshot.io import (
    atomic_path,
    load_gan,
    load_learned_reg,
    load_lowshot,
    read_recovery,
    save_gan,
    save_learned_reg,
    save_lowshot,
    write_recovery,
)
from lowshot.seeds import derive_seed

log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


# Every rule script imports this module and most jobs are recoveries, which never train:
# the training jobs import ``lowshot.training`` (and what it imports) themselves.
if TYPE_CHECKING:
    from lowshot import training


@dataclass(frozen=True)
class Runtime:
    """What every torch job shares: the config's ``seed``, ``device``, ``precision`` and
    ``model.latent_dim``, the job's CPU ``threads`` (None: torch's default) and the
    config's ``cuda_graphs`` (recovery and pre-training steps as CUDA graphs; False, as
    in the schema), and ``gpu``: what the job's resources asked of a GPU
    (``gpu_request``; None: nothing), which makes the job fail at once where CUDA cannot
    be used (``lowshot.devices.prepare_device``).

    The rules pass all but ``threads`` and ``gpu`` as one ``runtime`` param (``RUNTIME``
    in ``rules/common.smk``); the scripts add ``snakemake.threads`` and
    ``gpu_request(snakemake.resources)``.
    """

    seed: int
    device: str
    precision: str
    latent_dim: int
    threads: int | None = None
    cuda_graphs: bool = False
    gpu: str | None = None


# The job resources that ask for a GPU: profiles/slurm's ``gpu`` (sbatch --gpus) or a
# ``gres`` naming one, profiles/gpu-node's ``gpu_mem_mb`` (a share of the card).
GPU_RESOURCES = ("gpu", "gpus", "gres", "gpu_mem_mb")


def job_device(runtime: Runtime) -> torch.device:
    """The job's device, prepared from its ``runtime`` (``prepare_device``: threads,
    precision policy, the fail-fast check of a GPU request, the log line)."""
    return prepare_device(runtime.device, runtime.threads, runtime.precision, runtime.gpu)


def gpu_request(resources: Any) -> str | None:
    """What a job's ``resources`` (``snakemake.resources``, or any mapping with ``get``)
    ask of a GPU, as ``"gpu=1"`` (the first that does, in ``GPU_RESOURCES`` order), or
    None when they ask for none (0, absent, or a gres without "gpu")."""
    for key in GPU_RESOURCES:
        value = resources.get(key)
        if value in (None, "", 0, "0"):
            continue
        if key == "gres" and "gpu" not in str(value):
            continue
        return f"{key}={value}"
    return None


def run_attrs(runtime: Runtime, device: torch.device) -> dict[str, Any]:
    """How a job ran, recorded in the attributes of every file it writes: ``device``,
    ``precision`` (the config's) beside ``effective_precision`` (what the arithmetic was
    on that device: ``lowshot.devices.effective_precision``), and ``cuda_graphs`` (True
    only where steps were replayed as CUDA graphs: asked for, on CUDA)."""
    return {
        "device": str(device),
        "precision": runtime.precision,
        "effective_precision": effective_precision(runtime.precision, device),
        "cuda_graphs": graphs_on(runtime.cuda_graphs, device),
    }


def _write_png(image: np.ndarray, path: PathLike) -> None:
    from PIL import Image  # the GAN's sample grid only: recoveries write no PNG

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def _training_run(
    runtime: Runtime,
    device: Any,
    seed: int,
    checkpoint: PathLike,
    options: Mapping[str, Any],
) -> training.TrainingRun:
    """A training job's run: the runtime's values with the job's own derived ``seed``."""
    from lowshot import training

    return training.TrainingRun(
        latent_dim=runtime.latent_dim,
        seed=seed,
        device=device,
        precision=runtime.precision,
        checkpoint_path=checkpoint,
        cuda_graphs=runtime.cuda_graphs,
        **options,
    )


def train_gan_job(
    images_h5: PathLike,
    splits_h5: PathLike,
    *,
    generator_out: PathLike,
    losses_out: PathLike,
    samples_out: PathLike,
    checkpoint: PathLike,
    settings: Mapping[str, Any],
    runtime: Runtime,
    validation_out: PathLike | None = None,
    **options: Any,
) -> None:
    """WGAN-GP on the GAN corpus of ``splits_h5``; writes generator, loss CSV, sample grid.

    ``settings`` is the config's ``gan`` section (its validation keys may be left out
    while the curve is off: ``training.gan_rule_settings``). ``options`` go to the
    ``training.TrainingRun`` as they are (``width``, ``progress``: tests train narrow
    networks quietly). Training resumes from ``checkpoint`` when it exists (a preempted
    job); the checkpoint is removed once the outputs are written.
    With ``validate_every`` > 0 the validation curve (``lowshot.training.validation``, on
    the split's first ``validation_faces`` validation faces) is written to
    ``validation_out`` after every point (the whole curve so far, atomically) and at the
    end; with 0 nothing is written there.
    """
    from lowshot import training

    settings = training.with_validation_defaults(settings)
    validate = settings["validate_every"] > 0
    if validate and validation_out is None:
        raise ValueError("gan.validate_every > 0 needs validation_out, the curve's CSV")
    torch_device = job_device(runtime)
    split = data.load_split(splits_h5)
    # uint8 keeps the full corpus (~160k images) at 2 GB instead of 8 GB as floats.
    images = data.load_uint8(images_h5, split.gan_corpus)
    log.info("GAN corpus: %d images", len(images))
    job_seed = derive_seed(runtime.seed, "train_gan")
    run = _training_run(runtime, torch_device, job_seed, checkpoint, options)
    curve: dict[str, Any] = {}
    if validate:
        wanted = settings["validation_faces"]
        if split.validation.size < wanted:
            raise ValueError(
                f"gan.validation_faces={wanted}, but {splits_h5} holds "
                f"{split.validation.size} validation faces (split.n_validation)"
            )
        curve["validation_images"] = data.load_uint8(images_h5, split.validation[:wanted])
        curve["on_validation"] = lambda rows: training.write_log_csv(validation_out, rows)
    result = training.train_wgan_gp(images, settings, run, **curve)
    attrs = {
        "method": "wgan-gp",
        "seed": job_seed,
        "corpus_size": len(images),
        **_flat(settings),
        **run_attrs(runtime, torch_device),
    }
    save_gan(generator_out, result.generator, attrs)
    training.write_log_csv(losses_out, result.log)
    if validate:
        training.write_log_csv(validation_out, result.validation)  # type: ignore[arg-type]
        if result.stopped_early:
            log.info("early stop (gan.patience) at step %d", result.step)
    grid = training.sample_grid(result.generator, 64, derive_seed(runtime.seed, "samples"))
    _write_png(grid, samples_out)
    log_peak_memory(torch_device)
    Path(checkpoint).unlink(missing_ok=True)


def pretrain_lowshot_job(
    images_h5: PathLike,
    splits_h5: PathLike,
    *,
    loss: str,
    shots: int,
    model_out: PathLike,
    losses_out: PathLike,
    checkpoint: PathLike,
    settings: Mapping[str, Any],
    runtime: Runtime,
    replicate: int = 1,
    **options: Any,
) -> None:
    """Low-shot pre-training (eq. 1) on the S-shot subset of ``replicate`` (1: the split's
    own ``shots/S<n>``; r >= 2: ``Split.replicate_shots(r)``); writes model HDF5 and loss
    CSV.

    ``settings``: the config's ``lowshot`` section, or its training part
    (``training.lowshot_settings``, which the model file's attributes record, with
    ``replicate`` and the image-store rows trained on, ``shot_rows``).
    ``options`` go to the ``training.TrainingRun`` as they are (``width``, ``progress``).
    """
    from lowshot import training

    settings = training.lowshot_settings(settings)
    torch_device = job_device(runtime)
    split = data.load_split(splits_h5)
    if shots not in split.shots:
        raise ValueError(f"{splits_h5} holds no {shots}-shot subset (has {sorted(split.shots)})")
    rows = split.replicate_shots(replicate)[shots]
    if replicate > 1:
        earlier = np.concatenate(
            [split.replicate_shots(r)[max(split.shots)] for r in range(1, replicate)]
        )
        log.info(
            "replicate %d: %d shots, %d of them also in replicates 1-%d (replicates are "
            "disjoint when the GAN corpus, %d faces, holds %d x %d)",
            replicate,
            shots,
            int(np.isin(rows, earlier).sum()),
            replicate - 1,
            split.gan_corpus.size,
            replicate,
            max(split.shots),
        )
    images = data.load_images(images_h5, rows)
    # One seed for every (loss, S) of a replicate: the same theta_0 and nested initial
    # codes (paired); replicates differ.
    job_seed = training.pretraining_seed(runtime.seed, replicate)
    run = _training_run(runtime, torch_device, job_seed, checkpoint, options)
    result = training.pretrain_lowshot(images, settings, run, loss=loss)
    attrs = {
        "loss": loss,
        "shots": shots,
        "seed": job_seed,
        "replicate": replicate,
        "shot_rows": np.asarray(rows, np.int64),
        **_flat(settings),
        **run_attrs(runtime, torch_device),
    }
    save_lowshot(model_out, result, attrs)
    training.write_log_csv(losses_out, result.log)
    log_peak_memory(torch_device)
    Path(checkpoint).unlink(missing_ok=True)


# The trained models a method's class can ask for (``RecoveryMethod.model``), by loader.
MODEL_LOADERS: dict[str, Callable[[PathLike], Any]] = {
    "gan": load_gan,
    "lowshot": load_lowshot,
    "learned_reg": load_learned_reg,
}


def method_seeds(seed: int, method: str, problem: str, image_ids: Sequence[str]) -> list[int]:
    """One seed per image for a method's draws: from (config seed, the method's
    ``seed_name``, problem, image id), so instances with one seed name are paired."""
    spec = methods.parse_method(method)
    name = methods.family(spec).seed_name(spec)
    return [derive_seed(seed, name, problem, image_id) for image_id in image_ids]


def check_model_replicate(model: Any, spec: methods.MethodSpec, path: PathLike) -> None:
    """Raise ValueError when a model file says it is another replicate than ``spec``'s.

    Model files record ``replicate`` in their attrs (a file without it is replicate 1,
    written before replicates existed); models without attrs, or a spec without a
    replicate, are not checked."""
    attrs = getattr(model, "attrs", None)
    if not isinstance(attrs, Mapping) or spec.replicate is None:
        return
    recorded = int(attrs.get("replicate", 1))
    if recorded != spec.replicate:
        raise ValueError(
            f"{path} is replicate {recorded}'s model, {spec.name} is replicate {spec.replicate}"
        )


def read_start(path: PathLike, image_ids: Sequence[str]) -> methods.RecoveryResult:
    """The recovery file of the method a job starts from, for the job's ``image_ids``.

    Raises when the file holds other images (a shard of another split or size)."""
    fields, _ = read_recovery(path)
    found = [str(i) for i in fields["image_ids"]]
    if found != list(image_ids):
        raise ValueError(f"{path} holds images {found}, the job recovers {list(image_ids)}")
    return methods.RecoveryResult(
        images=images.to_float(fields["recovered"]),
        z=torch.as_tensor(fields["z"], dtype=torch.float32),
        measurement_loss=np.asarray(fields["measurement_loss"], dtype=np.float64),
        iterations=np.asarray(fields["iterations"], dtype=np.int64),
        restarts=np.asarray(fields["restarts"], dtype=np.int64),
        diverged=np.asarray(fields["diverged"], dtype=bool),
    )


def recover_job(
    images_h5: PathLike,
    splits_h5: PathLike,
    model_h5: PathLike | None,
    *,
    output: PathLike,
    problem: str,
    method: str,
    positions: tuple[int, int],
    settings: Mapping[str, Any],
    noise_std: float,
    runtime: Runtime,
    start_h5: PathLike | None = None,
) -> None:
    """Recover the test images at ``positions`` (start, stop) of the split; write the results.

    The operator's seed derives from (seed, problem) alone, so every method sees the same
    A; measurement noise from (seed, problem, image id), so every method sees the same y;
    the method's own draws from ``method_seeds``. ``start_h5``: the recovery file of the
    method's ``starts_from`` method for the same shard.
    """
    seed = runtime.seed
    torch_device = job_device(runtime)
    the_problem = problems.parse_problem(problem)
    the_method = methods.parse_method(method)
    method_class = methods.family(the_method)
    split = data.load_split(splits_h5)
    rows = split.test[positions[0] : positions[1]]
    image_ids = [str(i) for i in split.test_ids[positions[0] : positions[1]]]
    truth = data.load_images(images_h5, rows).to(torch_device)
    operator, measurements = problems.observe(
        problem, truth, image_ids, config_seed=seed, noise_std=noise_std, device=torch_device
    )
    seeds = method_seeds(seed, method, problem, image_ids)
    model = None
    if method_class.model is not None:
        if model_h5 is None:
            raise ValueError(f"{method} needs its {method_class.model} model file")
        model = MODEL_LOADERS[method_class.model](model_h5)
        check_model_replicate(model, the_method, model_h5)
    start = None
    if method_class.starts_from is not None:
        if start_h5 is None:
            raise ValueError(f"{method} needs the recovery file of {method_class.starts_from}")
        start = read_start(start_h5, image_ids)

    started = time.perf_counter()
    result = methods.recover(
        the_method.kind,
        operator,
        measurements,
        seeds=seeds,
        settings=settings,
        model=model,
        start=start,
        latent_dim=runtime.latent_dim,
        device=torch_device,
        precision=runtime.precision,
        cuda_graphs=runtime.cuda_graphs,
        noise_std=noise_std,
    )
    seconds = time.perf_counter() - started
    recovered = result.images.detach().float().cpu()
    truth = truth.cpu()
    n = len(image_ids)
    fields = {
        "image_ids": image_ids,
        "recovered": images.to_uint8(recovered),
        "z": result.z.detach().float().cpu().numpy(),
        "psnr": metrics.psnr(recovered, truth),
        "ssim": metrics.ssim(recovered, truth),
        "measurement_loss": np.asarray(result.measurement_loss, dtype=np.float64),
        "iterations": np.asarray(result.iterations, dtype=np.int64),
        "restarts": np.asarray(result.restarts, dtype=np.int64),
        "diverged": np.asarray(result.diverged, dtype=bool),
        "seed": np.asarray(seeds, dtype=np.int64),
        "seconds": np.full(n, seconds / max(n, 1)),
    }
    attrs = {
        "problem": problem,
        "problem_kind": the_problem.kind,
        "ratio": the_problem.ratio,
        "method": method,
        "method_kind": the_method.kind,
        "loss": the_method.loss,
        "shots": the_method.shots,
        "replicate": the_method.replicate,
        "noise_std": noise_std,
        "seed": seed,
        "measurements": operator.m,
        **run_attrs(runtime, torch_device),
        "positions": list(positions),
    }
    write_recovery(output, fields, attrs)
    diverged = int(fields["diverged"].sum())
    log.info(
        "%s on %s: %d images, mean PSNR %.2f dB (%d diverged), %.1f s, peak memory %.0f MiB",
        method,
        problem,
        n,
        float(np.mean(fields["psnr"][~fields["diverged"]])) if diverged < n else float("nan"),
        diverged,
        seconds,
        peak_memory_mb(torch_device),
    )
    log_peak_memory(torch_device, allocated=False)


def fit_learned_reg_job(
    images_h5: PathLike,
    splits_h5: PathLike,
    *,
    shots: int,
    stats_out: PathLike,
    fits_out: PathLike,
    settings: Mapping[str, Any],
    runtime: Runtime,
    **options: Any,
) -> None:
    """CS-DIP's learned regulariser on the S-shot subset: one untrained-network fit per
    example, the Gaussian of their per-layer weight means; writes the statistics HDF5
    (``lowshot.io.save_learned_reg``) and a CSV of each example's fit (loss, PSNR).

    ``settings``: a ``recover.learned_reg`` section or its fitting part
    (``methods.learned_reg.fit_settings``, which the file's attributes record).
    ``options`` go to the ``training.TrainingRun`` as they are (``width``, ``progress``).
    """
    from lowshot import training
    from lowshot.methods.learned_reg import fit_settings
    from lowshot.training.learned_reg import fit_learned_reg

    settings = fit_settings(settings)
    torch_device = job_device(runtime)
    subset = data.load_split(splits_h5).shots.get(shots)
    if subset is None:
        raise ValueError(f"{splits_h5} holds no {shots}-shot subset")
    # One seed for every S: example i gets the same fit in every (nested) subset.
    job_seed = derive_seed(runtime.seed, "fit_learned_reg")
    result = fit_learned_reg(
        data.load_images(images_h5, subset),
        settings,
        _training_run(runtime, torch_device, job_seed, None, options),
    )
    attrs = {"seed": job_seed, **_flat(settings), **run_attrs(runtime, torch_device)}
    save_learned_reg(stats_out, result.stats, attrs)
    training.write_log_csv(fits_out, result.log)
    log_peak_memory(torch_device)


def _flat(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as HDF5-storable attributes (lists become arrays, None stays None)."""
    return {
        key: (list(value) if isinstance(value, tuple) else value) for key, value in settings.items()
    }
