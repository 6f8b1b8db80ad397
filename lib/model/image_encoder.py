"""Lightweight multi-scale 3D CNN image encoder."""

from __future__ import annotations

import torch
from torch import nn

from ..data.preprocess import CT_WINDOW
from .blocks import DecomposedConv, ResBlock

IN_CHANNELS = 4  # intensity + 3 physical-coordinate channels (RAS, in 100 mm)


def normalised_window(lo_hu: float, hi_hu: float) -> tuple[float, float]:
    """(centre, half-width) of the HU window [lo_hu, hi_hu] in the units of CT-normalised
    intensities (``normalize_intensity``: CT_WINDOW onto [-1, 1]). The window is checked
    once, where the config is parsed (``ModelConfig.second_window_hu``: inside CT_WINDOW,
    lo < hi)."""
    lo, hi = CT_WINDOW
    scale = 2.0 / (hi - lo)
    return ((lo_hu + hi_hu) / 2.0 - lo) * scale - 1.0, (hi_hu - lo_hu) / 2.0 * scale


class ImageEncoder(nn.Module):
    """Encodes a volume on the working grid into features at strides 1, 2, 4 and 8.

    Args:
        channels: widths (c1, c2, c4, c8) of the four levels.
        in_channels: input channels (intensity + coordinates).
        second_window_hu: (lo, hi) HU, or None. When set, the encoder derives from the
            input's first channel (CT-normalised intensity) a second one, re-windowed to
            [lo, hi] HU and saturating at +-1 (``window_channel``), and its stem takes
            ``in_channels + 1`` channels; the caller still passes ``in_channels``.

    Shapes: (B, in_channels, X, Y, Z) with X, Y, Z divisible by 8 ->
        [(B, c1, X, Y, Z), (B, c2, X/2, ...), (B, c4, X/4, ...), (B, c8, X/8, ...)].
    """

    def __init__(self, channels: tuple[int, int, int, int], in_channels: int = IN_CHANNELS,
                 second_window_hu: tuple[float, float] | None = None) -> None:
        super().__init__()
        c1, c2, c4, c8 = channels
        self.window = None if second_window_hu is None else normalised_window(*second_window_hu)
        self.stem = DecomposedConv(in_channels + (self.window is not None), c1)
        self.down2 = nn.Sequential(DecomposedConv(c1, c2, stride=2), ResBlock(c2))
        self.down4 = nn.Sequential(DecomposedConv(c2, c4, stride=2), ResBlock(c4))
        self.down8 = nn.Sequential(DecomposedConv(c4, c8, stride=2), ResBlock(c8), ResBlock(c8))

    def window_channel(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, X, Y, Z) input -> (B, 1, X, Y, Z): channel 0 re-windowed, in [-1, 1]."""
        centre, half = self.window
        return ((x[:, :1] - centre) / half).clamp(-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.window is not None:
            x = torch.cat([x, self.window_channel(x)], dim=1)
        f1 = self.stem(x)
        f2 = self.down2(f1)
        f4 = self.down4(f2)
        f8 = self.down8(f4)
        return [f1, f2, f4, f8]
