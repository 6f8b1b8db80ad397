"""Building blocks: decomposed 3D convolutions and text-conditioned (FiLM) adapters."""

from __future__ import annotations

import torch
from torch import nn

from .conv import Conv3d


def _norm(channels: int) -> nn.Module:
    return nn.GroupNorm(num_groups=min(4, channels), num_channels=channels)


class DecomposedConv(nn.Module):
    """A 3D convolution factored into in-plane (3x3x1) and through-plane (1x1x3) parts.

    About 12/27 of a full 3x3x3 convolution's cost, with the same receptive field.

    Args:
        in_ch, out_ch: channels.
        stride: stride of the in-plane part in every axis (1 or 2).

    Shapes: (B, in_ch, X, Y, Z) -> (B, out_ch, X/stride, Y/stride, Z/stride).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        self.inplane = Conv3d(in_ch, out_ch, (3, 3, 1), stride=stride, padding=(1, 1, 0), bias=False,
                              grad_channels_last=True)
        if stride == 2:  # keep the through-plane axis in step with the strided in-plane axes
            self.inplane = Conv3d(in_ch, out_ch, (3, 3, 3), stride=2, padding=1, bias=False, grad_channels_last=True)
        self.through = Conv3d(out_ch, out_ch, (1, 1, 3), padding=(0, 0, 1), bias=False, grad_channels_last=True)
        self.norm = _norm(out_ch)
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the convolutions choose their layout (``Conv3d``); GroupNorm's backward is much
        # slower on channels-last tensors, so it gets a channels-first one
        y = self.through(self.inplane(x))
        return self.act(self.norm(y.contiguous()))


class ResBlock(nn.Module):
    """Two decomposed convolutions with a residual connection. (B, C, ...) -> (B, C, ...)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a = DecomposedConv(channels, channels)
        self.b = DecomposedConv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


class FiLMAdapter(nn.Module):
    """Text-conditioned adapter: per-channel scale and shift from a prompt embedding,
    then a decomposed convolution.

    Args:
        channels: feature channels C.
        text_dim: prompt-embedding width D.

    Shapes: features (N, C, X, Y, Z) and prompts (N, D) -> (N, C, X, Y, Z).
    The adapter starts as the identity on the modulation (gamma = 1, beta = 0).
    """

    def __init__(self, channels: int, text_dim: int) -> None:
        super().__init__()
        self.film = nn.Linear(text_dim, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.conv = DecomposedConv(channels, channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(t).chunk(2, dim=1)
        shape = (*gamma.shape, 1, 1, 1)
        x = x * (1 + gamma.view(shape)) + beta.view(shape)
        return x + self.conv(x)
