"""Device and numerics selection for the torch rules."""

from __future__ import annotations

import contextlib
import logging
import os
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


def prepare_device(
    name: str = "auto",
    threads: int | None = None,
    precision: str = "fp32",
    gpu: str | None = None,
) -> torch.device:
    """Resolve ``name`` (``resolve_device``), cap torch's CPU threads, apply the precision
    policy (``set_precision``) and log the device and the precision in one line.

    ``threads``: the CPUs the job was given (a rule's ``threads``). torch otherwise starts
    one thread per core of the whole node, and jobs sharing a node (or a Slurm allocation
    of a few cores on a large node) then fight over cores, which slows CPU runs manyfold.
    ``precision``: the config's ``precision`` (``PRECISIONS``).
    ``gpu``: what the job's resources asked of a GPU (``lowshot.jobs.gpu_request``, e.g.
    ``"gpu=1"`` under profiles/slurm), or None. A job that asked for one fails here, at
    once, when CUDA cannot be used (``require_cuda``), unless its device is ``cpu``.
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, not {threads}")
        torch.set_num_threads(threads)
    if gpu is not None and name != "cpu":
        require_cuda(gpu)
    elif gpu is not None:
        log.warning("the job asked for a GPU (%s), but device: cpu runs it on the CPU", gpu)
    device = resolve_device(name)
    set_precision(precision, device)
    log_device(device, precision)
    return device


def _start_cuda() -> None:
    """Create this process's CUDA context (its first tensor on the card)."""
    torch.empty(0, device="cuda")


def require_cuda(gpu: str) -> None:
    """Fail at once, with what to check, when a job that asked for a GPU (``gpu``: its
    resources, e.g. ``"gpu=1"``) cannot use CUDA: torch sees no card, or cannot start
    one (an exclusive-process card already held by another process). Without this,
    ``device: auto`` would fall back to the CPU and train for the whole time limit and
    its retries."""
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        raise RuntimeError(
            f"this job asked for a GPU ({gpu}), but torch sees no CUDA device (torch "
            f"{torch.__version__}, built for CUDA {torch.version.cuda}; "
            f"CUDA_VISIBLE_DEVICES={visible}). Stopping now rather than running on the CPU. "
            "Check that the job's node has a card and a driver (nvidia-smi), that the Slurm "
            "partition gives GPUs (SBATCH_PARTITION), and that torch is a CUDA build; to run "
            "on the CPU on purpose, use the default profile or --config device=cpu."
        )
    try:  # the CUDA context, which the job creates anyway: fail here if it cannot
        _start_cuda()
    except RuntimeError as error:
        raise RuntimeError(
            f"this job asked for a GPU ({gpu}) and torch sees one, but cannot start CUDA on "
            f"it: {error}. On a card in exclusive-process compute mode (nvidia-smi "
            "--query-gpu=compute_mode --format=csv) only one process may use it at a time: "
            "see profiles/gpu-node/config.yaml for running one torch job at a time."
        ) from error


# The config's ``precision`` values (the schema's enum is filled from here); what each
# means is ``set_precision``'s docstring, the policy's one home.
PRECISIONS = ("fp32", "tf32", "bf16")
_EFFECTS = {
    "fp32": "IEEE fp32 everywhere, no TF32",
    "tf32": "TF32 in cuDNN convolutions and cuBLAS matrix products",
    "bf16": "bf16 autocast of the networks' forward passes, IEEE fp32 elsewhere",
}


def check_precision(precision: str) -> str:
    """``precision`` itself when it is one of ``PRECISIONS``; else ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def set_precision(precision: str, device: torch.device) -> str:
    """Apply the precision policy to this process's torch and return the precision its
    arithmetic has on ``device`` (``effective_precision``).

    - ``fp32``: IEEE fp32 everywhere. TF32 is switched off explicitly in cuDNN and cuBLAS:
      torch's own default lets cuDNN run fp32 convolutions in TF32 (10-bit mantissas)
      on Ampere and later cards, so without this "fp32" would be TF32 for every
      convolution of the z search, the vmap path and both trainers, and IEEE fp32 for the
      batched-GEMM path and the operators.
    - ``tf32``: opts in to TF32 for cuDNN convolutions and cuBLAS matrix products, on CUDA.
    - ``bf16``: the networks' forward passes under bf16 autocast (``autocast``), on CUDA;
      everything outside autocast (losses, operators, optimiser) IEEE fp32, as ``fp32``.

    On the CPU every value computes IEEE fp32 (TF32 and bf16 autocast are CUDA-only
    here). The setting is process-wide torch state: a job sets it once
    (``prepare_device``), and every recovery stage and trainer sets its own precision
    again, so that a caller outside a job (a benchmark, a test) gets the same arithmetic.
    """
    check_precision(precision)
    tf32 = precision == "tf32" and device.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    return effective_precision(precision, device)


def effective_precision(precision: str, device: torch.device) -> str:
    """What the arithmetic of a run of ``precision`` on ``device`` is, read from torch's
    flags as they stand: "bf16" (bf16 autocast on CUDA), "tf32" (TF32 allowed in cuDNN
    or cuBLAS on CUDA) or "fp32" (IEEE fp32: always on the CPU). Recorded beside
    ``precision`` in every output file, so that a file says what ran, not only what
    was asked for."""
    check_precision(precision)
    if device.type != "cuda":
        return "fp32"
    if precision == "bf16":
        return "bf16"
    tf32 = torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32
    return "tf32" if tf32 else "fp32"


@contextlib.contextmanager
def autocast(device: torch.device, precision: str = "fp32", cache: bool = True) -> Iterator[None]:
    """bf16 autocast on CUDA when ``precision == 'bf16'``; nothing otherwise (fp32 and
    tf32: ``set_precision``). ``cache``: autocast's cache of cast weights (off inside a
    CUDA-graph capture)."""
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


def log_device(device: torch.device, precision: str | None = None) -> None:
    """Log which device a rule runs on and, given its ``precision``, the arithmetic:
    ``device: cuda:0 (NAME), precision fp32 (IEEE fp32 everywhere, no TF32)``."""
    if device.type == "cuda":
        where = f"device: {device} ({torch.cuda.get_device_name(device)})"
    else:
        where = f"device: cpu ({torch.get_num_threads()} torch threads)"
    if precision is None:
        log.info("%s", where)
        return
    effective = effective_precision(precision, device)
    note = _EFFECTS[effective] + ("" if effective == precision else f"; {precision} asked")
    log.info("%s, precision %s (%s)", where, effective, note)


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
