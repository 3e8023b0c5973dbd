"""A small optimisation step replayed as one CUDA graph: the launches out of the loop.

A recovery step on 50 images or a pre-training step on S <= 100 faces is a few hundred
small kernels; on a GPU, launching them from Python can take longer than running them.
Captured once as a CUDA graph, each later step is one launch with the same arithmetic.
A step that can be captured does device work only: no host synchronisation, no new
random draws, the same tensors (addresses) every time, an optimiser built
``capturable=True`` and autocast without its weight cache.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

T = TypeVar("T")

# Eager steps before the capture: the lazy initialisations (cuBLAS workspaces, the
# optimiser's state, autograd's buffers) must happen outside it; torch's CUDA-graph notes
# warm up with 3 iterations on a side stream.
GRAPH_WARMUP = 3


def graphs_on(requested: bool, device: torch.device) -> bool:
    """Whether a loop on ``device`` replays its steps as CUDA graphs: ``requested`` (the
    config's ``cuda_graphs``) and a CUDA device; the loop then builds its optimiser
    ``capturable`` and autocasts without the weight cache."""
    return requested and device.type == "cuda"


def stepper(step: Callable[[], T], device: torch.device, graphs: bool) -> Callable[[], T]:
    """What a loop calls once per step: ``replayed(step, device)`` when ``graphs``
    (``graphs_on``), else ``step`` itself. The one place every graphed loop (recovery
    stages, low-shot pre-training) turns its step into calls, so that a check or a timer
    can wrap them all (tests/test_capture_safety.py, benchmarks/recovery.py)."""
    return replayed(step, device) if graphs else step


def replayed(step: Callable[[], T], device: torch.device) -> Callable[[], T]:
    """A stand-in for ``step`` that applies it once per call, as ``step()`` would.

    The first ``GRAPH_WARMUP`` calls run ``step`` eagerly on a side stream of the CUDA
    ``device``; the next one captures it as a CUDA graph (a capture applies nothing) and
    replays the graph; every later call replays it. A call returns what ``step``
    returned: for the replays, its return at the capture, whose tensors each replay
    refreshes (read them before the next call).
    """
    calls = 0
    graph: torch.cuda.CUDAGraph | None = None
    captured: T
    side = torch.cuda.Stream(device)

    def run() -> T:
        nonlocal calls, graph, captured
        calls += 1
        if calls <= GRAPH_WARMUP:
            current = torch.cuda.current_stream(device)
            side.wait_stream(current)
            with torch.cuda.stream(side):
                result = step()
            current.wait_stream(side)
            return result
        if graph is None:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                captured = step()
        graph.replay()
        return captured

    return run


class CaptureError(RuntimeError):
    """An operation that a CUDA-graph capture would reject (``capture_check``)."""


# Index tensors of these dtypes select by a mask: the result's size depends on the data.
_MASK_DTYPES = (torch.bool, torch.uint8)
_INDEXING = ("aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_")


def _masks(value: Any) -> bool:
    """Whether ``value`` (an op argument, possibly a list of index tensors) holds a mask."""
    if isinstance(value, torch.Tensor):
        return value.dtype in _MASK_DTYPES
    if isinstance(value, list | tuple):
        return any(_masks(item) for item in value)
    return False


def capture_problem(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why the op ``func`` (an ``OpOverload``) with these arguments cannot be captured in
    a CUDA graph, or None when it can.

    - a data-dependent output (``.item()``, ``float(t)``, ``bool(t)``, ``torch.equal``):
      the host waits for the device;
    - an output whose shape depends on the data (``nonzero``, ``masked_select``,
      ``unique``, indexing by a boolean mask, reading or writing): the host must learn
      the size, which syncs, and a graph replays fixed shapes;
    - a random draw: the project draws on the CPU from seeded generators, which a CUDA
      run then copies to the card inside the step, and a replay would not draw anew;
    - a tensor made from Python data (``torch.tensor``): a host-to-device copy.
    Integer indexing (``x[idx]``, ``index_select``) is shape-static and allowed.
    """
    tags = getattr(func, "tags", ())
    # The op without its overload (aten::index, not aten::index.Tensor).
    schema = getattr(func, "_schema", None)
    name = schema.name if schema is not None else str(func)
    if torch.Tag.data_dependent_output in tags:
        return f"{name} returns data to the host (a device-to-host sync)"
    if name in _INDEXING and (_masks(args) or _masks(kwargs)):
        return f"{name} with a boolean mask: its size depends on the data (calls nonzero)"
    if torch.Tag.dynamic_output_shape in tags and name != "aten::index":
        return f"{name}: its output's shape depends on the data (a device-to-host sync)"
    if torch.Tag.nondeterministic_seeded in tags:
        return f"{name} draws random numbers inside the step"
    if name in ("aten::lift_fresh", "aten::lift_fresh_copy"):
        return f"{name}: a tensor made from host data (torch.tensor) inside the step"
    return None


def _refuse(what: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        del args, kwargs
        raise CaptureError(f"{what}: copies device data to the host inside the step")

    return refuse


def _to(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Tensor.to`` that refuses a move to the CPU (on CUDA, a device-to-host copy)."""

    def to(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        targets = [*args, kwargs.get("device")]
        for target in targets:
            if isinstance(target, str | torch.device) and torch.device(target).type == "cpu":
                raise CaptureError("Tensor.to('cpu'): copies device data to the host")
        return original(self, *args, **kwargs)

    return to


@contextlib.contextmanager
def capture_check() -> Iterator[None]:
    """Raise ``CaptureError`` at the first operation in the block that a CUDA-graph capture
    would reject (``capture_problem``), or at a copy to the host (``.cpu()``,
    ``.tolist()``, ``.numpy()``, ``.to("cpu")``). Runs the block on any device, the CPU
    included, with its real arithmetic, so that a step that would break graph capture
    fails on the CPU before anyone rents a GPU.

    Not covered: what a CPU run cannot show (an operation on a CPU tensor that a CUDA run
    would copy to the card; kernels that torch itself cannot capture). Every thread's
    work runs under torch's dispatch mode only on this thread: the CPU autograd engine
    runs the backward here, so it is checked too.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    class Check(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            kwargs = kwargs or {}
            problem = capture_problem(func, args, kwargs)
            if problem is not None:
                raise CaptureError(problem)
            return func(*args, **kwargs)

    patched = {
        "cpu": _refuse("Tensor.cpu()"),
        "tolist": _refuse("Tensor.tolist()"),
        "numpy": _refuse("Tensor.numpy()"),
        "to": _to(torch.Tensor.to),
    }
    originals = {name: getattr(torch.Tensor, name) for name in patched}
    for name, replacement in patched.items():
        setattr(torch.Tensor, name, replacement)
    try:
        with Check():
            yield
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
