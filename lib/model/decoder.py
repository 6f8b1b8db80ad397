"""Decomposed decoder: a prompt-independent U-Net path computed once per image, and a
small text-conditioned adapter path run per prompt at the coarsest scale."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import DecomposedConv, FiLMAdapter
from .conv import Conv3d
from .upsample import upsample_trilinear


class _Up(nn.Module):
    """Upsample x2 (trilinear), concatenate the skip, decomposed conv."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = DecomposedConv(in_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = upsample_trilinear(x, skip.shape[2:])
        return self.conv(torch.cat([x, skip], dim=1))


class SharedDecoder(nn.Module):
    """Prompt-independent decoder: features at strides 2/4/8 -> voxel embeddings at stride 2.

    Shapes: [f1, f2, f4, f8] -> (B, D, X/2, Y/2, Z/2) embeddings, (B, c8, X/8, ...) context
    and (B, c2, X/2, ...) the decoded features the embeddings are read from.
    """

    def __init__(self, channels: tuple[int, int, int, int], embed_dim: int) -> None:
        super().__init__()
        _, c2, c4, c8 = channels
        self.up4 = _Up(c8, c4, c4)
        self.up2 = _Up(c4, c2, c2)
        self.head = Conv3d(c2, embed_dim, 1)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, f2, f4, f8 = feats
        x = self.up2(self.up4(f8, f4), f2)
        return self.head(x), f8, x


class PromptAdapter(nn.Module):
    """Per-prompt adapter at stride 8: FiLM-modulates the coarse context with the prompt
    and maps it to ``out_channels`` maps that the caller upsamples onto the stride-2 grid
    (1: a logit map; D: an embedding offset). Starts at zero.

    Shapes: context (B, c8, x8, y8, z8), prompts (B*K, D) with K prompts per image ->
        (B*K, out_channels, x8, y8, z8).
    """

    def __init__(self, c8: int, embed_dim: int, out_channels: int, depth: int = 2) -> None:
        super().__init__()
        self.adapters = nn.ModuleList([FiLMAdapter(c8, embed_dim) for _ in range(depth)])
        self.out = Conv3d(c8, out_channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, context: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        k = prompts.shape[0] // context.shape[0]
        x = context.repeat_interleave(k, dim=0)
        for adapter in self.adapters:
            x = adapter(x, prompts)
        return self.out(x)
