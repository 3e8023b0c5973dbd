"""The Deep Decoder (Heckel & Hand, ICLR 2019): an under-parameterised untrained network,
fitted per image to the measurements with its input held fixed.

Architecture (the reference's ``decodernw``, github reinhardh/supplement_deep_decoder,
include/decoder.py, with ``num_channels_up=[k] * upsamplings``, ``upsample_first=True``,
``filter_size_up=1``, ``bn_before_act=False``): a fixed input B0 (k, s, s), then
``upsamplings + 1`` blocks of

    1x1 convolution (k -> k, no bias) -> x2 bilinear upsampling (all but the last block)
    -> ReLU -> channel normalisation (affine),

then a 1x1 convolution (k -> 3, no bias) and the output map. The reference ends in a
sigmoid (images in [0, 1]); images here live in [-1, 1], so the output map is
2 * sigmoid - 1, the reference's output under the affine map u -> 2u - 1 between the two
ranges (the same network, not a change of architecture). The spatial size s of the input
is 64 / 2**upsamplings, as the reference's ``fit`` derives it from the image size.

Channel normalisation is the reference's ``nn.BatchNorm2d`` on a batch of one image: each
channel normalised by its own spatial mean and (biased) variance, eps 1e-5, then a learned
scale and shift. Here every image is a batch of one under ``torch.func.vmap``, so no
statistic is ever shared across the images of a job.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lowshot.methods.base import RecoveryMethod, RecoveryTask, register
from lowshot.methods.engine import StageResult, optimise_joint
from lowshot.problems import IMAGE_SHAPE
from lowshot.seeds import derive_seed, seeded_generator

# ``nn.BatchNorm2d``'s default eps, what the reference's channel normalisation uses.
NORM_EPS = 1e-5
# The reference's input: uniform noise on [0, 1) scaled by 1/10 (include/fit.py,
# ``net_input.data.uniform_(); net_input.data *= 1./10``).
INPUT_SCALE = 0.1


class DeepDecoder(nn.Module):
    """The Deep Decoder as a template for ``optimise_joint``: forward maps the flattened
    fixed input z (N, channels * side**2) to images (N, 3, 64, 64) in (-1, 1).

    channels: k, the width of every layer (>= 1); upsamplings: the x2 bilinear
    upsamplings (0 to 6), which fix the input's side 64 / 2**upsamplings.
    """

    def __init__(self, channels: int, upsamplings: int) -> None:
        super().__init__()
        size = IMAGE_SHAPE[1]
        if channels < 1:
            raise ValueError(f"deep_decoder: channels must be >= 1, not {channels}")
        if upsamplings < 0 or size % 2**upsamplings:
            raise ValueError(
                f"deep_decoder: upsamplings must be 0..{int(math.log2(size))} so that "
                f"2**upsamplings divides the image side {size}, not {upsamplings}"
            )
        self.channels = channels
        self.upsamplings = upsamplings
        self.side = size // 2**upsamplings
        self.latent_dim = channels * self.side**2
        self.convs = nn.ParameterList(
            [nn.Parameter(torch.empty(channels, channels)) for _ in range(upsamplings + 1)]
        )
        self.scales = nn.ParameterList(
            [nn.Parameter(torch.ones(channels)) for _ in range(upsamplings + 1)]
        )
        self.shifts = nn.ParameterList(
            [nn.Parameter(torch.zeros(channels)) for _ in range(upsamplings + 1)]
        )
        self.output = nn.Parameter(torch.empty(IMAGE_SHAPE[0], channels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, channels * side**2) -> images (N, 3, 64, 64) in (-1, 1)."""
        x = z.reshape(z.shape[0], self.channels, self.side, self.side)
        last = len(self.convs) - 1
        for block, (weight, scale, shift) in enumerate(
            zip(self.convs, self.scales, self.shifts, strict=True)
        ):
            x = torch.einsum("oc,nchw->nohw", weight, x)  # a 1x1 convolution without bias
            if block != last:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = channel_norm(torch.relu(x), scale, shift)
        x = torch.einsum("oc,nchw->nohw", self.output, x)
        return 2 * torch.sigmoid(x) - 1

    def initial_parameters(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One image's theta, drawn on the CPU from ``generator``: name -> tensor.

        The 1x1 convolution weights are U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the law of
        PyTorch's default ``nn.Conv2d`` initialisation that the reference relies on
        (kaiming_uniform with a = sqrt(5)); the normalisations start as the identity
        (scale 1, shift 0), as ``nn.BatchNorm2d`` does.
        """
        bound = 1 / math.sqrt(self.channels)
        params = {}
        for name, param in self.named_parameters():
            if name.startswith(("convs.", "output")):
                uniform = torch.rand(param.shape, generator=generator)
                params[name] = (2 * uniform - 1) * bound
            else:
                params[name] = param.detach().cpu().clone()
        return params

    def fixed_input(self, generator: torch.Generator) -> torch.Tensor:
        """One image's input B0, flattened: (channels * side**2,) ~ U[0, 0.1) (the
        reference's ``fit``), drawn on the CPU from ``generator``."""
        return torch.rand(self.latent_dim, generator=generator) * INPUT_SCALE


def channel_norm(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Normalise each channel of each image by its own spatial statistics, then scale and
    shift: x (N, C, H, W), scale and shift (C,) -> (N, C, H, W)."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + NORM_EPS) * scale[:, None, None] + shift[:, None, None]


@register
class DeepDecoderMethod(RecoveryMethod):
    """The Deep Decoder fitted to y: per image a random theta (sub-stream "theta") and a
    fixed random input (sub-stream "input"), then ``steps`` Adam steps at ``lr`` on theta
    alone minimising 0.5 ||A G(B0; theta) - y||^2; with ``find_best`` the returned iterate
    is the one with the lowest measurement loss over the whole run (the reference's
    ``find_best``, which keeps the best network whenever the loss falls by 0.5%; here the
    lowest loss, without that threshold). ``z`` is the flattened fixed input B0.

    Images never mix: on the identity operator a batch and one image at a time agree
    bit for bit. An operator whose batched evaluation rounds differently from a single
    one (a Gaussian A: matrix product against matrix-vector product, ~1e-7) makes the fit
    differ after tens of steps, as for every untrained network fitted by a ReLU network
    and an adaptive optimiser: the result is reproducible for a given job, and
    statistically (not bitwise) independent of which images share it.

    Defaults: the reference's denoising recipe (github reinhardh/supplement_deep_decoder,
    denoising.ipynb and include/fit.py) except the width, which the reference sets for
    512x512 images (module docstring, and the ``channels`` setting).
    """

    kind = "deep_decoder"
    description = "Deep Decoder: an under-parameterised untrained network, input fixed."
    label = "Deep Decoder"
    style = {"color": "tab:purple", "linestyle": "-", "marker": "o"}
    order = 50
    enabled_by_default = False
    settings = {
        "channels": {
            "description": (
                "Width k of every layer. Our choice: the reference sets k per task and "
                "image size (github reinhardh/supplement_deep_decoder: 128 for denoising, "
                "32 to 128 for compression, 256 for inpainting, at 512x512); we took the "
                "width with the best validation PSNR among those that keep the network "
                "under-parameterised (fewer parameters than the 12,288 values of an "
                "image, which the method rests on): at m/n = 0.1 on 3 validation faces "
                "with the other defaults, k = 16 (1,776 parameters) gave 23.72 dB and "
                "k = 32 (6,624) 24.47 dB; k = 64 (25,536) is over-parameterised."
            ),
            "type": "integer",
            "minimum": 1,
            "default": 32,
        },
        "upsamplings": {
            "description": (
                "x2 bilinear upsamplings; the fixed input is (k, 64 / 2**upsamplings, "
                "...). The reference's num_channels_up = [k] * 5 (denoising.ipynb) gives 5, "
                "so a 2x2 input for 64x64 images."
            ),
            "type": "integer",
            "minimum": 0,
            "maximum": 6,
            "default": 5,
        },
        "steps": {
            "description": "Adam steps on theta (the reference's denoising.ipynb: numit = 1900).",
            "type": "integer",
            "minimum": 1,
            "default": 1900,
        },
        "lr": {
            "description": (
                "Adam learning rate (the reference's include/fit.py default LR = 0.01, "
                "which denoising.ipynb uses; Adam ignores the loss's scale, so it carries "
                "over from the reference's pixel MSE to 0.5 ||A x - y||^2)."
            ),
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 0.01,
        },
        "find_best": {
            "description": (
                "Return the iterate with the lowest measurement loss over the whole run, "
                "else the last one (the reference's denoising.ipynb: find_best = True); "
                "needs no access to the true image."
            ),
            "type": "boolean",
            "default": True,
        },
    }

    @classmethod
    def run(cls, task: RecoveryTask) -> StageResult:
        y, seeds, settings = task.y, task.seeds, task.settings
        template = DeepDecoder(settings["channels"], settings["upsamplings"])
        per_image = [
            template.initial_parameters(seeded_generator(derive_seed(s, "theta"))) for s in seeds
        ]
        template = template.to(y.device)
        template.requires_grad_(False)
        params = {
            name: torch.stack([theta[name] for theta in per_image])
            .to(y.device)
            .requires_grad_(True)
            for name, _ in template.named_parameters()
        }
        inputs = [template.fixed_input(seeded_generator(derive_seed(s, "input"))) for s in seeds]
        z0 = (torch.stack(inputs) if inputs else torch.empty(0, template.latent_dim)).to(y.device)
        steps = settings["steps"]
        return optimise_joint(
            template,
            params,
            task.operator,
            y,
            z0,
            steps=steps,
            theta_lr=settings["lr"],
            z_lr=None,
            optimiser="adam",
            window=steps + 1 if settings["find_best"] else 1,
            desc="deep decoder",
            **task.options,
        )
