"""CUDA graphs on against off, for every registered method on every problem family,
over 20 steps: a replayed step must compute what the plain step does."""

from __future__ import annotations

import pytest
import torch
from standins import one_problem_per_family, operator_of, run_method

from lowshot import cuda_graphs
from lowshot.methods import METHODS

STEPS = 20
# Our bound: a replayed step runs the same kernels on the same tensors; what differs is
# the optimiser built ``capturable`` (its bias corrections computed in fp32 on the card
# instead of in float64 on the host), a relative rounding of float32's precision (6e-8)
# in each step's size. 1e-4 on images in [-1, 1] leaves that rounding room to grow over 20
# steps, while a graph that replays stale inputs or skips an update is off by whole
# steps. Iterations and divergence flags must match exactly.
TOLERANCE = 1e-4


@pytest.mark.parametrize("problem", one_problem_per_family())
@pytest.mark.parametrize("kind", sorted(METHODS.names()))
def test_graphs_on_and_off_recover_the_same_images(
    kind: str, problem: str, device: torch.device, on_card: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = operator_of(problem, device)
    truth = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(5)) * 2 - 1
    y = operator.A(truth.to(device))
    plain = run_method(kind, operator, y, steps=STEPS, cuda_graphs=False, device=device)
    captured = []
    replayed = cuda_graphs.replayed

    def counting(step, on):  # type: ignore[no-untyped-def]
        captured.append(step)
        return replayed(step, on)

    monkeypatch.setattr(cuda_graphs, "replayed", counting)
    graphed = run_method(kind, operator, y, steps=STEPS, cuda_graphs=True, device=device)
    if on_card and kind != "sparsity":  # FISTA's loop is never graphed
        assert captured, f"{kind} ran no step as a CUDA graph"
    difference = float((graphed.images - plain.images).abs().max())
    assert difference < TOLERANCE, f"{kind} on {problem}: {difference:.2e} with graphs"
    assert (graphed.iterations == plain.iterations).all()
    assert (graphed.diverged == plain.diverged).all()
