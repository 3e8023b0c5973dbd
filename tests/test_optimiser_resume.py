"""A resumed training keeps its own optimiser's implementation flags (``capturable``,
``fused``, ``foreach``, ``differentiable``), not the checkpoint's
(``lowshot.training.loop.load_optimiser_state``): a checkpoint written with CUDA graphs
off and resumed with them on must stay capturable, and one written on a card
(``capturable=True``) must resume on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lowshot.training import TrainingRun, pretrain_lowshot
from lowshot.training.loop import OPTIMISER_FLAGS, load_optimiser_state

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = {
    "iterations": 4,
    "lr": 1e-3,
    "mmd_bandwidth": "median",
    "covariance_shrinkage": 0.1,
    "checkpoint_every": 2,
    "log_every": 1,
}


def stepped_adam(**flags: bool) -> tuple[torch.optim.Adam, torch.Tensor]:
    """An Adam over one parameter, after one step."""
    weight = torch.nn.Parameter(torch.linspace(-1, 1, 6))
    optimiser = torch.optim.Adam([weight], lr=0.1, **flags)
    weight.square().sum().backward()
    optimiser.step()
    return optimiser, weight


@pytest.mark.parametrize(
    ("saved", "current"),
    [
        ({"capturable": False}, {"capturable": True}),  # graphs off, resumed with graphs on
        ({"capturable": True, "fused": True}, {"foreach": False}),  # a card's, on the CPU
        ({"foreach": True}, {"fused": True}),
    ],
)
def test_the_current_flags_survive_the_load(saved: dict, current: dict) -> None:
    old, _ = stepped_adam(**{key: value for key, value in saved.items() if key != "capturable"})
    state = old.state_dict()
    state["param_groups"][0].update(saved)  # what the writing run's optimiser recorded
    new = torch.optim.Adam([torch.nn.Parameter(torch.zeros(6))], lr=0.5, **current)
    before = {key: new.param_groups[0][key] for key in OPTIMISER_FLAGS}
    load_optimiser_state(new, state)
    group = new.param_groups[0]
    assert {key: group[key] for key in OPTIMISER_FLAGS} == before
    # What the checkpoint learned is loaded: the learning rate and the moments.
    assert group["lr"] == 0.1
    (param,) = group["params"]
    torch.testing.assert_close(
        new.state[param]["exp_avg"], old.state[old.param_groups[0]["params"][0]]["exp_avg"]
    )
    # The step count: float32 on the parameters' device (the CPU here), as torch keeps it.
    step = new.state[param]["step"]
    assert step.device == param.device and step.dtype == torch.float32


def test_plain_load_state_dict_takes_the_checkpoints_flags() -> None:
    """Why the function exists: torch's own load replaces the flags."""
    old, _ = stepped_adam()
    new = torch.optim.Adam([torch.nn.Parameter(torch.zeros(6))], lr=0.1, capturable=True)
    new.load_state_dict(old.state_dict())
    assert new.param_groups[0]["capturable"] is False


def card_checkpoint(path: Path) -> None:
    """Make the checkpoint at ``path`` look written on a card with CUDA graphs on: its
    optimiser's groups say ``capturable=True`` (its tensors load on the CPU anyway)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for group in state["optimiser"]["param_groups"]:
        group["capturable"] = True
    torch.save(state, path)


def run_of(checkpoint: Path | None = None, stop_after: int | None = None) -> TrainingRun:
    return TrainingRun(
        latent_dim=16, seed=3, device="cpu", precision="fp32", progress=False, width=4,
        checkpoint_path=checkpoint, stop_after=stop_after,
    )  # fmt: skip


def test_a_cards_checkpoint_resumes_on_the_cpu_as_if_never_interrupted(tmp_path: Path) -> None:
    faces = torch.rand(3, 3, 64, 64) * 2 - 1
    whole = pretrain_lowshot(faces, SETTINGS, run_of(), loss="l2")
    checkpoint = tmp_path / "checkpoint.pt"
    first = pretrain_lowshot(faces, SETTINGS, run_of(checkpoint, stop_after=2), loss="l2")
    assert not first.finished and checkpoint.exists()
    card_checkpoint(checkpoint)
    # torch's plain load would now fail at the first step ("If capturable=True, params
    # and state_steps must be on supported devices"); the resumed run keeps its own flags.
    resumed = pretrain_lowshot(faces, SETTINGS, run_of(checkpoint), loss="l2")
    assert resumed.finished and resumed.start_step == 2
    torch.testing.assert_close(resumed.codes, whole.codes, rtol=0, atol=0)
    for key, value in whole.generator.state_dict().items():
        torch.testing.assert_close(resumed.generator.state_dict()[key], value, rtol=0, atol=0)
