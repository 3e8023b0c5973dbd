"""Device and numerics selection for the torch rules."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """Map the config's ``device`` (auto, cpu, cuda) to a ``torch.device``.

    ``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but torch sees no CUDA device")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def prepare_device(name: str = "auto", threads: int | None = None) -> torch.device:
    """Resolve ``name`` (``resolve_device``), cap torch's CPU threads, log the device.

    ``threads``: the CPUs the job was given (a rule's ``threads``). torch otherwise starts
    one thread per core of the whole node, and jobs sharing a node (or a Slurm allocation
    of a few cores on a large node) then fight over cores, which slows CPU runs manyfold.
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, not {threads}")
        torch.set_num_threads(threads)
    device = resolve_device(name)
    log_device(device)
    return device


@contextlib.contextmanager
def autocast(device: torch.device, precision: str = "fp32", cache: bool = True) -> Iterator[None]:
    """bf16 autocast on CUDA when ``precision == 'bf16'``; plain fp32 otherwise.
    ``cache``: autocast's cache of cast weights (off inside a CUDA-graph capture)."""
    if precision == "bf16" and device.type == "cuda":
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, cache_enabled=cache):
            yield
    else:
        yield


def synchronise(device: torch.device) -> None:
    """Wait until ``device`` has run all its queued work (CUDA); nothing elsewhere. For
    timing: a CUDA call returns before its kernels have run."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def log_device(device: torch.device) -> None:
    """Log which device a rule runs on."""
    if device.type == "cuda":
        log.info("device: %s (%s)", device, torch.cuda.get_device_name(device))
    else:
        log.info("device: cpu (%d torch threads)", torch.get_num_threads())


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process in MiB: CUDA allocator peak on GPU, max RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log_peak_memory(device: torch.device, allocated: bool = True) -> None:
    """Log a job's "peak memory" (``peak_memory_mb``; ``allocated=False`` for a job whose
    own summary line gives it) and, on CUDA, the peak memory torch's caching allocator
    reserved from the card (MiB): what the process held on the card, its CUDA context
    aside, so the figure to size ``gpu_mem_mb`` by. ``lowshot.reference`` reads both."""
    if allocated:
        log.info("peak memory: %.0f MiB", peak_memory_mb(device))
    if device.type == "cuda":
        log.info("peak reserved memory: %.0f MiB", torch.cuda.max_memory_reserved(device) / 2**20)
