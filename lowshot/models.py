"""The DCGAN generator G(z; theta) shared by every method, and the WGAN-GP critic.

Generator: z (N, latent) -> images (N, 3, 64, 64) in [-1, 1]:
ConvTranspose latent->512 (k4 s1 p0) -> BN -> ReLU, then 512->256->128->64 (k4 s2 p1),
each -> BN -> ReLU, then 64->3 (k4 s2 p1) -> tanh; no biases.

Batch norm has three modes (``Generator.norm``):
- ``"batch"``: standard ``nn.BatchNorm2d`` behaviour (training: statistics of the batch,
  updating the running averages; eval: the stored running statistics). Used in training.
- ``"stored"``: always the stored running statistics, never updated, whatever
  ``.train()`` says. Each image's output depends on that image alone; used when a
  pre-trained generator (low-shot, WGAN-GP) recovers an image.
- ``"per_image"``: each image normalised by its own statistics over the spatial positions,
  exactly what batch-size-1 training mode would compute; running statistics untouched.
  Used by the untrained network, whose stored statistics mean nothing.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

NORM_MODES = ("batch", "stored", "per_image")


class GeneratorNorm(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose normalisation follows the owning generator's ``norm`` mode."""

    mode: str = "batch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "batch":
            return super().forward(x)
        if self.mode == "stored":
            return F.batch_norm(
                x,
                self.running_mean,
                self.running_var,
                self.weight,
                self.bias,
                training=False,
                eps=self.eps,
            )
        mean = x.mean(dim=(-2, -1), keepdim=True)
        var = x.var(dim=(-2, -1), keepdim=True, unbiased=False)
        normalised = (x - mean) * torch.rsqrt(var + self.eps)
        return normalised * self.weight[:, None, None] + self.bias[:, None, None]


class Generator(nn.Module):
    """DCGAN generator, latent ``latent_dim`` -> (N, 3, 64, 64) in [-1, 1]."""

    def __init__(self, latent_dim: int = 128, width: int = 64) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        channels = [width * 8, width * 4, width * 2, width]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, channels[0], 4, 1, 0, bias=False),
            GeneratorNorm(channels[0]),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in itertools.pairwise(channels):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                GeneratorNorm(c_out),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(channels[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self._norm = "batch"

    @property
    def norm(self) -> str:
        return self._norm

    @norm.setter
    def norm(self, mode: str) -> None:
        if mode not in NORM_MODES:
            raise ValueError(f"norm must be one of {NORM_MODES}, not {mode!r}")
        self._norm = mode
        for module in self.modules():
            if isinstance(module, GeneratorNorm):
                module.mode = mode

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (N, latent_dim) -> images (N, 3, 64, 64) in [-1, 1]."""
        return self.net(z.reshape(z.shape[0], self.latent_dim, 1, 1))


class Critic(nn.Module):
    """WGAN-GP critic mirroring the generator: (N, 3, 64, 64) -> scores (N,).

    Strided convolutions 3->64->128->256->512 (k4 s2 p1) with LeakyReLU(0.2) and layer
    normalisation over (C, H, W) (``GroupNorm`` with one group); no batch norm, which would
    couple the samples of a batch and break the per-sample gradient penalty.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        channels = [width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in itertools.pairwise(channels):
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1),
                nn.GroupNorm(1, c_out),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(channels[-1], 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, 64, 64) in [-1, 1] -> (N,) unbounded scores."""
        return self.net(x).reshape(x.shape[0])


def init_dcgan_weights(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), norm weights N(1, 0.02), biases 0.

    Pass a seeded ``generator`` to make the draw reproducible.
    """
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, (nn.Conv2d, nn.ConvTranspose2d)):
                sub.weight.copy_(torch.randn(sub.weight.shape, generator=generator) * 0.02)
                if sub.bias is not None:
                    sub.bias.zero_()
            elif isinstance(sub, (nn.BatchNorm2d, nn.GroupNorm)):
                sub.weight.copy_(1.0 + torch.randn(sub.weight.shape, generator=generator) * 0.02)
                sub.bias.zero_()


def make_generator(
    latent_dim: int = 128, seed_generator: torch.Generator | None = None
) -> Generator:
    """A DCGAN-initialised generator on the CPU (move it with ``.to(device)``)."""
    generator = Generator(latent_dim)
    init_dcgan_weights(generator, seed_generator)
    return generator
