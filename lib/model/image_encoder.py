"""Lightweight multi-scale 3D CNN image encoder."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import DecomposedConv, ResBlock

IN_CHANNELS = 4  # intensity + 3 physical-coordinate channels (RAS, in 100 mm)


class ImageEncoder(nn.Module):
    """Encodes a volume on the working grid into features at strides 1, 2, 4 and 8.

    Args:
        channels: widths (c1, c2, c4, c8) of the four levels.
        in_channels: input channels (intensity + coordinates).

    Shapes: (B, in_channels, X, Y, Z) with X, Y, Z divisible by 8 ->
        [(B, c1, X, Y, Z), (B, c2, X/2, ...), (B, c4, X/4, ...), (B, c8, X/8, ...)].
    """

    def __init__(self, channels: tuple[int, int, int, int], in_channels: int = IN_CHANNELS) -> None:
        super().__init__()
        c1, c2, c4, c8 = channels
        self.stem = DecomposedConv(in_channels, c1)
        self.down2 = nn.Sequential(DecomposedConv(c1, c2, stride=2), ResBlock(c2))
        self.down4 = nn.Sequential(DecomposedConv(c2, c4, stride=2), ResBlock(c4))
        self.down8 = nn.Sequential(DecomposedConv(c4, c8, stride=2), ResBlock(c8), ResBlock(c8))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.stem(x)
        f2 = self.down2(f1)
        f4 = self.down4(f2)
        f8 = self.down8(f4)
        return [f1, f2, f4, f8]
