"""HDF5 layouts of the pipeline's intermediates, and atomic writes.

Every output is written under a temporary name beside its destination and renamed when
complete, so a killed job never leaves a file that looks finished; the hidden temporary
(``.<name>.<random>.tmp``) such a job leaves is deleted when the output is next written.

Layouts
-------
Generator file (``results/models/gan/generator.h5``,
``results/models/lowshot/{loss}_S{shots}/model.h5``, ``..._S{shots}_r{r}/model.h5`` for
replicate r >= 2):
    ``generator/<state_dict key>``  every parameter and buffer (BN statistics included)
    ``codes``               (S, latent) float32, low-shot codes z_i (low-shot only)
    ``prior/mean``          (latent,) float32, mean of the fitted Gaussian (low-shot only)
    ``prior/covariance``    (latent, latent) float32, shrunk covariance (low-shot only)
    attrs: free-form provenance (loss, shots, iterations, seed, ...; a low-shot model's
    ``replicate`` and ``shot_rows``, the image-store rows it was trained on, since
    replicates exist: a file without them is replicate 1)

Written by ``save_gan`` / ``save_lowshot``, read by ``load_gan`` / ``load_lowshot``.

Recovery file (``results/recovery/{problem}/{method}/shard{k}.h5``): see ``RECOVERY_FIELDS``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

if TYPE_CHECKING:  # imported lazily: the data stage writes HDF5 without loading torch
    import torch

    from lowshot.models import Generator

# Per-image datasets of a recovery file, all with first dimension N (images of the job).
RECOVERY_FIELDS: dict[str, str] = {
    "image_ids": "(N,) str, CelebA ids of the recovered test images",
    "recovered": "(N, 64, 64, 3) uint8, recovered images",
    "z": "(N, latent) float32, the returned image's latent code (see RecoveryResult.z)",
    "psnr": "(N,) float64, PSNR in dB on [0, 1]",
    "ssim": "(N,) float64, SSIM on [0, 1]",
    "measurement_loss": "(N,) float64, final 0.5 * ||A x_hat - y||^2",
    "iterations": "(N,) int64, optimiser steps taken",
    "restarts": "(N,) int64, random restarts tried",
    "diverged": "(N,) bool, non-finite loss or output",
    "seed": "(N,) int64, the image's derived seed",
    "seconds": "(N,) float64, wall time of the job divided evenly over its images",
}


def _remove_stale_temporaries(target: Path) -> None:
    """Delete the temporaries ``.<name>.<random>.tmp`` of ``target`` that a killed job left.

    Only ever one job writes a given output, so no other writer owns them. The random
    part has no dot, so temporaries of other files (``.<name>.bak.<random>.tmp``) never
    match.
    """
    pattern = re.compile(re.escape(f".{target.name}.") + r"[^.]+\.tmp")
    for stale in target.parent.iterdir():
        if pattern.fullmatch(stale.name) and not stale.is_dir():
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    Temporaries of ``path`` left by a killed earlier job are deleted first.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
        return np.asarray(value, dtype=h5py.string_dtype())
    array = np.asarray(value)
    if array.dtype.kind == "U":
        return array.astype(h5py.string_dtype())
    return array


def write_h5(
    path: str | os.PathLike[str],
    datasets: Mapping[str, Any],
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Atomically write ``datasets`` (name -> array/tensor; '/' nests groups) and root attrs.

    ``None`` attribute values are stored as the string ``"none"``.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        for name, value in datasets.items():
            handle.create_dataset(name, data=_to_numpy(value))
        for key, value in (attrs or {}).items():
            handle.attrs[key] = "none" if value is None else value


def read_h5(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read every dataset (by full name without the leading '/') and the root attrs."""
    datasets: dict[str, np.ndarray] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            value = obj[()]
            if obj.dtype.kind == "O" or h5py.check_string_dtype(obj.dtype) is not None:
                value = obj.asstr()[()]
            datasets[name] = value

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
        attrs = {key: _attr_value(value) for key, value in handle.attrs.items()}
    return datasets, attrs


def _attr_value(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, str) and value == "none" else value


def save_generator(
    path: str | os.PathLike[str],
    state_dict: Mapping[str, torch.Tensor],
    extra: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Write a generator's ``state_dict`` (plus ``extra`` datasets such as codes) atomically."""
    datasets: dict[str, Any] = {f"generator/{key}": value for key, value in state_dict.items()}
    datasets.update(extra or {})
    write_h5(path, datasets, attrs)


def load_generator(
    path: str | os.PathLike[str],
) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray], dict[str, Any]]:
    """Return (state_dict, other datasets, attrs) of a file written by ``save_generator``."""
    import torch

    datasets, attrs = read_h5(path)
    prefix = "generator/"
    state = {
        key[len(prefix) :]: torch.from_numpy(np.asarray(value))
        for key, value in datasets.items()
        if key.startswith(prefix)
    }
    if not state:
        raise ValueError(f"{path}: no 'generator/' group; not a generator file")
    others = {key: value for key, value in datasets.items() if not key.startswith(prefix)}
    return state, others, attrs


def _generator_from_state(state: Mapping[str, torch.Tensor]) -> Generator:
    """Rebuild a generator (latent size and width read off the first layer's weight) on
    the CPU, in eval mode with ``norm = "stored"``."""
    from lowshot.models import Generator

    first = state["net.0.weight"]  # (latent, 8 * width, 4, 4)
    generator = Generator(int(first.shape[0]), int(first.shape[1]) // 8)
    generator.load_state_dict(dict(state))
    generator.norm = "stored"
    return generator.eval()


def save_gan(
    path: str | os.PathLike[str], generator: Generator, attrs: Mapping[str, Any] | None = None
) -> None:
    """Write a WGAN-GP generator (state with BN statistics) and ``attrs``."""
    state = {k: v.detach().cpu() for k, v in generator.state_dict().items()}
    save_generator(path, state, None, {"latent_dim": generator.latent_dim, **(attrs or {})})


def load_gan(path: str | os.PathLike[str]) -> Generator:
    """Read ``save_gan``'s file -> generator on the CPU, eval mode, ``norm = "stored"``."""
    state, _, _ = load_generator(path)
    return _generator_from_state(state)


@dataclass(frozen=True, eq=False)
class LowshotModel:
    """A low-shot model file (``load_lowshot``).

    generator: on the CPU, in eval mode with ``norm = "stored"`` (calibrated statistics);
    codes: (S, k) float32, the fitted z_i; mean (k,) and covariance (k, k) float32: the
    shrunk Gaussian fitted to the codes, the prior recovery starts from; attrs: the file's
    attributes (loss, mmd_bandwidth, covariance_shrinkage, iterations, latent_dim, shots,
    seed, ...). ``eq=False``: compared by identity (tensors have no single truth value).
    """

    generator: Generator
    codes: torch.Tensor
    mean: torch.Tensor
    covariance: torch.Tensor
    attrs: dict[str, Any]


def save_lowshot(
    path: str | os.PathLike[str], result: Any, attrs: Mapping[str, Any] | None = None
) -> None:
    """Write a low-shot model: generator state (BN statistics included), codes, prior.

    result: a ``lowshot.training.LowshotResult`` (typed ``Any``: importing it here, even
    for type checking only, would make the data stage's imports reach the training's).
    Attrs: loss, mmd_bandwidth (none for l2), covariance_shrinkage, iterations (steps
    done), latent_dim, shots, then the caller's ``attrs`` (which win on a clash).
    """
    base = {
        "loss": result.loss,
        "mmd_bandwidth": result.bandwidth,
        "covariance_shrinkage": result.shrinkage,
        "iterations": result.step,
        "latent_dim": int(result.codes.shape[1]),
        "shots": int(result.codes.shape[0]),
    }
    extra = {
        "codes": result.codes.detach().cpu().float(),
        "prior/mean": result.mean.detach().cpu().float(),
        "prior/covariance": result.covariance.detach().cpu().float(),
    }
    state = {k: v.detach().cpu() for k, v in result.generator.state_dict().items()}
    save_generator(path, state, extra, {**base, **(attrs or {})})


def load_lowshot(path: str | os.PathLike[str]) -> LowshotModel:
    """Read ``save_lowshot``'s file (raises ValueError for a file without codes and prior,
    e.g. a GAN generator's)."""
    import torch

    state, others, attrs = load_generator(path)
    missing = {"codes", "prior/mean", "prior/covariance"} - set(others)
    if missing:
        raise ValueError(f"{path}: not a low-shot model file, missing {sorted(missing)}")
    codes, mean, covariance = (
        torch.from_numpy(np.asarray(others[name]))
        for name in ("codes", "prior/mean", "prior/covariance")
    )
    return LowshotModel(_generator_from_state(state), codes, mean, covariance, attrs)


@dataclass(frozen=True, eq=False)
class LearnedRegStats:
    """The learned regulariser of CS-DIP (Van Veen et al. 2018): a Gaussian over the
    per-layer weight means of untrained networks fitted to S examples
    (``lowshot.training.learned_reg``; file ``results/models/learned_reg/S{shots}/stats.h5``).

    layers: the L parameter names (``named_parameters`` order) the means belong to;
    mean (L,) and covariance (L, L) float64: the Gaussian N(mu, Sigma) (Sigma symmetric
    positive definite); layer_means (S, L) float64: each fitted network's per-layer means,
    row i from example i; latent_dim and width: the generator the networks were
    (``lowshot.models.Generator(latent_dim, width)``); attrs: the file's attributes
    (shots, seed, steps, lr, momentum, shrinkage, ...). ``eq=False``: compared by identity.
    """

    layers: tuple[str, ...]
    mean: torch.Tensor
    covariance: torch.Tensor
    layer_means: torch.Tensor
    latent_dim: int
    width: int
    attrs: dict[str, Any]

    def __post_init__(self) -> None:
        size = len(self.layers)
        shapes = {
            "mean": (tuple(self.mean.shape), (size,)),
            "covariance": (tuple(self.covariance.shape), (size, size)),
            "layer_means": (tuple(self.layer_means.shape[1:]), (size,)),
        }
        wrong = {name: got for name, (got, want) in shapes.items() if got != want}
        if wrong or self.layer_means.dim() != 2:
            raise ValueError(
                f"learned-regularisation statistics of {size} layers: mean must be ({size},), "
                f"covariance ({size}, {size}) and layer_means (S, {size}); got "
                f"{ {'layer_means': tuple(self.layer_means.shape), **wrong} }"
            )


def save_learned_reg(
    path: str | os.PathLike[str], stats: LearnedRegStats, attrs: Mapping[str, Any] | None = None
) -> None:
    """Write learned-regularisation statistics atomically.

    Layout: ``layers`` (L,) str; ``prior/mean`` (L,) and ``prior/covariance`` (L, L)
    float64; ``layer_means`` (S, L) float64. Attrs: latent_dim, width, shots (S), then
    ``stats.attrs`` and the caller's ``attrs`` (later ones win on a clash).
    """
    base = {
        "latent_dim": int(stats.latent_dim),
        "width": int(stats.width),
        "shots": int(stats.layer_means.shape[0]),
    }
    datasets = {
        "layers": list(stats.layers),
        "prior/mean": stats.mean.detach().cpu().double(),
        "prior/covariance": stats.covariance.detach().cpu().double(),
        "layer_means": stats.layer_means.detach().cpu().double(),
    }
    write_h5(path, datasets, {**base, **stats.attrs, **(attrs or {})})


def load_learned_reg(path: str | os.PathLike[str]) -> LearnedRegStats:
    """Read ``save_learned_reg``'s file (raises ValueError naming the file when a dataset
    or attribute is missing or the shapes disagree, e.g. for a generator file)."""
    import torch

    datasets, attrs = read_h5(path)
    needed = {"layers", "prior/mean", "prior/covariance", "layer_means"}
    missing = sorted(needed - set(datasets)) + sorted({"latent_dim", "width"} - set(attrs))
    if missing:
        raise ValueError(f"{path}: not a learned-regularisation file, missing {missing}")
    tensors = {
        name: torch.from_numpy(np.asarray(datasets[name], dtype=np.float64))
        for name in ("prior/mean", "prior/covariance", "layer_means")
    }
    try:
        return LearnedRegStats(
            layers=tuple(str(name) for name in np.atleast_1d(datasets["layers"])),
            mean=tensors["prior/mean"],
            covariance=tensors["prior/covariance"],
            layer_means=tensors["layer_means"],
            latent_dim=int(attrs["latent_dim"]),
            width=int(attrs["width"]),
            attrs=attrs,
        )
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def write_recovery(
    path: str | os.PathLike[str], fields: Mapping[str, Any], attrs: Mapping[str, Any]
) -> None:
    """Atomically write a recovery file; ``fields`` must hold exactly ``RECOVERY_FIELDS``."""
    missing = set(RECOVERY_FIELDS) - set(fields)
    unknown = set(fields) - set(RECOVERY_FIELDS)
    if missing or unknown:
        raise ValueError(f"recovery fields: missing {sorted(missing)}, unknown {sorted(unknown)}")
    lengths = {name: len(value) for name, value in fields.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"recovery fields differ in length: {lengths}")
    write_h5(path, fields, attrs)


def read_recovery(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a recovery file; raises when a field is missing."""
    fields, attrs = read_h5(path)
    missing = set(RECOVERY_FIELDS) - set(fields)
    if missing:
        raise ValueError(f"{path}: not a complete recovery file, missing {sorted(missing)}")
    return fields, attrs
