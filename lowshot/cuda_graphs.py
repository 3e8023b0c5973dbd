"""A small optimisation step replayed as one CUDA graph: the launches out of the loop.

A recovery step on 50 images or a pre-training step on S <= 100 faces is a few hundred
small kernels; on a GPU, launching them from Python can take longer than running them.
Captured once as a CUDA graph, each later step is one launch with the same arithmetic.
A step that can be captured does device work only: no host synchronisation, no new
random draws, the same tensors (addresses) every time, an optimiser built
``capturable=True`` and autocast without its weight cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")

# Eager steps before the capture: the lazy initialisations (cuBLAS workspaces, the
# optimiser's state, autograd's buffers) must happen outside it; torch's CUDA-graph notes
# warm up with 3 iterations on a side stream.
GRAPH_WARMUP = 3


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
