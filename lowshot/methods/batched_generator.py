"""N DCGAN generators with per-image weights, evaluated as batched matrix products.

The joint stage (paper eq. 3) runs image i through the generator with its own theta_i.
``per_image_generator(template)`` returns f(params, z) -> images that computes what
``torch.func.vmap`` over ``functional_call(template, params_i, z_i)`` computes (up to
float rounding), for
the DCGAN ``lowshot.models.Generator`` in the norm modes "stored" and "per_image", with
a handful of large kernels per layer instead of vmap's grouped convolutions:

- a transposed convolution with per-image weights W_i (C_in, C_out, k, k) is, for image
  i, the matrix product cols_i = x_i^T W_i, x_i (C_in, H*W) and W_i viewed as
  (C_in, C_out*k*k) (no copy), followed by col2im (``F.fold``), which adds every
  input position's k x k block of outputs into place (stride s, padding p): one
  ``torch.bmm`` over the N images and one ``fold`` over all of them at once (the N
  images' channels stacked as the channels of one image, so the col2im and its
  backward, im2col, are one kernel each rather than one per image);
- the first layer (a 1x1 input, padding 0) is the plain bmm (N, 1, C_in) @
  (N, C_in, C_out*k*k), its output already the (C_out, k, k) image;
- the batch norm: one ``F.batch_norm`` on the (1, N*C, H, W) view, with each image's
  own affine weight and bias (and the shared stored statistics repeated N times, or,
  in "per_image" mode, each (image, channel)'s own spatial statistics: training-mode
  batch norm of a batch of one, which is what that mode is).

Why this design: forward + backward of the paper's generator (width 64), N per-image
weight sets, on the project's 2-core CPU (2 threads, quiet machine, min of 9 runs at
N = 8 / of 3 at N = 50), against the per-image loop (mkldnn ``conv_transpose2d``, batch 1):

    variant                                              N = 8      N = 50
    vmap over functional_call (the engine before)       139 ms     996 ms
    grouped conv_transpose2d, groups=N                   135 ms    1677 ms
    sub-pixel: 4 phases of 2x2 convs, im2col + bmm,      331 ms    3059 ms
      weights rearranged every step (flip/permute copies)
    the same with theta kept in the phase layout          86 ms     640 ms
      (not possible behind the stacked-parameter dict)
    bmm + col2im, cols = W^T x                           152 ms    1422 ms
    bmm + col2im, cols = x^T W                            70 ms     518 ms
    ... and the weight gradients in reused memory         50 ms     426 ms  <- this module
    per-image loop                                        84 ms     583 ms

(vmap's batching rule turns the convolutions into the grouped one, whose mkldnn kernels
are slower than N batch-1 ones; the phase decomposition wastes up to 1.6x the FLOPs on small
inputs and, behind the dict interface, copies theta twice a step.) ``stack_parameters``'s
layout is used as it is: no copy of theta.

Any other module (the Deep Decoder, a generator in "batch" mode, a subclass with its
own forward) gets ``None``: the caller falls back to vmap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lowshot.models import Generator, GeneratorNorm

PerImageForward = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _Conv:
    """A bias-free ConvTranspose2d: parameter ``weight`` (C_in, C_out, k, k)."""

    weight: str
    c_out: int
    kernel: int
    stride: int
    padding: int


@dataclass(frozen=True)
class _Norm:
    """A GeneratorNorm: affine ``weight``/``bias`` per image; ``module`` holds the stored
    statistics (read at every call) and eps; ``per_image``: spatial statistics."""

    weight: str
    bias: str
    module: GeneratorNorm
    per_image: bool


Layer = _Conv | _Norm | str  # str: "relu" or "tanh"


def plan(template: nn.Module) -> list[Layer] | None:
    """The layers of ``template`` if the batched path computes its forward exactly, else
    None: a ``Generator`` (its own forward) in norm mode "stored" or "per_image" whose
    ``net`` holds only bias-free, ungrouped, undilated square ConvTranspose2d layers
    (no output padding), affine GeneratorNorm layers with the matching mode, ReLU and
    Tanh."""
    if not isinstance(template, Generator) or type(template).forward is not Generator.forward:
        return None
    if template.norm not in ("stored", "per_image"):
        return None
    layers: list[Layer] = []
    for index, module in enumerate(template.net):
        prefix = f"net.{index}."
        if isinstance(module, nn.ConvTranspose2d):
            k = module.kernel_size
            if (
                type(module) is not nn.ConvTranspose2d
                or module.bias is not None
                or module.groups != 1
                or k[0] != k[1]
                or module.stride[0] != module.stride[1]
                or module.padding[0] != module.padding[1]
                or module.dilation != (1, 1)
                or module.output_padding != (0, 0)
                or module.padding_mode != "zeros"
            ):
                return None
            layers.append(
                _Conv(
                    prefix + "weight",
                    module.out_channels,
                    k[0],
                    module.stride[0],
                    module.padding[0],
                )
            )
        elif isinstance(module, GeneratorNorm):
            if type(module) is not GeneratorNorm or module.mode != template.norm:
                return None
            if not module.affine or (template.norm == "stored" and module.running_mean is None):
                return None
            layers.append(
                _Norm(prefix + "weight", prefix + "bias", module, template.norm == "per_image")
            )
        elif type(module) is nn.ReLU:
            layers.append("relu")
        elif type(module) is nn.Tanh:
            layers.append("tanh")
        else:
            return None
    return layers


def per_image_generator(
    template: nn.Module, *, reuse_grad_memory: bool = False
) -> PerImageForward | None:
    """f(params, z) -> images for ``template`` (see the module docstring), or None when
    ``template`` is not a generator the batched path covers.

    params: name -> (N, *shape) stacked parameters (``stack_parameters``'s order and
    layout), z (N, latent) -> (N, 3, 64, 64); image i uses params[.][i] and the
    template's buffers. Differentiable in params and z.

    ``reuse_grad_memory`` (for an optimisation loop that clears the gradients with
    ``zero_grad(set_to_none=True)`` before every backward, as the engine does): on the
    CPU, without autocast, every step's gradient of a transposed convolution's weights is
    written into the same memory, owned by f, instead of freshly allocated memory. A
    step's weight gradients are large (N * 8 MB for the paper's second layer) and glibc
    returns blocks over 32 MB to the system when they are freed, so that every step would
    otherwise pay the page faults of touching new memory: at N = 8 on 2 threads, the two
    first layers' weight gradients take 25 ms instead of 3 ms. The memory is reused only
    when no tensor refers to the previous gradient written there any more (a leaf's
    ``.grad`` not cleared, a gradient still to be summed with another, a reference kept
    by the caller all get new memory), so the gradients are always autograd's.
    """
    layers = plan(template)
    if layers is None:
        return None
    latent = template.latent_dim
    grad_memory: dict[str, torch.Tensor] | None = {} if reuse_grad_memory else None

    def forward(params: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        x = z.reshape(z.shape[0], latent, 1, 1)
        for layer in layers:
            if isinstance(layer, _Conv):
                weight = params[layer.weight]
                if grad_memory is not None and _reusable(x, weight):
                    x = _ConvTransposeReusingGrad.apply(
                        x, weight, layer.stride, layer.padding, grad_memory, layer.weight
                    )
                else:
                    x = conv_transpose(x, weight, layer.stride, layer.padding)
            elif isinstance(layer, _Norm):
                x = norm(x, params[layer.weight], params[layer.bias], layer)
            elif layer == "relu":
                x = torch.relu(x)
            else:
                x = torch.tanh(x)
        return x

    return forward


def _output_size(h: int, w: int, k: int, stride: int, padding: int) -> tuple[int, int]:
    return (h - 1) * stride - 2 * padding + k, (w - 1) * stride - 2 * padding + k


def conv_transpose(
    x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int
) -> torch.Tensor:
    """Image i's ``F.conv_transpose2d(x[i], weight[i], stride=stride, padding=padding)``
    for every i: x (N, C_in, H, W), weight (N, C_in, C_out, k, k) -> (N, C_out, H', W')
    with H' = (H - 1) * stride - 2 * padding + k."""
    n, c_in, h, w = x.shape
    c_out, k = weight.shape[2], weight.shape[-1]
    # (N, H*W, C_in) @ (N, C_in, C_out*k*k): both operands are views, no copy.
    cols = torch.bmm(x.reshape(n, c_in, h * w).transpose(1, 2), weight.reshape(n, c_in, -1))
    if h == 1 and w == 1 and padding == 0:
        return cols.reshape(n, c_out, k, k)
    height, width = _output_size(h, w, k, stride, padding)
    # col2im of the N images as one image of N * C_out channels: one kernel, one im2col
    # in the backward (fold loops over the batch).
    cols = cols.transpose(1, 2).reshape(1, n * c_out * k * k, h * w)
    out = F.fold(cols, (height, width), k, padding=padding, stride=stride)
    return out.reshape(n, c_out, height, width)


def _reusable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the weight gradient may go to reused memory: a float32 CPU leaf that
    needs a gradient, no autocast (whose casts the custom backward does not replay)."""
    return (
        torch.is_grad_enabled()
        and weight.is_leaf
        and weight.requires_grad
        and weight.device.type == "cpu"
        and weight.dtype == x.dtype == torch.float32
        and not _cpu_autocast()
    )


def _unshared(tensor: torch.Tensor) -> bool:
    """Whether no other tensor uses ``tensor``'s memory (so that it may be overwritten).
    False where torch does not tell (then memory is never reused)."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    if count is None:
        return False
    # The references: ``tensor`` and the temporary storage object of the call.
    return count(tensor.untyped_storage()._cdata) <= 2


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


class _ConvTransposeReusingGrad(torch.autograd.Function):
    """``conv_transpose`` whose weight gradient is written into ``memory[key]``, kept
    from one backward to the next, when no tensor still uses that memory."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        stride: int,
        padding: int,
        memory: dict[str, torch.Tensor],
        key: str,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.memory, ctx.key = stride, padding, memory, key
        return conv_transpose(x, weight, stride, padding)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        n, c_in, h, w = x.shape
        k = weight.shape[-1]
        if h == 1 and w == 1 and ctx.padding == 0:
            columns = grad_out.reshape(n, -1, 1)
        else:
            # im2col of the N images as one: (N, C_out*k*k, H*W), the gradient of cols^T.
            flat = grad_out.reshape(1, -1, *grad_out.shape[-2:])
            columns = F.unfold(flat, k, padding=ctx.padding, stride=ctx.stride)
            columns = columns.reshape(n, -1, h * w)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.bmm(weight.reshape(n, c_in, -1), columns).reshape(x.shape)
        if ctx.needs_input_grad[1]:
            shape = (n, c_in, columns.shape[1])
            out = ctx.memory.get(ctx.key)
            if out is None or out.shape != shape or not _unshared(out):
                # First use, or the last gradient written there is still alive (a leaf's
                # .grad being accumulated into, a gradient not yet summed): new memory.
                out = ctx.memory[ctx.key] = weight.new_empty(shape)
            x_columns = x.reshape(n, c_in, h * w)
            grad = torch.bmm(x_columns, columns.transpose(1, 2), out=out)
            # A fresh view (one reference): autograd makes it the leaf's .grad, no copy.
            grad_weight = grad.view(weight.shape)
        return grad_x, grad_weight, None, None, None, None


def norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, layer: _Norm) -> torch.Tensor:
    """GeneratorNorm of image i with affine weight[i], bias[i] (N, C), for every i, in one
    ``F.batch_norm`` over the (1, N*C, H, W) view."""
    n, c, h, w = x.shape
    module = layer.module
    flat = x.reshape(1, n * c, h, w)
    # "per_image": training-mode batch norm of a batch of one, each (image, channel)'s own
    # spatial mean and biased variance, no running statistics; "stored": eval mode with
    # the shared statistics, once per image.
    if layer.per_image:
        mean, var = None, None
    else:
        mean, var = module.running_mean.repeat(n), module.running_var.repeat(n)
    affine = weight.reshape(-1), bias.reshape(-1)
    out = F.batch_norm(flat, mean, var, *affine, layer.per_image, 0.0, module.eps)
    return out.reshape(n, c, h, w)
