"""Each trainer's checkpoint resumed on the card, as a preempted job resumes: WGAN-GP,
and the low-shot pre-training with CUDA graphs switched between the writing run and the
resuming one (its optimiser keeps the resuming run's ``capturable``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from lowshot.config import schema_defaults
from lowshot.cuda_graphs import GRAPH_WARMUP
from lowshot.training import TrainingRun, build_lowshot, pretrain_lowshot, train_wgan_gp

# Our bound for a resumed run against an uninterrupted one with the same settings: with
# deterministic cuDNN both run the same kernels on the same inputs (the checkpoint holds
# networks, optimisers and the CPU generators' states exactly), so they agree to the last
# bit or nearly; 1e-6 is about 10 float32 ulps at the weights' scale and 100 times below
# one Adam step at WGAN-GP's learning rate (1e-4), so a resume that lost the optimiser's
# or the generators' state fails it.
SAME_RUN = 1e-6
# With CUDA graphs switched on or off between the two runs, the optimisers differ in how
# they compute the bias correction (fp32 on the card when capturable, float64 on the host
# otherwise): a relative rounding of float32's precision (6e-8) in each step's size, far
# below 1e-5 in the parameters after 10 steps of lr 1e-3.
GRAPHS_SWITCHED = 1e-5


@pytest.fixture(autouse=True)
def deterministic(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    yield


def run_of(device: torch.device, **mechanics) -> TrainingRun:  # type: ignore[no-untyped-def]
    return TrainingRun(
        latent_dim=32, seed=4, device=device, precision="fp32", progress=False, width=16,
        **mechanics,
    )  # fmt: skip


def largest_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    other = b.state_dict()
    return max(
        float((value.double() - other[key].double()).abs().max())
        for key, value in a.state_dict().items()
    )


def test_a_wgan_gp_checkpoint_resumes_on_the_card(device: torch.device, tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (32, 64, 64, 3), dtype=np.uint8)
    settings = {
        **schema_defaults("gan"), "iterations": 4, "batch_size": 8, "critic_steps": 2,
        "checkpoint_every": 2, "log_every": 1, "calibration_samples": 16,
    }  # fmt: skip
    whole = train_wgan_gp(images, settings, run_of(device))
    checkpoint = tmp_path / "gan.pt"
    first = train_wgan_gp(
        images, settings, run_of(device, checkpoint_path=checkpoint, stop_after=2)
    )
    assert not first.finished
    resumed = train_wgan_gp(images, settings, run_of(device, checkpoint_path=checkpoint))
    assert resumed.finished and resumed.start_step == 2
    assert [row["step"] for row in resumed.log] == [1, 2, 3, 4]
    assert largest_difference(resumed.generator, whole.generator) <= SAME_RUN
    assert largest_difference(resumed.critic, whole.critic) <= SAME_RUN


LOWSHOT = {
    "iterations": 2 * (GRAPH_WARMUP + 2),  # resumed halfway: warm-up, capture and replays left
    "lr": 1e-3, "mmd_bandwidth": "median", "covariance_shrinkage": 0.1,
    "checkpoint_every": GRAPH_WARMUP + 2, "log_every": 1,
}  # fmt: skip


@pytest.mark.parametrize(("written", "resumed"), [(False, True), (True, False)])
def test_a_lowshot_checkpoint_resumes_with_cuda_graphs_switched(
    written: bool, resumed: bool, device: torch.device, on_card: bool, tmp_path: Path
) -> None:
    faces = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    whole = pretrain_lowshot(faces, LOWSHOT, run_of(device, cuda_graphs=resumed), loss="mmd")
    checkpoint = tmp_path / "lowshot.pt"
    half = LOWSHOT["checkpoint_every"]
    first = pretrain_lowshot(
        faces, LOWSHOT, run_of(device, cuda_graphs=written, checkpoint_path=checkpoint,
                               stop_after=half), loss="mmd",
    )  # fmt: skip
    assert not first.finished
    later = run_of(device, cuda_graphs=resumed, checkpoint_path=checkpoint)
    # The optimiser the resumed run builds, loaded from the checkpoint, keeps its own flag.
    trainer = build_lowshot(faces, LOWSHOT, later, loss="mmd")
    from lowshot.training import loop

    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    loop.load_optimiser_state(trainer.optimiser, saved["optimiser"])
    assert trainer.optimiser.param_groups[0]["capturable"] is (resumed and on_card)
    result = pretrain_lowshot(faces, LOWSHOT, later, loss="mmd")
    assert result.finished and result.start_step == half
    difference = float((result.codes - whole.codes).abs().max())
    assert difference <= GRAPHS_SWITCHED, f"codes {difference:.2e} from the uninterrupted run"
    assert largest_difference(result.generator, whole.generator) <= GRAPHS_SWITCHED
