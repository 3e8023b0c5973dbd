"""CS-DIP's learned regularisation (method learned_reg): the prior's penalty, the fitted
statistics, the method against the untrained baseline, the file, the jobs and the plan.

Small DCGANs (width 8) and a handful of steps keep it fast; nothing depends on the width.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, copy_workflow, write_tiny_data

from lowshot import jobs, metrics
from lowshot.config import load_config
from lowshot.data.sources import decode_image, open_source
from lowshot.images import to_float
from lowshot.io import (
    LearnedRegStats,
    load_learned_reg,
    read_recovery,
    save_gan,
    save_learned_reg,
)
from lowshot.methods import METHODS, RecoveryResult, parse_method, recover, resolve_settings
from lowshot.methods.engine import measurement_loss, optimise_joint
from lowshot.methods.learned_reg import (
    FIT_KEYS,
    LearnedReg,
    fit_settings,
    layer_gaussian,
    layer_means,
    prior_penalty,
)
from lowshot.methods.untrained import dip_start, measurement_gain
from lowshot.models import Generator, init_dcgan_weights
from lowshot.problems import GaussianNoise, Operator, make_operator, measure, parse_problem
from lowshot.problems.colorization import LUMA_WEIGHTS, Colorization
from lowshot.problems.compressed_sensing import GaussianCS
from lowshot.training import TrainingRun
from lowshot.training.learned_reg import fit_learned_reg

LATENT = 128
WIDTH = 8
CPU = torch.device("cpu")
# The fits start from the recovery's default init (the recoveries below check they agree).
FIT = {
    "steps": 3,
    "lr": 1e-3,
    "momentum": 0.9,
    "init": fit_settings(None)["init"],
    "shrinkage": 0.1,
}
FAST = {"steps": 4, "window": 2}
SNAKEMAKE_DRY_RUN = (sys.executable, "-m", "snakemake", "-n", "--cores", "1")


def training_run(seed: int = 0) -> TrainingRun:
    return TrainingRun(
        latent_dim=LATENT, seed=seed, device="cpu", precision="fp32", progress=False, width=WIDTH
    )


def examples(n: int, seed: int = 0) -> torch.Tensor:
    """n smooth random images (N, 3, 64, 64) in [-1, 1]."""
    coarse = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8
    return torch.nn.functional.interpolate(coarse, size=64, mode="bilinear")


@pytest.fixture(scope="module")
def stats() -> LearnedRegStats:
    """The prior fitted to four examples (S=4, width 8)."""
    return fit_learned_reg(examples(4), FIT, training_run()).stats


@pytest.fixture(scope="module")
def operator() -> Operator:
    return GaussianCS(0.05, seed=3)


@pytest.fixture(scope="module")
def y(operator: Operator) -> torch.Tensor:
    return measure(operator, GaussianNoise(), examples(3, seed=7), [0, 1, 2])


def run(
    method: str, operator: Operator, y: torch.Tensor, model: object, **settings: float
) -> RecoveryResult:
    return recover(
        method,
        operator,
        y,
        seeds=[11, 12, 13][: y.shape[0]],
        settings={**FAST, **settings},
        model=model,
        progress=False,
    )


def mahalanobis(stats: LearnedRegStats, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """(m - mu)^T Sigma^-1 (m - mu) per image, by a direct solve (float64)."""
    centred = layer_means(params).detach().double() - stats.mean
    return (centred * torch.linalg.solve(stats.covariance, centred.T).T).sum(dim=1)


# --- the penalty ---------------------------------------------------------------------


def test_penalty_is_zero_at_the_mean_and_positive_elsewhere(stats: LearnedRegStats) -> None:
    _, params, _ = dip_start([1, 2, 3], Generator(LATENT, WIDTH), CPU, FIT["init"])
    at_one = LearnedRegStats(
        layers=stats.layers,
        mean=layer_means(params)[0].detach().double(),
        covariance=stats.covariance,
        layer_means=stats.layer_means,
        latent_dim=LATENT,
        width=WIDTH,
        attrs={},
    )
    values = prior_penalty(at_one, 2.5, CPU)(params)
    assert values.shape == (3,) and values.dtype == torch.float32
    assert values[0] == 0
    assert (values[1:] > 0).all()
    torch.testing.assert_close(values[1:].double(), 2.5 * mahalanobis(at_one, params)[1:])
    # It is differentiable in every layer's parameters.
    values.sum().backward()
    assert all(
        param.grad is not None and param.grad[1:].abs().sum() > 0 for param in params.values()
    )


def test_penalty_rejects_other_layers_and_a_singular_covariance(stats: LearnedRegStats) -> None:
    _, params, _ = dip_start([1], Generator(LATENT, WIDTH), CPU, FIT["init"])
    with pytest.raises(ValueError, match="not the layers of the learned statistics"):
        prior_penalty(stats, 1.0, CPU)(dict(reversed(params.items())))
    singular = LearnedRegStats(
        stats.layers, stats.mean, torch.zeros_like(stats.covariance), stats.layer_means, 128, 8, {}
    )
    with pytest.raises(ValueError, match="not positive definite"):
        prior_penalty(singular, 1.0, CPU)


def test_operator_gain_is_half_the_squared_frobenius_norm_per_pixel() -> None:
    cs = GaussianCS(0.1, seed=1)
    exact = float(cs.matrix.double().square().sum()) / (2 * cs.n)
    assert measurement_gain(cs) == pytest.approx(exact, rel=0.03)
    assert exact == pytest.approx(cs.m / 2, rel=0.01)
    luma = 64 * 64 * sum(w * w for w in LUMA_WEIGHTS) / (2 * 3 * 64 * 64)
    assert measurement_gain(Colorization()) == pytest.approx(luma, rel=0.03)
    assert measurement_gain(cs) == measurement_gain(cs)  # a fixed draw


# --- the fitted statistics -----------------------------------------------------------


def test_fitted_statistics_have_the_right_shapes_and_are_deterministic(
    stats: LearnedRegStats,
) -> None:
    names = tuple(name for name, _ in Generator(LATENT, WIDTH).named_parameters())
    n_layers = len(names)
    assert n_layers == 13  # 5 transposed convolutions, 4 batch norms (weight and bias)
    assert stats.layers == names
    assert stats.mean.shape == (n_layers,) and stats.covariance.shape == (n_layers, n_layers)
    assert stats.layer_means.shape == (4, n_layers)
    assert stats.mean.dtype == stats.covariance.dtype == torch.float64
    assert torch.equal(stats.covariance, stats.covariance.T)
    assert torch.linalg.eigvalsh(stats.covariance).min() > 0
    torch.testing.assert_close(stats.mean, stats.layer_means.mean(dim=0))
    assert (stats.latent_dim, stats.width) == (LATENT, WIDTH)
    assert stats.attrs == FIT
    again = fit_learned_reg(examples(4), FIT, training_run()).stats
    assert torch.equal(again.layer_means, stats.layer_means)
    assert torch.equal(again.covariance, stats.covariance)
    other = fit_learned_reg(examples(4), FIT, training_run(seed=1)).stats
    assert not torch.equal(other.layer_means, stats.layer_means)


def test_each_example_has_its_own_fit_whatever_the_subset(stats: LearnedRegStats) -> None:
    """Example i's seed does not depend on S: the 2-shot fits are the 4-shot fits' first two."""
    fewer = fit_learned_reg(examples(4)[:2], FIT, training_run()).stats
    torch.testing.assert_close(fewer.layer_means, stats.layer_means[:2], rtol=1e-5, atol=1e-9)


def test_the_fit_moves_the_networks_towards_their_examples() -> None:
    images = examples(2)
    quiet = fit_learned_reg(images, {**FIT, "steps": 1}, training_run())
    fitted = fit_learned_reg(images, {**FIT, "steps": 10}, training_run())
    before = [row["fit_psnr"] for row in quiet.log]
    after = [row["fit_psnr"] for row in fitted.log]
    assert [row["example"] for row in fitted.log] == [0, 1]
    assert min(a - b for a, b in zip(after, before, strict=True)) > 1.0
    assert not torch.allclose(quiet.stats.layer_means, fitted.stats.layer_means)


def test_layer_gaussian_shrinks_towards_the_diagonal() -> None:
    rng = torch.Generator().manual_seed(0)
    scales = torch.tensor([1e-5, 1e-2, 1.0])
    means = torch.randn(6, 3, generator=rng, dtype=torch.float64) * scales + 1.0
    mu, sigma = layer_gaussian(means, 0.25)
    sample = torch.cov(means.T)
    expected = 0.75 * sample + 0.25 * torch.diag(sample.diag())
    torch.testing.assert_close(mu, means.mean(dim=0))
    torch.testing.assert_close(sigma, expected, rtol=1e-5, atol=0)
    constant = means.clone()
    constant[:, 1] = 0.5
    with pytest.raises(ValueError, match=r"layers \[1\] have the same mean in every fit"):
        layer_gaussian(constant, 0.1)
    with pytest.raises(ValueError, match="S >= 2"):
        layer_gaussian(means[:1], 0.1)


def test_fit_settings_are_checked() -> None:
    assert tuple(fit_settings(None)) == FIT_KEYS
    assert fit_settings({"weight": 3.0, "steps": 7})["steps"] == 7
    with pytest.raises(ValueError, match="unknown keys"):
        fit_settings({"stepz": 7})
    with pytest.raises(ValueError, match=r"missing \['shrinkage'\]"):
        fit_learned_reg(examples(2), {k: FIT[k] for k in FIT_KEYS[:-1]}, training_run())
    with pytest.raises(ValueError, match="at least two examples"):
        fit_learned_reg(examples(1), FIT, training_run())


# --- the method ----------------------------------------------------------------------


def test_weight_zero_is_the_untrained_recovery(
    stats: LearnedRegStats, operator: Operator, y: torch.Tensor
) -> None:
    template = Generator(LATENT, WIDTH)
    init_dcgan_weights(template, torch.Generator().manual_seed(99))
    untrained = run("untrained", operator, y, template)
    plain = run("learned_reg", operator, y, stats, weight=0.0)
    assert torch.equal(plain.images, untrained.images)
    assert np.array_equal(plain.measurement_loss, untrained.measurement_loss)
    assert np.array_equal(plain.iterations, untrained.iterations)
    # A positive weight changes the result (and keeps it finite).
    weighted = run("learned_reg", operator, y, stats, weight=1e3)
    assert not torch.allclose(weighted.images, untrained.images, atol=1e-4)
    assert not weighted.diverged.any()


def test_a_large_weight_pulls_the_layer_means_towards_mu(
    operator: Operator, y: torch.Tensor
) -> None:
    # RMSprop with momentum at 1e-4: 15 steps of 1e-3 move a layer's mean by more than
    # this narrow prior's standard deviations. The mechanics of the penalty, measured
    # from the DCGAN start (fits and recovery alike), whatever the default init.
    stats = fit_learned_reg(examples(4), {**FIT, "init": "dcgan"}, training_run()).stats

    def final(scale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        net, params, z0 = dip_start([1, 2], Generator(LATENT, WIDTH), CPU, "dcgan")
        start = mahalanobis(stats, params)
        result = optimise_joint(
            net, params, operator, y[:2], z0, steps=15, theta_lr=1e-4, z_lr=None,
            optimiser="rmsprop", momentum=0.9, progress=False,
            penalty=None if scale is None else prior_penalty(stats, scale, CPU),
        )  # fmt: skip
        # The recorded loss is the measurement loss of the recorded image, penalty or not.
        torch.testing.assert_close(result.loss, measurement_loss(operator, result.images, y[:2]))
        return start, mahalanobis(stats, params)

    start, free = final(None)
    _, pulled = final(1e6)
    assert (pulled < 0.25 * free).all()
    assert (pulled < 0.25 * start).all()


def test_a_non_finite_penalty_is_a_divergence(operator: Operator, y: torch.Tensor) -> None:
    net, params, z0 = dip_start([1, 2], Generator(LATENT, WIDTH), CPU, FIT["init"])

    def penalty(stacked: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tensor([0.0, float("inf")]) + 0 * layer_means(stacked).sum(dim=1)

    result = optimise_joint(
        net, params, operator, y[:2], z0, steps=2, theta_lr=1e-3, z_lr=None, penalty=penalty,
        progress=False,
    )  # fmt: skip
    assert result.diverged.tolist() == [False, True]
    assert result.iterations.tolist() == [2, 0]


def test_batch_equals_one_by_one(
    stats: LearnedRegStats, operator: Operator, y: torch.Tensor
) -> None:
    batch = run("learned_reg", operator, y, stats, weight=100.0)
    alone = RecoveryResult.concat(
        [
            recover(
                "learned_reg",
                operator,
                y[i : i + 1],
                seeds=[11 + i],
                settings={**FAST, "weight": 100.0},
                model=stats,
                progress=False,
            )
            for i in range(3)
        ]
    )
    torch.testing.assert_close(batch.images, alone.images, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(batch.measurement_loss, alone.measurement_loss, rtol=1e-3)
    assert np.array_equal(batch.iterations, alone.iterations)
    assert not torch.allclose(batch.images[0], batch.images[1], atol=1e-3)


def test_statistics_of_another_latent_size_are_refused(
    stats: LearnedRegStats, operator: Operator, y: torch.Tensor
) -> None:
    with pytest.raises(ValueError, match="latent size 128, the recovery uses 64"):
        recover("learned_reg", operator, y, seeds=[1, 2, 3], model=stats, latent_dim=64)
    with pytest.raises(ValueError, match="learned_reg needs its learned_reg model"):
        recover("learned_reg", operator, y, seeds=[1, 2, 3])


def test_instances_names_labels_and_defaults() -> None:
    paper = load_config("config.yaml")
    assert "learned_reg" not in paper["recover"]["methods"]
    assert LearnedReg.method_names(paper) == [f"learned_reg-S{s}" for s in (5, 10, 15, 25, 50, 100)]
    spec = parse_method("learned_reg-S25")
    assert (spec.kind, spec.shots, spec.loss) == ("learned_reg", 25, None)
    assert LearnedReg.parse("learned_reg-S") is None and LearnedReg.parse("lowshot-l2-S5") is None
    assert LearnedReg.method_label(spec) == "Learned reg. (S=25)"
    assert LearnedReg.seed_name(spec) == "untrained"
    siblings = [parse_method(f"learned_reg-S{s}") for s in (5, 25, 100)]
    styles = [LearnedReg.line_style(s, siblings) for s in siblings]
    assert all(style["linestyle"] == "--" for style in styles)
    assert len({tuple(style["color"]) for style in styles}) == 3
    assert sorted(siblings, key=LearnedReg.sort_key) == siblings
    # The recovery recipe is the untrained baseline's (CS-DIP's code), defaults included.
    untrained, learned = resolve_settings("untrained", None), resolve_settings("learned_reg", None)
    assert {key: learned[key] for key in untrained} == untrained
    assert METHODS["learned_reg"].model == "learned_reg"
    assert "learned_reg" in jobs.MODEL_LOADERS


# --- the file and the jobs -----------------------------------------------------------


def test_file_round_trip(stats: LearnedRegStats, tmp_path: Path) -> None:
    path = tmp_path / "stats.h5"
    save_learned_reg(path, stats, {"seed": 5})
    back = load_learned_reg(path)
    assert back.layers == stats.layers
    for name in ("mean", "covariance", "layer_means"):
        assert torch.equal(getattr(back, name), getattr(stats, name)), name
    assert (back.latent_dim, back.width) == (LATENT, WIDTH)
    assert back.attrs["seed"] == 5 and back.attrs["shots"] == 4 and back.attrs["lr"] == FIT["lr"]
    save_gan(tmp_path / "gan.h5", Generator(LATENT, WIDTH))
    with pytest.raises(ValueError, match="not a learned-regularisation file"):
        load_learned_reg(tmp_path / "gan.h5")
    with h5py.File(path, "a") as handle:
        del handle["prior/mean"]
        handle["prior/mean"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"stats.h5: .*mean must be \(13,\)"):
        load_learned_reg(path)


def test_fit_job_then_recover_job(tmp_path: Path) -> None:
    write_tiny_data(tmp_path, 4, test=[0, 1], validation=None, gan_corpus=[2, 3], shots={2: [2, 3]})
    runtime = jobs.Runtime(seed=0, device="cpu", precision="fp32", latent_dim=LATENT, threads=1)
    files = {"images_h5": tmp_path / "images.h5", "splits_h5": tmp_path / "splits.h5"}
    common = {"settings": {"steps": 2, "weight": 5.0}, "runtime": runtime}
    with pytest.raises(ValueError, match="no 3-shot subset"):
        jobs.fit_learned_reg_job(
            **files, shots=3, stats_out=tmp_path / "x.h5", fits_out=tmp_path / "x.csv", **common
        )
    jobs.fit_learned_reg_job(
        **files,
        shots=2,
        stats_out=tmp_path / "stats.h5",
        fits_out=tmp_path / "fits.csv",
        width=WIDTH,
        progress=False,
        **common,
    )
    stats = load_learned_reg(tmp_path / "stats.h5")
    assert stats.layer_means.shape == (2, 13) and stats.attrs["steps"] == 2
    assert "weight" not in stats.attrs  # the prior's weight is not a fitting setting
    assert (tmp_path / "fits.csv").read_text().splitlines()[0] == "example,fit_loss,fit_psnr"
    jobs.recover_job(
        tmp_path / "images.h5",
        tmp_path / "splits.h5",
        tmp_path / "stats.h5",
        output=tmp_path / "recovery.h5",
        problem="cs-0.1",
        method="learned_reg-S2",
        positions=(0, 2),
        settings={**FAST, "weight": 10.0},
        noise_std=0.0,
        runtime=runtime,
    )
    fields, attrs = read_recovery(tmp_path / "recovery.h5")
    assert (attrs["method"], attrs["method_kind"], attrs["shots"]) == (
        "learned_reg-S2",
        "learned_reg",
        2,
    )
    assert fields["iterations"].max() <= FAST["steps"] and not fields["diverged"].any()


@pytest.mark.usefixtures("one_thread")
def test_recovers_real_faces_of_inpainting_above_a_floor(shared_celeba: Path) -> None:
    # Real faces: the prior is fitted to shared test faces 4-7 (20 steps, width 16 to keep
    # it cheap), faces 1-3 are recovered from half their pixels (inpaint-0.5), 200 steps.
    # Measured here: 20.3, 21.8 and 21.9 dB, against 11.6, 13.5 and 14.2 dB for the
    # zero-filled observation (A^T y). The floor, 18 dB, is 2.3 dB below the worst face
    # (room for other CPUs' rounding, which a ReLU network fitted by RMSprop amplifies) and
    # 3.8 dB above the best zero-filled image: the network really filled the holes.
    with open_source(shared_celeba / "celeba-test-faces-64.zip") as (names, read):
        chosen = [name for name in names if name.endswith(".jpg")][:7]
        faces = to_float(np.stack([np.asarray(decode_image(read(name))) for name in chosen]))
    run16 = TrainingRun(
        latent_dim=LATENT, seed=0, device="cpu", precision="fp32", progress=False, width=16
    )
    prior = fit_learned_reg(faces[3:], {**FIT, "steps": 20}, run16).stats
    operator = make_operator(parse_problem("inpaint-0.5"), config_seed=0)
    y = measure(operator, GaussianNoise(), faces[:3], [0, 1, 2])
    result = recover(
        "learned_reg",
        operator,
        y,
        seeds=[1, 2, 3],
        settings={"steps": 200, "window": 10},
        model=prior,
        progress=False,
    )
    zero_filled = metrics.psnr(operator.A_adjoint(y).clamp(-1, 1), faces[:3])
    recovered = metrics.psnr(result.images, faces[:3])
    assert (recovered > 18.0).all() and (zero_filled < 18.0).all(), (recovered, zero_filled)
    assert not result.diverged.any()


@pytest.mark.slow
def test_dry_run_plans_one_fit_per_shot_count(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path / "main")
    (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    extra = {
        "recover": {"methods": ["lowshot", "untrained", "csgm", "iagan", "learned_reg"]},
        "lowshot": {"shots": [5, 10]},
    }
    (workdir / "extra.yaml").write_text(yaml.safe_dump(extra))
    done = subprocess.run(
        [*SNAKEMAKE_DRY_RUN, "--configfile", "configs/test.yaml", "extra.yaml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "results/models/learned_reg/S5/stats.h5" in output
    assert "results/models/learned_reg/S10/stats.h5" in output
    table = output.split("Job stats:")[1].split("\n\n")[0]
    counts = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}
    # One fit per S, on replicate 1's shots only (configs/test.yaml runs two low-shot
    # replicates); recoveries: 2 problems x (2 low-shot x 2 replicates, untrained, csgm,
    # iagan, 2 learned).
    assert counts["fit_learned_reg"] == 2
    assert counts["pretrain_lowshot"] == 2 * 2
    assert counts["recover"] == 2 * 9
