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
import math

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


# Initialisations of a network's parameters (``initial_value``), by name:
# - "dcgan": DCGAN's (Radford et al. 2016, and github pytorch/examples, dcgan/main.py,
#   ``weights_init``): conv weights N(0, 0.02), norm weights N(1, 0.02), biases 0;
# - "pytorch-0.4": torch 0.4.1's module defaults, the torch that CS-DIP's code pins
#   (github davevanveen/compsensing_dip, requirements.txt: torch==0.4.1) and that its
#   networks were drawn by (it sets no initialisation of its own): conv and transposed-conv
#   weights and biases U(-b, b) with b = 1 / sqrt(in_channels * prod(kernel_size))
#   (torch/nn/modules/conv.py, ``_ConvNd.reset_parameters``: ``n = self.in_channels``
#   for both kinds), batch-norm weights U(0, 1) and biases 0 (torch/nn/modules/
#   batchnorm.py, ``self.weight.data.uniform_()``; documented in pytorch/pytorch#9038; the
#   change to 1 is pytorch/pytorch#12259, #13774);
# - "pytorch": torch's defaults today (torch 2.x, ``_ConvNd.reset_parameters``:
#   kaiming_uniform_(a=sqrt(5)), i.e. U(-b, b) with b = 1 / sqrt(fan_in) and fan_in =
#   weight.shape[1] * prod(kernel_size), which for a transposed convolution is
#   out_channels * k * k; batch-norm weights 1, biases 0).
INITS = ("dcgan", "pytorch-0.4", "pytorch")
_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def initial_value(
    module: nn.Module, name: str, init: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The initial value of ``module``'s parameter ``name`` ("weight" or "bias") under
    ``init`` (one of ``INITS``), drawn on the CPU in float32 from ``generator``.

    ``module``: a Conv2d or ConvTranspose2d, a BatchNorm2d (any of its subclasses) or,
    for "dcgan" only, a GroupNorm; anything else is a ValueError. A module's draws are
    made in the order of its parameters (weight, then bias), which ``init_weights`` and
    ``lowshot.methods.untrained.initial_parameters`` both follow, so that the same
    generator gives the same values either way.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, not {init!r}")
    shape = getattr(module, name).shape
    is_norm = isinstance(module, nn.BatchNorm2d) or (
        init == "dcgan" and isinstance(module, nn.GroupNorm)
    )
    if not isinstance(module, _CONVS) and not is_norm:
        raise ValueError(f"init {init!r} does not cover a {type(module).__name__}")
    if is_norm:
        if name == "bias":
            return torch.zeros(shape)
        if init == "dcgan":
            return 1.0 + torch.randn(shape, generator=generator) * 0.02
        if init == "pytorch-0.4":
            return torch.empty(shape).uniform_(0.0, 1.0, generator=generator)
        return torch.ones(shape)
    if init == "dcgan":
        if name == "bias":
            return torch.zeros(shape)
        return torch.randn(shape, generator=generator) * 0.02
    kernel = math.prod(module.kernel_size)
    fan_in = (
        module.in_channels * kernel if init == "pytorch-0.4" else module.weight.shape[1] * kernel
    )
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def init_weights(module: nn.Module, init: str, generator: torch.Generator | None = None) -> None:
    """Set every parameter of ``module`` and its submodules to ``initial_value`` under
    ``init`` (a module type it does not cover is an error)."""
    with torch.no_grad():
        for sub in module.modules():
            for name, param in sub.named_parameters(recurse=False):
                param.copy_(initial_value(sub, name, init, generator))


def init_dcgan_weights(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), norm weights N(1, 0.02), biases 0;
    the parameters of other module types are left as they are.

    Pass a seeded ``generator`` to make the draw reproducible.
    """
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, (*_CONVS, nn.BatchNorm2d, nn.GroupNorm)):
                for name, param in sub.named_parameters(recurse=False):
                    param.copy_(initial_value(sub, name, "dcgan", generator))


def make_generator(
    latent_dim: int = 128, seed_generator: torch.Generator | None = None
) -> Generator:
    """A DCGAN-initialised generator on the CPU (move it with ``.to(device)``)."""
    generator = Generator(latent_dim)
    init_dcgan_weights(generator, seed_generator)
    return generator
