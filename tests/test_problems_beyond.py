"""The problems beyond the paper: inpainting, super-resolution, denoising and the noise
sweep of compressed sensing. Adjoints, hand-computed measurements, names, seeds, noise
levels, and that the paper's config asks for none of them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lowshot.config import ConfigError, load_config, problem_names, validate_config
from lowshot.problems import (
    PROBLEMS,
    GaussianNoise,
    Operator,
    make_operator,
    measure,
    noise_std,
    parse_problem,
)
from lowshot.problems.compressed_sensing import GaussianCS
from lowshot.problems.denoising import Denoising
from lowshot.problems.inpainting import Inpainting, box_mask, random_mask
from lowshot.problems.noisy_cs import NoisyCS
from lowshot.problems.super_resolution import SuperResolution
from lowshot.seeds import derive_seed, seeded_generator

REPO = Path(__file__).resolve().parents[1]
NEW_KINDS = ("inpainting", "super_resolution", "denoising", "noisy_cs")
PAPER_PROBLEMS = ["cs-0.01", "cs-0.02", "cs-0.05", "cs-0.1", "cs-0.2", "cs-0.3", "cs-0.5"]
EVERY_FAMILY_ON = {
    "inpainting": {"fractions": [0.5, 0.1], "box": True},
    "super_resolution": {"factors": [4, 2]},
    "denoising": {"enabled": True, "noise_std": 0.1},
    "noisy_cs": {"noise_stds": [0.05, 0.01]},
}


def _images(n: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """n random images (n, 3, 64, 64) uniform in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 64, 64, generator=generator) * 2 - 1).to(dtype)


def _operator(name: str, config_seed: int = 0) -> Operator:
    return make_operator(parse_problem(name), config_seed=config_seed)


@pytest.mark.parametrize(
    "name",
    [
        "inpaint-0.5",
        "inpaint-0.03",
        "inpaint-box32",
        "sr-x2",
        "sr-x4",
        "denoise",
        "cs-0.05-noise0.1",
    ],
)
def test_adjoint_passes_the_dot_product_test(name: str) -> None:
    operator = _operator(name)
    if isinstance(operator, GaussianCS):
        operator.matrix = operator.matrix.double()
    x = _images(3, seed=1, dtype=torch.float64)
    y = torch.randn(3, operator.m, generator=torch.Generator().manual_seed(2)).double()
    lhs = (operator.A(x) * y).sum(dim=1)
    rhs = (x * operator.A_adjoint(y)).flatten(1).sum(dim=1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-9)
    assert operator.A(x).shape == (3, operator.m)
    assert operator.A_adjoint(y).shape == x.shape


@pytest.mark.parametrize("factor", [2, 4])
def test_super_resolution_is_pil_box_resize(factor: int) -> None:
    x = _images(2, seed=3)
    y = SuperResolution(factor).A(x)
    side = 64 // factor
    assert y.shape == (2, 3 * side * side)
    expected = np.stack(
        [
            np.stack(
                [
                    np.asarray(
                        Image.fromarray(channel.numpy(), mode="F").resize(
                            (side, side), Image.Resampling.BOX
                        )
                    )
                    for channel in image
                ]
            )
            for image in x
        ]
    )
    np.testing.assert_allclose(y.reshape(2, 3, side, side).numpy(), expected, atol=1e-6)


def test_super_resolution_adjoint_spreads_each_value_evenly() -> None:
    operator = SuperResolution(4)
    y = torch.arange(operator.m, dtype=torch.float64)[None]
    spread = operator.A_adjoint(y)[0]
    # Channel 1, low-res pixel (row 2, column 5) covers rows 8-11 and columns 20-23.
    value = y[0, 16 * 16 + 2 * 16 + 5] / 16
    assert torch.equal(
        spread[1, 8:12, 20:24], torch.full((4, 4), value.item(), dtype=torch.float64)
    )
    assert spread[1, 7, 20] != value and spread[1, 8, 24] != value
    with pytest.raises(ValueError, match="factor must be one of"):
        SuperResolution(3)


def test_random_mask_measures_the_observed_pixels() -> None:
    operator = _operator("inpaint-0.3", config_seed=5)
    assert isinstance(operator, Inpainting)
    mask = operator.mask.numpy()
    assert mask.shape == (64, 64) and mask.dtype == bool
    assert abs(mask.sum() - 0.3 * 64 * 64) <= 1
    assert operator.m == 3 * mask.sum()
    x = _images(2, seed=6)
    expected = np.stack([image[:, mask].reshape(-1) for image in x.numpy()])
    np.testing.assert_array_equal(operator.A(x).numpy(), expected)
    # A^T A keeps the observed pixels, all three channels, and zeroes the others.
    back = operator.A_adjoint(operator.A(x)).numpy()
    np.testing.assert_array_equal(back[:, :, mask], x.numpy()[:, :, mask])
    assert (back[:, :, ~mask] == 0).all()


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 0.77, 0.999])
def test_observed_fraction_is_within_one_pixel(fraction: float) -> None:
    mask = random_mask(fraction, seed=0)
    assert abs(int(mask.sum()) - fraction * 4096) <= 1


def test_mask_is_drawn_from_the_documented_seed() -> None:
    seed = derive_seed(7, "operator", "inpaint-0.25")
    order = torch.randperm(4096, generator=seeded_generator(seed))
    expected = torch.zeros(4096, dtype=torch.bool)
    expected[order[:1024]] = True
    assert torch.equal(_operator("inpaint-0.25", config_seed=7).mask, expected.reshape(64, 64))


def test_mask_same_for_the_same_config_seed_other_for_another() -> None:
    first = _operator("inpaint-0.5", config_seed=3).mask
    assert torch.equal(first, _operator("inpaint-0.5", config_seed=3).mask)
    other = _operator("inpaint-0.5", config_seed=4).mask
    assert other.sum() == first.sum() and not torch.equal(first, other)


@pytest.mark.parametrize("size", [32, 10, 62])
def test_box_is_exactly_centred(size: int) -> None:
    expected = np.ones((64, 64), dtype=bool)
    start = 32 - size // 2
    expected[start : start + size, start : start + size] = False
    operator = _operator(f"inpaint-box{size}")
    np.testing.assert_array_equal(operator.mask.numpy(), expected)
    assert operator.m == 3 * (64 * 64 - size * size)
    if size == 32:
        assert not expected[16:48, 16:48].any() and expected[15, :].all() and expected[:, 48].all()
    x = _images(1, seed=8)
    np.testing.assert_array_equal(operator.A(x)[0].numpy(), x[0].numpy()[:, expected].reshape(-1))
    for bad in (0, 31, 64):
        with pytest.raises(ValueError, match="box size"):
            box_mask(bad)


def test_denoising_is_the_identity() -> None:
    operator = _operator("denoise")
    x = _images(2, seed=9)
    assert torch.equal(operator.A(x), x.reshape(2, -1))
    assert torch.equal(operator.A_adjoint(operator.A(x)), x)


@pytest.mark.parametrize(
    ("name", "kind", "ratio", "label"),
    [
        ("inpaint-0.5", "inpainting", 0.5, "inpainting 50 %"),
        ("inpaint-0.05", "inpainting", 0.05, "inpainting 5 %"),
        ("inpaint-box32", "inpainting", None, "inpainting box 32×32"),
        ("sr-x2", "super_resolution", 2.0, "super-resolution ×2"),
        ("sr-x4", "super_resolution", 4.0, "super-resolution ×4"),
        ("denoise", "denoising", None, "denoising"),
        ("cs-0.1-noise0.05", "noisy_cs", 0.05, "m/n = 0.1, σ = 0.05"),
        ("cs-1e-05-noise1", "noisy_cs", 1.0, "m/n = 1e-05, σ = 1"),
    ],
)
def test_names_parse_round_trip_and_read_well(
    name: str, kind: str, ratio: float | None, label: str
) -> None:
    spec = parse_problem(name)
    assert (spec.kind, spec.name, spec.ratio) == (kind, name, ratio)
    assert PROBLEMS[kind].label(spec) == label
    assert make_operator(spec, config_seed=0).name == name
    # Each name belongs to one family only.
    assert [cls.kind for cls in PROBLEMS if cls.parse(name) is not None] == [kind]


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("inpaint-0.50", "inpaint-0.5"),
        ("sr-x04", "sr-x4"),
        ("cs-0.10-noise5e-2", "cs-0.1-noise0.05"),
    ],
)
def test_names_are_canonical(written: str, canonical: str) -> None:
    assert parse_problem(written).name == canonical


@pytest.mark.parametrize(
    "name", ["inpaint-box", "inpaint-", "sr-2", "sr-x", "cs-0.1-noise", "denoising"]
)
def test_near_miss_names_are_unknown(name: str) -> None:
    with pytest.raises(ValueError, match=f"unknown problem name '{re.escape(name)}'"):
        parse_problem(name)


def test_the_paper_config_asks_for_none_of_them() -> None:
    config = load_config(REPO / "config.yaml")
    assert problem_names(config) == [*PAPER_PROBLEMS, "colorization"]
    for kind in NEW_KINDS:
        assert PROBLEMS[kind].problem_names(config["problems"][kind]) == []
    assert problem_names(validate_config({})) == [*PAPER_PROBLEMS, "colorization"]


def test_every_family_switched_on_is_valid_and_in_table_order() -> None:
    config = validate_config({"problems": EVERY_FAMILY_ON})
    assert problem_names(config) == [
        *PAPER_PROBLEMS,
        "colorization",
        "inpaint-0.1",
        "inpaint-0.5",
        "inpaint-box32",
        "sr-x2",
        "sr-x4",
        "denoise",
        "cs-0.1-noise0.01",
        "cs-0.1-noise0.05",
    ]
    assert all(PROBLEMS[kind].order > PROBLEMS["colorization"].order for kind in NEW_KINDS)
    alone = validate_config(
        {
            "problems": {
                "compressed_sensing": {"ratios": []},
                "colorization": {"enabled": False},
                "inpainting": {"box": True, "box_size": 20},
            }
        }
    )
    assert problem_names(alone) == ["inpaint-box20"]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"super_resolution": {"factors": [3]}},
            "problems.super_resolution.factors[0]: unknown value 3",
        ),
        ({"inpainting": {"fractions": [1.0]}}, "problems.inpainting.fractions[0]"),
        ({"inpainting": {"fractions": [0.0]}}, "problems.inpainting.fractions[0]"),
        ({"inpainting": {"box": True, "box_size": 31}}, "problems.inpainting.box_size"),
        ({"noisy_cs": {"noise_stds": [0.0]}}, "problems.noisy_cs.noise_stds[0]"),
        ({"noisy_cs": {"ratio": 1.5, "noise_stds": [0.1]}}, "problems.noisy_cs.ratio"),
        ({"denoising": {"enabled": True}}, "problems.denoising.noise_std: 0 leaves denoising"),
        (
            {"noisy_cs": {"noise_std": 0.1, "noise_stds": [0.1]}},
            "problems.noisy_cs.noise_std: not used by the sweep",
        ),
    ],
)
def test_wrong_settings_name_their_key(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config({"problems": section})


def test_noise_sweep_gives_each_problem_its_sigma_and_shares_the_plain_a() -> None:
    config = validate_config(
        {
            "problems": {
                "compressed_sensing": {"noise_std": 0.2},
                "noisy_cs": {"noise_stds": [0.05, 0.3]},
            }
        }
    )
    assert noise_std(config, "cs-0.1-noise0.05") == 0.05
    assert noise_std(config, "cs-0.1-noise0.3") == 0.3
    assert noise_std(config, "cs-0.1") == 0.2  # the section's, as before
    plain = _operator("cs-0.1", config_seed=11)
    swept = [_operator(name, config_seed=11) for name in ("cs-0.1-noise0.05", "cs-0.1-noise0.3")]
    for operator in swept:
        assert isinstance(operator, NoisyCS) and operator.m == plain.m == 1229
        assert torch.equal(operator.matrix, plain.matrix)
    assert not torch.equal(_operator("cs-0.1-noise0.05", config_seed=12).matrix, plain.matrix)
    # The sigma reaches the measurements: y - A x has that std.
    x = _images(4, seed=13)
    operator = swept[1]
    y = measure(operator, GaussianNoise(noise_std(config, operator.name)), x, [1, 2, 3, 4])
    assert abs((y - operator.A(x)).std().item() - 0.3) < 0.02


def test_denoising_takes_the_section_noise() -> None:
    config = validate_config({"problems": {"denoising": {"enabled": True, "noise_std": 0.1}}})
    assert noise_std(config, "denoise") == 0.1
    assert isinstance(_operator("denoise"), Denoising)


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_every_default_says_its_source(kind: str) -> None:
    for key, setting in PROBLEMS[kind].settings.items():
        assert "default" in setting, f"problems.{kind}.{key} has no default"
        assert re.search(r"our choice|paper", setting["description"]), f"problems.{kind}.{key}"
