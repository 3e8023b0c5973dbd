"""The joint stage's batched-matrix-product generator (``lowshot.methods.batched_generator``)
against vmap and against a plain per-image loop, its fallback for other networks, and the
engine's fused Adam and finiteness check.

Small DCGANs (width 8) keep every test well under a second.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from lowshot.methods import engine
from lowshot.methods.batched_generator import conv_transpose, per_image_generator, plan
from lowshot.methods.deep_decoder import DeepDecoder
from lowshot.methods.engine import (
    measurement_loss,
    optimise_joint,
    optimise_latent,
    per_image_forward,
    stack_parameters,
    standard_normal,
)
from lowshot.models import Generator, init_dcgan_weights
from lowshot.problems.compressed_sensing import GaussianCS

LATENT = 128
WIDTH = 8
N = 3


def generator(norm: str, seed: int = 0) -> Generator:
    """A width-8 DCGAN in ``norm`` mode with non-trivial stored statistics, frozen."""
    net = Generator(LATENT, WIDTH)
    init_dcgan_weights(net, torch.Generator().manual_seed(seed))
    draw = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=draw))
                module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=draw))
    net.norm = norm
    return net.eval().requires_grad_(False)


def perturbed(net: Generator, n: int = N, seed: int = 2) -> dict[str, torch.Tensor]:
    """Stacked parameters whose n copies differ (as after some joint steps)."""
    params = stack_parameters(net, n)
    draw = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in params.values():
            value.add_(0.05 * value.abs().mean() * torch.randn(value.shape, generator=draw))
    return params


@pytest.fixture(scope="module")
def operator() -> GaussianCS:
    return GaussianCS(0.02, seed=7)


@pytest.mark.parametrize("norm", ["stored", "per_image"])
def test_gemm_forward_and_gradients_equal_vmap(norm: str) -> None:
    net = generator(norm)
    params = perturbed(net)
    z = standard_normal(range(N), LATENT).requires_grad_(True)
    gemm = per_image_forward(net, "gemm")(params, z)
    vmapped = per_image_forward(net, "vmap")(params, z)
    torch.testing.assert_close(gemm, vmapped, rtol=1e-5, atol=1e-5)
    leaves = [z, *params.values()]
    weights = torch.randn(gemm.shape, generator=torch.Generator().manual_seed(3))
    grads_gemm = torch.autograd.grad((gemm * weights).sum(), leaves)
    grads_vmap = torch.autograd.grad((vmapped * weights).sum(), leaves)
    for a, b in zip(grads_gemm, grads_vmap, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding"),
    [(1, 4, 1, 0), (4, 4, 2, 1), (5, 3, 1, 1), (3, 4, 2, 0), (2, 2, 3, 0)],
)
def test_conv_transpose_is_each_images_own(size: int, kernel: int, stride: int, padding: int):
    draw = torch.Generator().manual_seed(size + kernel)
    x = torch.randn(N, 5, size, size, generator=draw)
    weight = torch.randn(N, 5, 6, kernel, kernel, generator=draw)
    batched = conv_transpose(x, weight, stride, padding)
    for i in range(N):
        alone = F.conv_transpose2d(x[i : i + 1], weight[i], stride=stride, padding=padding)
        torch.testing.assert_close(batched[i : i + 1], alone, rtol=1e-5, atol=1e-5)


def test_other_networks_fall_back_to_vmap() -> None:
    decoder = DeepDecoder(4, 2).requires_grad_(False)
    for name, param in decoder.named_parameters():
        with torch.no_grad():
            param.copy_(torch.rand(param.shape, generator=torch.Generator().manual_seed(len(name))))
    batch_mode = generator("stored")
    batch_mode.norm = "batch"

    class Scaled(Generator):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return 0.5 * super().forward(z)

    subclass = Scaled(LATENT, WIDTH).requires_grad_(False)
    subclass.norm = "stored"
    for network in (decoder, batch_mode, subclass):
        assert plan(network) is None
        assert per_image_generator(network) is None
        with pytest.raises(ValueError, match="gemm path covers"):
            per_image_forward(network, "gemm")
    # "auto" runs the decoder through vmap, image i with its own parameters.
    params = stack_parameters(decoder, 2)
    z = torch.rand(2, decoder.latent_dim, generator=torch.Generator().manual_seed(1))
    out = per_image_forward(decoder)(params, z)
    torch.testing.assert_close(out, decoder(z), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="path must be one of"):
        per_image_forward(decoder, "grouped")


@pytest.mark.parametrize("norm", ["stored", "per_image"])
def test_joint_gemm_equals_vmap_with_a_penalty(norm: str, operator: GaussianCS) -> None:
    net = generator(norm)
    y = operator.A(net(standard_normal(range(10, 10 + N), LATENT)))
    z0 = standard_normal(range(N), LATENT)

    def penalty(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(value.flatten(1).square().sum(dim=1) for value in params.values())

    results = {}
    for path in ("gemm", "vmap"):
        params = stack_parameters(net, N)
        result = optimise_joint(
            net, params, operator, y, z0, steps=3, theta_lr=1e-3, z_lr=1e-3,
            penalty=penalty, progress=False, path=path,
        )  # fmt: skip
        results[path] = (result, params)
    (gemm, theta_gemm), (vmapped, theta_vmap) = results["gemm"], results["vmap"]
    torch.testing.assert_close(gemm.images, vmapped.images, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gemm.z, vmapped.z, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gemm.loss, vmapped.loss, rtol=1e-3, atol=1e-5)
    for name in theta_gemm:
        # Adam moves a weight by ~lr whatever its gradient's size: where the gradient is
        # ~0, rounding can flip its sign, and the two paths' weight then differ by up to
        # 2 lr per step. Such weights are rare; every other one agrees.
        diff = (theta_gemm[name] - theta_vmap[name]).abs()
        assert diff.max() <= 2 * 1e-3 * 3
        assert (diff > 1e-5).float().mean() < 1e-3
    assert torch.equal(gemm.iterations, vmapped.iterations)


def test_batched_joint_equals_a_plain_per_image_loop(operator: GaussianCS) -> None:
    # The loop of benchmarks/recovery.py: each image its own generator copy, an ordinary
    # forward and torch's default (unfused) Adam on its parameters and z.
    net, steps, lr = generator("stored"), 4, 1e-3
    y = operator.A(net(standard_normal(range(10, 10 + N), LATENT)))
    z0 = standard_normal(range(N), LATENT)
    batched = optimise_joint(
        net, stack_parameters(net, N), operator, y, z0, steps=steps, theta_lr=lr, z_lr=lr,
        progress=False,
    )  # fmt: skip
    for i in range(N):
        own = copy.deepcopy(net).requires_grad_(True)
        z = z0[i : i + 1].clone().requires_grad_(True)
        adam = torch.optim.Adam([z, *own.parameters()], lr=lr)
        for _ in range(steps):
            adam.zero_grad(set_to_none=True)
            measurement_loss(operator, own(z), y[i : i + 1]).sum().backward()
            adam.step()
        with torch.no_grad():
            torch.testing.assert_close(batched.images[i : i + 1], own(z), rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(batched.z[i : i + 1], z, rtol=1e-4, atol=1e-5)


def test_adam_is_fused_and_equals_the_default_adam() -> None:
    draw = torch.Generator().manual_seed(0)
    start = [torch.randn(4, 300, generator=draw), torch.randn(4, 7, generator=draw)]
    grads = [[torch.randn(p.shape, generator=draw) for p in start] for _ in range(5)]
    finals = []
    for make in (engine.make_optimiser, lambda groups: torch.optim.Adam(groups)):
        leaves = [p.clone().requires_grad_(True) for p in start]
        optimiser = make([{"params": leaves[:1], "lr": 1e-2}, {"params": leaves[1:], "lr": 0.0}])
        for step in grads:
            for leaf, grad in zip(leaves, step, strict=True):
                leaf.grad = grad.clone()
            optimiser.step()
        finals.append(leaves)
        if make is engine.make_optimiser:
            assert optimiser.defaults["fused"] or not hasattr(torch, "_fused_adam_")
    for a, b in zip(*finals, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert torch.equal(finals[0][1], start[1])  # lr 0: untouched


class FirstPixel:
    """A measurement of the first pixel only (NaN read as 0): a non-finite image elsewhere
    leaves the loss finite."""

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :1].nan_to_num(0.0)


def test_a_non_finite_image_with_a_finite_loss_diverges() -> None:
    net = generator("stored")
    z0 = standard_normal(range(3), LATENT)
    z0[1, 5] = math.inf  # image 1 is NaN everywhere, its measured pixel read as 0
    y = torch.zeros(3, 1)
    result = optimise_latent(net, FirstPixel(), y, z0, steps=2, lr=1e-2, progress=False)
    assert result.diverged.tolist() == [False, True, False]
    assert torch.isnan(result.images[1]).all()
    assert torch.isfinite(result.images[[0, 2]]).all()


def test_bf16_autocast_runs_in_mixed_precision() -> None:
    # CUDA's bf16 autocast cannot run here; CPU autocast exercises the same mixed
    # bf16 activations / fp32 parameters in the batch norms.
    net = generator("per_image")
    params = perturbed(net)
    z = standard_normal(range(N), LATENT)
    reference = per_image_generator(net)(params, z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = per_image_generator(net)(params, z)
    low.float().sum().backward()
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), reference, rtol=0, atol=0.05)


def test_reused_gradient_memory_gives_autograds_gradients() -> None:
    net = generator("stored")
    params = perturbed(net)
    z = standard_normal(range(N), LATENT).requires_grad_(True)
    plain = per_image_generator(net)
    reusing = per_image_generator(net, reuse_grad_memory=True)
    leaves = [z, *params.values()]

    def objective(forward, scale: float, penalty: bool) -> torch.Tensor:
        # A penalty (as optimise_joint's) reaches the weights outside the generator too.
        extra = sum(value.square().sum() for value in params.values()) if penalty else 0
        return scale * forward(params, z).square().sum() + extra

    name = "net.3.weight"  # a transposed convolution's weight
    for penalty in (False, True):
        expected = [torch.autograd.grad(objective(plain, s, penalty), leaves) for s in (1, 2)]
        addresses = set()
        for scale, wanted in zip((1, 2), expected, strict=True):
            for leaf in leaves:
                leaf.grad = None
            objective(reusing, scale, penalty).backward()
            for leaf, grad in zip(leaves, wanted, strict=True):
                torch.testing.assert_close(leaf.grad, grad, rtol=1e-5, atol=1e-6)
            addresses.add(params[name].grad.data_ptr())
        if not penalty:  # the second step's gradient went to the first one's memory
            assert len(addresses) == 1
        # Without clearing, the gradients accumulate, as with autograd's own backward.
        objective(reusing, 1, penalty).backward()
        for leaf, first, second in zip(leaves, *expected, strict=True):
            torch.testing.assert_close(leaf.grad, first + second, rtol=1e-5, atol=1e-6)
    # Two forwards in one backward: the first gradient is not overwritten by the second.
    for leaf in leaves:
        leaf.grad = None
    (objective(reusing, 1, False) + objective(reusing, 2, False)).backward()
    twice = torch.autograd.grad(objective(plain, 1, False) + objective(plain, 2, False), leaves)
    for leaf, grad in zip(leaves, twice, strict=True):
        torch.testing.assert_close(leaf.grad, grad, rtol=1e-5, atol=1e-6)
