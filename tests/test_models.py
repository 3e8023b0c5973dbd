"""The DCGAN generator and the WGAN-GP critic of lowshot/models.py."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lowshot.models import Critic, Generator, GeneratorNorm, init_dcgan_weights, make_generator


def _latents(n: int, seed: int = 0, dim: int = 128) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _narrow_generator(seed: int = 0) -> Generator:
    """A width-8 generator with non-trivial BN affine parameters and running stats."""
    generator = Generator(latent_dim=128, width=8)
    rng = torch.Generator().manual_seed(seed)
    init_dcgan_weights(generator, rng)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, GeneratorNorm):
                module.weight.copy_(1 + 0.3 * torch.randn(module.weight.shape, generator=rng))
                module.bias.copy_(0.3 * torch.randn(module.bias.shape, generator=rng))
                module.running_mean.copy_(0.01 * torch.randn(module.num_features, generator=rng))
                module.running_var.copy_(0.01 + torch.rand(module.num_features, generator=rng))
    return generator


def test_generator_output_shape_and_range() -> None:
    generator = make_generator(128, torch.Generator().manual_seed(0))
    out = generator(_latents(3))
    assert out.shape == (3, 3, 64, 64)
    assert out.min() >= -1 and out.max() <= 1
    assert out.std() > 0


def test_generator_architecture_and_no_biases() -> None:
    generator = Generator()
    convs = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    shapes = [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs]
    assert shapes == [
        (128, 512, (4, 4), (1, 1), (0, 0)),
        (512, 256, (4, 4), (2, 2), (1, 1)),
        (256, 128, (4, 4), (2, 2), (1, 1)),
        (128, 64, (4, 4), (2, 2), (1, 1)),
        (64, 3, (4, 4), (2, 2), (1, 1)),
    ]
    assert all(c.bias is None for c in convs)
    # The only "bias" parameters are the batch norms' affine shifts.
    owners = {name.rsplit(".", 1)[0] for name, _ in generator.named_parameters() if "bias" in name}
    modules = dict(generator.named_modules())
    assert owners and all(isinstance(modules[o], GeneratorNorm) for o in owners)
    assert isinstance(list(generator.net)[-1], nn.Tanh)


def test_per_image_norm_equals_one_by_one_batch_training_mode() -> None:
    generator = _narrow_generator()
    z = _latents(4, seed=1)
    before = copy.deepcopy(generator.state_dict())
    generator.norm = "per_image"
    generator.train()
    together = generator(z)
    for key, value in generator.state_dict().items():
        assert torch.equal(value, before[key]), f"per_image changed buffer {key}"
    for i in range(4):
        single = copy.deepcopy(generator)
        single.norm = "batch"
        single.train()
        assert torch.allclose(together[i], single(z[i : i + 1])[0], atol=1e-5)


def test_stored_norm_ignores_the_batch_and_never_updates() -> None:
    generator = _narrow_generator(seed=2)
    z = _latents(4, seed=3)
    before = copy.deepcopy(generator.state_dict())
    generator.norm = "stored"
    generator.train()  # stored statistics even in training mode
    together = generator(z)
    for key, value in generator.state_dict().items():
        assert torch.equal(value, before[key]), f"stored changed buffer {key}"
    for i in range(4):
        assert torch.allclose(together[i], generator(z[i : i + 1])[0], atol=1e-6)
    reference = copy.deepcopy(generator)
    reference.norm = "batch"
    reference.eval()  # plain BatchNorm eval: the same running statistics
    assert torch.allclose(together, reference(z), atol=1e-6)


def test_batch_norm_mode_couples_the_batch() -> None:
    # The contrast that makes the two tests above meaningful.
    generator = _narrow_generator(seed=4)
    generator.norm = "batch"
    generator.train()
    z = _latents(4, seed=5)
    assert not torch.allclose(generator(z)[0], generator(z[:2])[0], atol=1e-4)


def test_invalid_norm_mode_is_rejected() -> None:
    with pytest.raises(ValueError):
        Generator(width=8).norm = "instance"


def test_critic_has_no_batch_norm_and_scores_each_sample_alone() -> None:
    critic = Critic()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    assert any(isinstance(m, nn.GroupNorm) and m.num_groups == 1 for m in critic.modules())
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(6)) * 2 - 1
    scores = critic(x)
    assert scores.shape == (3,)
    assert torch.allclose(scores[1], critic(x[1:2])[0], atol=1e-5)
