"""A 3D convolution that keeps float32 CPU work on oneDNN.

PyTorch sends a float32 CPU convolution with a batch of one and few channels (``N * C * X * Y
<= 20480``, e.g. 16 channels at 32 x 32 in-plane) to its reference "slow_conv3d" kernel,
which runs on one thread, and its backward to the same kernel. That is most of this network's
convolutions in a training step (a batch of one patch) and in an encoding window. Where that
rule would pick the reference kernel, ``Conv3d`` runs the forward on oneDNN
(``aten.mkldnn_convolution``, multi-threaded) and computes the backward itself from oneDNN
convolutions (input gradient) and one matrix product (weight gradient). Elsewhere (bfloat16
autocast, where oneDNN is used anyway; other devices; grouped or dilated convolutions) it is
``torch.nn.Conv3d``. The parameters and state-dict keys are those of ``torch.nn.Conv3d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _triple(v) -> tuple[int, int, int]:
    return tuple(int(a) for a in v)  # type: ignore[return-value]


def routes_to_onednn(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation, groups: int) -> bool:
    """True when PyTorch would run this float32 CPU convolution on its single-threaded
    reference kernel and ``Conv3d`` takes it to oneDNN instead."""
    if (x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32
            or groups != 1 or any(d != 1 for d in dilation) or torch.is_autocast_enabled("cpu")
            or not torch.backends.mkldnn.is_available() or not torch.backends.mkldnn.enabled
            or not hasattr(torch._C, "_select_conv_backend")):  # a private API: without it, torch's path
        return False
    backend = torch._C._select_conv_backend(x, weight, None, list(stride), list(padding), list(dilation),
                                            False, [0, 0, 0], groups)
    return backend == torch._C._ConvBackend.Slow3d


def _onednn_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding) -> torch.Tensor:
    return torch.ops.aten.mkldnn_convolution(x, weight, bias, list(padding), list(stride), [1, 1, 1], 1)


def input_grad(grad: torch.Tensor, weight: torch.Tensor, in_shape: tuple[int, ...], stride, padding) -> torch.Tensor:
    """Gradient of a convolution's input: the output gradient spread back onto the input
    grid (zeros between strided samples, edge rows the forward's floor dropped), convolved
    with the flipped, transposed kernel.

    Shapes: grad (N, C_out, X', Y', Z'), weight (C_out, C_in, kx, ky, kz) -> ``in_shape``
    (N, C_in, X, Y, Z).
    """
    k = weight.shape[2:]
    if any(s != 1 for s in stride):
        # a grid of s * (out - 1) + 1 + r voxels per axis, r the rows the forward's floor dropped
        size = [s * (o - 1) + 1 + (i + 2 * p - kk) % s
                for s, o, i, p, kk in zip(stride, grad.shape[2:], in_shape[2:], padding, k)]
        spread = grad.new_zeros((*grad.shape[:2], *size))
        spread[:, :, ::stride[0], ::stride[1], ::stride[2]] = grad
        grad = spread
    # padding k - 1 - p on both sides of every axis (the rows the floor dropped are zeros)
    back = [kk - 1 - p for kk, p in zip(k, padding)]
    flipped = weight.transpose(0, 1).flip(2, 3, 4).contiguous()
    return _onednn_conv(grad.contiguous(), flipped, None, (1, 1, 1), back)


def weight_grad(grad: torch.Tensor, x: torch.Tensor, k: tuple[int, int, int], stride, padding) -> torch.Tensor:
    """Gradient of a convolution's weight: for each kernel offset, the output gradient
    times the input samples it saw, summed over voxels and the batch (one matrix product).

    Shapes: grad (N, C_out, X', Y', Z'), x (N, C_in, X, Y, Z) -> (C_out, C_in, kx, ky, kz).
    """
    n, c_out = grad.shape[:2]
    out = grad.shape[2:]
    xp = F.pad(x, (padding[2], padding[2], padding[1], padding[1], padding[0], padding[0]))
    cols = torch.stack([xp[:, :, a:a + stride[0] * (out[0] - 1) + 1:stride[0],
                           b:b + stride[1] * (out[1] - 1) + 1:stride[1],
                           c:c + stride[2] * (out[2] - 1) + 1:stride[2]]
                        for a in range(k[0]) for b in range(k[1]) for c in range(k[2])], dim=2)
    cols = cols.reshape(n, -1, out.numel())  # (N, C_in * K, V')
    gw = torch.matmul(grad.reshape(n, c_out, -1), cols.transpose(1, 2)).sum(0)  # (C_out, C_in * K)
    return gw.view(c_out, x.shape[1], *k)


class _OneDnnConv3d(torch.autograd.Function):
    """Forward on oneDNN; backward from ``input_grad`` and ``weight_grad``."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, bias is not None)
        return _onednn_conv(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        stride, padding, has_bias = ctx.conf
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = input_grad(grad, weight, tuple(x.shape), stride, padding)
        if ctx.needs_input_grad[1]:
            gw = weight_grad(grad, x, tuple(weight.shape[2:]), stride, padding)
        if has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum(dim=(0, 2, 3, 4))
        return gx, gw, gb, None, None


class Conv3d(nn.Conv3d):
    """``torch.nn.Conv3d`` whose float32 CPU work stays on oneDNN where PyTorch would use its
    single-threaded reference kernel (module docstring). Same values (to float32 rounding),
    parameters and state-dict keys.

    Args:
        *args, **kwargs: those of ``torch.nn.Conv3d``.
        grad_channels_last: with gradients on a CPU, hand PyTorch's own path a channels-last
            input (oneDNN's convolution backward is several times faster on that layout at
            these small widths; the forward alone, and the oneDNN route here, are faster
            channels-first).

    Shapes: (N, C_in, X, Y, Z) -> (N, C_out, X', Y', Z').
    """

    def __init__(self, *args, grad_channels_last: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.grad_channels_last = grad_channels_last

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (self.padding_mode == "zeros" and not isinstance(self.padding, str)
                and all(p <= k - 1 for p, k in zip(self.padding, self.kernel_size))
                and routes_to_onednn(input, weight, self.stride, self.padding, self.dilation, self.groups)):
            stride, padding = _triple(self.stride), _triple(self.padding)
            if torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad
                                            or (bias is not None and bias.requires_grad)):
                return _OneDnnConv3d.apply(input.contiguous(), weight, bias, stride, padding)
            return _onednn_conv(input.contiguous(), weight, bias, stride, padding)
        if self.grad_channels_last and torch.is_grad_enabled() and input.device.type == "cpu":
            input = input.contiguous(memory_format=torch.channels_last_3d)
        return super()._conv_forward(input, weight, bias)
