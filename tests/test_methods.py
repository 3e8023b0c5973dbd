"""Recovery methods: z-only recovery accuracy, batch = one by one, independence, divergence.

Small DCGAN generators (width 8 or 16 instead of 64) keep the tests fast; the methods do
not depend on the width. The pre-trained stand-in gets realistic stored batch-norm
statistics by one pass in training mode over random codes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lowshot import jobs
from lowshot.config import load_config
from lowshot.io import LowshotModel
from lowshot.methods import (
    METHODS,
    RecoveryResult,
    engine,
    method_settings,
    recover,
    resolve_settings,
)
from lowshot.methods.engine import (
    JOINT_STAGE,
    LATENT_SEARCH,
    best_restart,
    optimise_joint,
    optimise_latent,
    stack_parameters,
    standard_normal,
    working_copy,
)
from lowshot.methods.lowshot import RECIPE, initial_codes
from lowshot.models import Generator, init_dcgan_weights
from lowshot.problems import GaussianNoise, Operator, measure
from lowshot.problems.compressed_sensing import GaussianCS
from lowshot.seeds import derive_seed

METHOD_KINDS = ("lowshot", "untrained", "csgm", "iagan")

LATENT = 128
PROBLEM = "cs-0.05"
JOINT = {"joint_steps": 3, "joint_theta_lr": 1e-3, "joint_z_lr": 1e-3}
FAST: dict[str, dict[str, Any]] = {
    "lowshot": {"z_steps": 4, "z_lr": 5e-2, "restarts": 2, **JOINT},
    "untrained": {"steps": 4, "lr": 1e-3, "window": 1},
    "csgm": {"steps": 4, "lr": 5e-2, "restarts": 2},
    "iagan": JOINT,
}
# IAGAN continues CSGM's 4 steps; the window of 1 returns the untrained network's last.
TOTAL_STEPS = {"lowshot": 7, "untrained": 4, "csgm": 4, "iagan": 7}
RESTARTS = {"lowshot": 2, "untrained": 1, "csgm": 2, "iagan": 2}


def small_generator(seed: int, width: int = 8) -> Generator:
    generator = Generator(LATENT, width=width)
    init_dcgan_weights(generator, torch.Generator().manual_seed(seed))
    return generator


def calibrated(generator: Generator, seed: int = 0) -> Generator:
    """Stored-mode generator whose running statistics are those of 64 random codes."""
    for module in generator.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one pass gives the batch statistics
    generator.norm = "batch"
    generator.train()
    with torch.no_grad():
        generator(standard_normal([derive_seed(seed, "calibrate", i) for i in range(64)], LATENT))
    generator.norm = "stored"
    return generator.eval()


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1], computed on [0, 1]."""
    mse = ((a - b) / 2).clamp(-1, 1).square().flatten(1).mean(dim=1)
    return 10 * torch.log10(1 / mse)


@pytest.fixture(scope="module")
def pretrained() -> Generator:
    return calibrated(small_generator(seed=1))


@pytest.fixture(scope="module")
def prior() -> tuple[torch.Tensor, torch.Tensor]:
    """A shrunk Gaussian fitted to 10 codes: singular sample covariance + 0.1 * I."""
    codes = standard_normal(range(10), LATENT) * 0.5 + 0.3
    centred = codes - codes.mean(0)
    covariance = 0.9 * centred.T @ centred / 9 + 0.1 * torch.eye(LATENT)
    return codes.mean(0), covariance


@pytest.fixture(scope="module")
def operator() -> Operator:
    return GaussianCS(0.05, seed=derive_seed(0, "operator", PROBLEM))


@pytest.fixture(scope="module")
def measurements(pretrained: Generator, operator: Operator) -> torch.Tensor:
    """y (4, m) of four images in the range of the pre-trained stand-in."""
    with torch.no_grad():
        x = pretrained(standard_normal([101, 102, 103, 104], LATENT))
    return measure(operator, GaussianNoise(), x, [0, 1, 2, 3])


def image_seeds(method: str, ids: list[int]) -> list[int]:
    return [derive_seed(0, method, PROBLEM, i) for i in ids]


def run(
    method: str,
    operator: Operator,
    y: torch.Tensor,
    ids: list[int],
    pretrained: Generator,
    prior: tuple[torch.Tensor, torch.Tensor],
    **overrides: Any,
) -> RecoveryResult:
    settings = overrides.pop("settings", FAST[method])
    # untrained: the small generator gives only the architecture, re-initialised per image.
    models = {
        "untrained": small_generator(seed=5),
        "lowshot": lowshot_model(pretrained, prior),
        "csgm": pretrained,
        "iagan": pretrained,
    }
    # IAGAN continues the CSGM result of the same images.
    start = run("csgm", operator, y, ids, pretrained, prior) if method == "iagan" else None
    return recover(
        method,
        operator,
        y[ids],
        seeds=image_seeds(method, ids),
        settings=settings,
        model=models[method],
        progress=False,
        start=start,
        **overrides,
    )


def lowshot_model(generator: Generator, prior: tuple[torch.Tensor, torch.Tensor]) -> LowshotModel:
    mean, covariance = prior
    return LowshotModel(
        generator=generator,
        codes=torch.zeros(10, LATENT),
        mean=mean,
        covariance=covariance,
        attrs={},
    )


def assert_same_images(a: RecoveryResult, b: RecoveryResult) -> None:
    torch.testing.assert_close(a.images, b.images, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a.measurement_loss, b.measurement_loss, rtol=1e-3, atol=1e-6)
    np.testing.assert_array_equal(a.iterations, b.iterations)
    np.testing.assert_array_equal(a.restarts, b.restarts)
    np.testing.assert_array_equal(a.diverged, b.diverged)


def test_latent_recovery_reaches_35_db_at_ratio_0_1() -> None:
    # A fixed random DCGAN (width 16) that normalises each image by its own statistics,
    # its last layer scaled so that images spread like faces (std ~0.45 in [-1, 1]): two
    # unrelated outputs are ~13 dB apart, so 35 dB means the code was found.
    generator = small_generator(seed=1, width=16)
    generator.norm = "per_image"
    generator.requires_grad_(False)
    with torch.no_grad():
        codes = standard_normal(range(100, 116), LATENT).reshape(16, LATENT, 1, 1)
        generator.net[-2].weight *= 0.6 / generator.net[:-1](codes).std()
    operator = GaussianCS(0.1, seed=3)
    with torch.no_grad():
        truth = generator(standard_normal([11, 12], LATENT))
        start = standard_normal([21, 22], LATENT)
        initial = psnr(generator(start), truth)
    y = operator.A(truth)
    result = optimise_latent(generator, operator, y, start, steps=150, lr=0.1, progress=False)
    assert (initial < 20).all()
    assert (psnr(result.images, truth) > 35).all()
    assert not result.diverged.any()
    assert (result.iterations == 150).all()


@pytest.mark.parametrize("method", METHOD_KINDS)
def test_batch_equals_one_by_one(
    method: str,
    operator: Operator,
    measurements: torch.Tensor,
    pretrained: Generator,
    prior: tuple[torch.Tensor, torch.Tensor],
) -> None:
    batch = run(method, operator, measurements, [0, 1, 2], pretrained, prior)
    alone = RecoveryResult.concat(
        [run(method, operator, measurements, [i], pretrained, prior) for i in range(3)]
    )
    assert_same_images(batch, alone)
    assert batch.images.shape == (3, 3, 64, 64)
    assert batch.images.abs().max() <= 1
    assert not batch.diverged.any()
    assert (batch.iterations == TOTAL_STEPS[method]).all()
    assert (batch.restarts == RESTARTS[method]).all()
    assert batch.z.shape == (3, LATENT)
    # The images were really optimised: the three results differ from each other.
    assert not torch.allclose(batch.images[0], batch.images[1], atol=1e-3)


@pytest.mark.parametrize("method", ["lowshot", "untrained"])
def test_result_does_not_depend_on_batch_mates(
    method: str,
    operator: Operator,
    measurements: torch.Tensor,
    pretrained: Generator,
    prior: tuple[torch.Tensor, torch.Tensor],
) -> None:
    first = run(method, operator, measurements, [0, 1, 2], pretrained, prior)
    second = run(method, operator, measurements, [2, 3, 0], pretrained, prior, max_batch=2)
    torch.testing.assert_close(first.images[0], second.images[2], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(first.images[2], second.images[0], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(first.images[1], second.images[1], atol=1e-3)


def test_seed_determines_the_result(
    operator: Operator, measurements: torch.Tensor, pretrained: Generator
) -> None:
    def once(seed: int) -> torch.Tensor:
        return recover(
            "csgm",
            operator,
            measurements[:1],
            seeds=[seed],
            settings={"steps": 2, "restarts": 1},
            model=pretrained,
            progress=False,
        ).images

    assert torch.equal(once(5), once(5))
    assert not torch.allclose(once(5), once(6), atol=1e-3)


def test_untrained_builds_the_paper_dcgan_per_image(operator: Operator) -> None:
    y = torch.randn(1, operator.m, generator=torch.Generator().manual_seed(0))

    def once(seed: int) -> RecoveryResult:
        return recover(
            "untrained",
            operator,
            y,
            seeds=[seed],
            settings={"steps": 1, "window": 1},
            progress=False,
        )

    first, again, other = once(1), once(1), once(2)
    assert torch.equal(first.images, again.images)
    assert not torch.allclose(first.images, other.images, atol=1e-4)
    assert torch.isfinite(first.images).all()
    assert first.iterations.tolist() == [1] and first.restarts.tolist() == [1]


def test_nan_measurement_is_flagged_and_isolated(
    operator: Operator,
    measurements: torch.Tensor,
    pretrained: Generator,
    prior: tuple[torch.Tensor, torch.Tensor],
) -> None:
    y = measurements.clone()
    y[1, 0] = math.nan
    poisoned = run("lowshot", operator, y, [0, 1, 2], pretrained, prior)
    clean = run("lowshot", operator, measurements, [0, 2], pretrained, prior)
    assert poisoned.diverged.tolist() == [False, True, False]
    assert torch.isnan(poisoned.images[1]).all()
    assert np.isnan(poisoned.measurement_loss[1])
    assert poisoned.iterations[1] == 0
    torch.testing.assert_close(poisoned.images[[0, 2]], clean.images, rtol=1e-4, atol=1e-4)


def test_absurd_learning_rate_diverges_and_keeps_last_finite_iterate(
    operator: Operator,
    measurements: torch.Tensor,
    pretrained: Generator,
    prior: tuple[torch.Tensor, torch.Tensor],
) -> None:
    settings = {**FAST["lowshot"], "joint_theta_lr": 1e30}
    result = run("lowshot", operator, measurements, [0, 1], pretrained, prior, settings=settings)
    assert result.diverged.all()
    # The z stage (4 steps) was fine; the first joint update overflowed theta, so the
    # returned iterate is the z stage's last: 4 steps led to it (not the 5th that broke).
    assert result.iterations.tolist() == [4, 4]
    assert torch.isfinite(result.images).all()
    assert np.isfinite(result.measurement_loss).all()


def test_best_restart_prefers_finite_then_lowest() -> None:
    # Two restarts of three images, ordered r * N + i.
    loss = torch.tensor([1.0, 5.0, math.nan, 0.5, 1.0, 3.0])
    diverged = torch.tensor([False, False, True, True, False, True])
    # image 0: restart 1 is lower but diverged; image 2: both diverged, NaN never wins.
    assert best_restart(loss, diverged, restarts=2).tolist() == [0, 1, 1]


def test_prior_samples_follow_the_gaussian(prior: tuple[torch.Tensor, torch.Tensor]) -> None:
    mean, covariance = prior

    def sample_prior(prior, seeds):
        return initial_codes(*prior, seeds, restart=0)

    samples = sample_prior(prior, range(4000)).double()
    assert samples.shape == (4000, LATENT)
    torch.testing.assert_close(sample_prior(prior, [7, 8])[1], sample_prior(prior, [8])[0])
    assert (samples.mean(0) - mean.double()).abs().max() < 0.1
    empirical = torch.cov(samples.T)
    assert (empirical - covariance.double()).abs().max() < 0.1
    # A singular covariance (rank one) falls back to the eigen-decomposition.
    direction = torch.zeros(LATENT)
    direction[0] = 1.0
    singular = sample_prior((torch.zeros(LATENT), torch.outer(direction, direction)), [1, 2])
    assert torch.isfinite(singular).all()
    assert singular[:, 1:].abs().max() < 1e-3 and singular[:, 0].abs().min() > 0


def test_settings_from_config_and_defaults() -> None:
    config = load_config("configs/test.yaml")
    iagan = method_settings(config, "iagan")
    assert iagan["joint_steps"] == config["recover"]["iagan"]["joint_steps"]
    assert method_settings(config, "untrained")["lr"] == config["recover"]["untrained"]["lr"]
    assert resolve_settings("lowshot", {"z_steps": 3})["joint_steps"] == RECIPE["joint_steps"]
    with pytest.raises(ValueError, match="unknown keys"):
        resolve_settings("csgm", {"step": 3})
    with pytest.raises(ValueError, match=r"unknown method 'gan'; known: .*csgm"):
        resolve_settings("gan", {})
    # Every registered method's defaults resolve, and agree with the config's defaults.
    defaults = load_config("config.yaml", recover={})["recover"]
    for cls in METHODS:
        assert resolve_settings(cls.kind, None) == defaults[cls.kind]


def test_baselines_keep_their_authors_recipes_and_lowshot_has_its_own() -> None:
    """CSGM's latent search and IAGAN's joint stage are their authors' (engine's
    LATENT_SEARCH, JOINT_STAGE); the low-shot recipe is its own (lowshot.RECIPE), inside
    the paper's bound: a lower theta learning rate and no more steps than the untrained
    network's (section 3)."""
    csgm, lowshot, iagan, untrained = (
        resolve_settings(kind, None) for kind in ("csgm", "lowshot", "iagan", "untrained")
    )
    assert (csgm["steps"], csgm["lr"], csgm["restarts"]) == (500, 0.1, 2)
    assert {key: csgm[key] for key in LATENT_SEARCH} == LATENT_SEARCH
    iagan_recipe = (iagan["joint_steps"], iagan["joint_theta_lr"], iagan["joint_z_lr"])
    assert iagan_recipe == tuple(JOINT_STAGE[k] for k in ("steps", "theta_lr", "z_lr"))
    assert iagan_recipe == (300, 1e-3, 1e-4)
    assert {key: lowshot[key] for key in RECIPE} == RECIPE
    assert lowshot["joint_theta_lr"] < untrained["lr"]
    assert lowshot["joint_steps"] <= untrained["steps"]
    for key, (other, other_key, op, source) in METHODS["lowshot"].tuning_bounds.items():
        assert {
            "<": lowshot[key] < untrained[other_key],
            "<=": lowshot[key] <= untrained[other_key],
        }[op]
        assert other == "untrained" and "higher learning rate" in source


@pytest.mark.parametrize("method", ["iagan", "lowshot"])
def test_theta_and_z_learning_rates_reach_their_optimiser_groups(
    method: str,
    operator: Operator,
    measurements: torch.Tensor,
    pretrained: Generator,
    prior: tuple[torch.Tensor, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    groups: list[list[tuple[float, int]]] = []
    make = engine.make_optimiser

    def spy(param_groups, *args, **kwargs):
        groups.append([(group["lr"], len(group["params"])) for group in param_groups])
        return make(param_groups, *args, **kwargs)

    monkeypatch.setattr(engine, "make_optimiser", spy)
    settings = {**FAST[method], "joint_theta_lr": 0.5, "joint_z_lr": 0.25}
    run(method, operator, measurements, [0, 1], pretrained, prior, settings=settings)
    n_theta = len(list(pretrained.parameters()))
    # The last optimiser is the joint stage's: theta (every parameter tensor), then z.
    assert groups[-1] == [(0.5, n_theta), (0.25, 1)]


def test_a_zero_learning_rate_freezes_its_group(
    operator: Operator, measurements: torch.Tensor, pretrained: Generator
) -> None:
    net = working_copy(pretrained, "stored", torch.device("cpu"))
    z0 = standard_normal([1, 2], LATENT)
    for theta_lr, z_lr in ((0.0, 1e-2), (1e-2, 0.0)):
        params = stack_parameters(net, 2)
        before = {name: value.detach().clone() for name, value in params.items()}
        result = optimise_joint(
            net, params, operator, measurements[:2], z0,
            steps=2, theta_lr=theta_lr, z_lr=z_lr, progress=False,
        )  # fmt: skip
        theta_moved = any(not torch.equal(before[k], params[k]) for k in params)
        z_moved = not torch.equal(result.z, z0)
        assert (theta_moved, z_moved) == (theta_lr > 0, z_lr > 0)


def test_the_window_returns_the_lowest_loss_of_the_last_iterates(
    operator: Operator, measurements: torch.Tensor, pretrained: Generator
) -> None:
    net = working_copy(pretrained, "stored", torch.device("cpu"))
    z0 = standard_normal([3, 4], LATENT)

    def once(steps: int, window: int):
        return optimise_joint(
            net, stack_parameters(net, 2), operator, measurements[:2], z0,
            steps=steps, theta_lr=0.05, z_lr=None, optimiser="rmsprop", momentum=0.9,
            window=window, progress=False,
        )  # fmt: skip

    windowed = once(6, window=4)
    # The same run stopped after k steps gives iterate k; the window holds iterates 3..6.
    losses = torch.stack([once(k, window=1).loss for k in range(3, 7)])
    torch.testing.assert_close(windowed.loss, losses.min(dim=0).values)
    assert windowed.iterations.tolist() == (losses.argmin(dim=0) + 3).tolist()
    assert torch.equal(windowed.z, z0)  # z_lr=None: the input stays fixed


def test_lowshot_models_draw_the_same_eps_per_problem_and_image() -> None:
    ids = ["1.jpg", "2.jpg"]
    mmd5 = jobs.method_seeds(0, "lowshot-mmd-S5", "cs-0.1", ids)
    assert mmd5 == jobs.method_seeds(0, "lowshot-l2-S100", "cs-0.1", ids)
    assert mmd5 != jobs.method_seeds(0, "lowshot-mmd-S5", "cs-0.2", ids)
    assert mmd5 != jobs.method_seeds(0, "csgm", "cs-0.1", ids)
    assert len(set(mmd5)) == 2
    # The same eps, mapped through each model's own Gaussian.
    mean, covariance = torch.zeros(LATENT), torch.eye(LATENT)
    torch.testing.assert_close(
        initial_codes(mean, covariance, mmd5), initial_codes(mean + 1, covariance, mmd5) - 1
    )


def test_missing_inputs_are_errors(operator: Operator, measurements: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="csgm needs its gan model"):
        recover("csgm", operator, measurements, seeds=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="lowshot needs its lowshot model"):
        recover("lowshot", operator, measurements, seeds=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="iagan starts from csgm's result"):
        recover("iagan", operator, measurements, seeds=[0, 1, 2, 3], model=nn.Identity())
    with pytest.raises(ValueError, match="seeds"):
        recover("untrained", operator, measurements, seeds=[0])


@pytest.mark.parametrize("method", METHOD_KINDS)
def test_cuda_graphs_option_reaches_every_stage_and_changes_nothing_on_the_cpu(
    method: str,
    operator: Operator,
    measurements: torch.Tensor,
    pretrained: Generator,
    prior: tuple[torch.Tensor, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = run(method, operator, measurements, [0, 1], pretrained, prior)
    seen: list[bool] = []
    optimise = engine._optimise

    def spy(render: Any, groups: Any, z: torch.Tensor, stage: engine.Stage, **kwargs: Any):
        seen.append(stage.cuda_graphs)
        return optimise(render, groups, z, stage, **kwargs)

    monkeypatch.setattr(engine, "_optimise", spy)
    graphs = run(method, operator, measurements, [0, 1], pretrained, prior, cuda_graphs=True)
    # IAGAN's start, CSGM's recovery, is made by ``run`` without the option.
    own = seen[1:] if method == "iagan" else seen
    assert own and all(own)  # every stage of the method was asked for graphs
    assert_same_images(plain, graphs)  # ... which the CPU ignores
    np.testing.assert_array_equal(plain.iterations, graphs.iterations)
