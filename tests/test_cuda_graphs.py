"""``lowshot.cuda_graphs.replayed``: each call applies the step exactly once.

No CUDA here: ``torch.cuda``'s streams and graphs are replaced by stand-ins that record a
capture instead of making one (a captured step applies nothing until replayed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from lowshot import cuda_graphs


class StandInGraph:
    def __init__(self) -> None:
        self.capturing = False
        self.captured: Any = None

    def replay(self) -> None:
        self.captured()


class StandInStream:
    def __init__(self, device: Any = None) -> None:
        del device

    def wait_stream(self, other: Any) -> None:
        del other


@pytest.fixture
def graphs(monkeypatch: pytest.MonkeyPatch) -> list[StandInGraph]:
    made: list[StandInGraph] = []

    def new_graph() -> StandInGraph:
        made.append(StandInGraph())
        return made[-1]

    @contextlib.contextmanager
    def capture(graph: StandInGraph) -> Iterator[None]:
        graph.capturing = True
        yield
        graph.capturing = False

    monkeypatch.setattr(torch.cuda, "Stream", StandInStream)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: StandInStream())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", new_graph)
    monkeypatch.setattr(torch.cuda, "graph", capture)
    return made


@pytest.mark.parametrize(
    "calls", [0, 1, cuda_graphs.GRAPH_WARMUP, cuda_graphs.GRAPH_WARMUP + 1, 10]
)
def test_each_call_applies_the_step_once(graphs: list[StandInGraph], calls: int) -> None:
    applied: list[str] = []

    def step() -> int:
        if graphs and graphs[-1].capturing:  # recorded, applied by each replay
            graphs[-1].captured = lambda: applied.append("replay")
            return -1
        applied.append("eager")
        return len(applied)

    run = cuda_graphs.replayed(step, torch.device("cpu"))
    returned = [run() for _ in range(calls)]
    warmup = min(calls, cuda_graphs.GRAPH_WARMUP)
    assert applied == ["eager"] * warmup + ["replay"] * (calls - warmup)
    assert len(graphs) == (1 if calls > warmup else 0)  # one capture, however many calls
    # Warm-up calls return the eager result; replays what the capture returned.
    assert returned == [1, 2, 3][:warmup] + [-1] * (calls - warmup)
