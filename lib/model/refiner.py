"""Pass 2: a confidence-gated refiner that edits only voxels pass 1 is unsure about."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import DecomposedConv


def confidence_band(p1: torch.Tensor, tau: float) -> torch.Tensor:
    """1 where pass 1 is unsure (|p1 - 0.5| < tau), else 0. Same shape and dtype as p1."""
    return ((p1 - 0.5).abs() < tau).to(p1.dtype)


def gated_update(logit1: torch.Tensor, delta: torch.Tensor, tau: float) -> torch.Tensor:
    """Pass-2 logits: ``logit1 + band(sigmoid(logit1)) * delta``.

    Voxels outside the band keep their pass-1 logit exactly. Shapes: (N, X, Y, Z) each.
    """
    band = confidence_band(torch.sigmoid(logit1.detach()), tau)
    return logit1 + band * delta


class GatedRefiner(nn.Module):
    """Predicts a logit correction at full working resolution and applies it inside the
    confidence band of pass 1.

    The image part (a decomposed convolution over the stride-1 features) runs once per
    image (``image_features``); per prompt only a FiLM modulation by the prompt, the
    pass-1 logit and a per-voxel linear read-out run, so extra prompts stay cheap.

    Args:
        c1: channels of the stride-1 image features.
        embed_dim: prompt-embedding width D.
        tau: half-width of the band.
        width: refiner channels.
    """

    def __init__(self, c1: int, embed_dim: int, tau: float, width: int = 8) -> None:
        super().__init__()
        self.tau = tau
        self.dense_above = 0.3  # band share of voxels above which the dense path is faster
        self.image = DecomposedConv(c1, width)
        self.film = nn.Linear(embed_dim, 3 * width)
        # per-voxel read-out (an einsum: a 1-output Conv3d has a very slow backward on CPU)
        self.out_weight = nn.Parameter(torch.zeros(width))
        self.out_bias = nn.Parameter(torch.zeros(()))

    def image_features(self, f1: torch.Tensor) -> torch.Tensor:
        """(B, c1, X, Y, Z) -> (B, width, X, Y, Z); prompt-independent, computed once."""
        return self.image(f1)

    def forward(self, g: torch.Tensor, logit1: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """Refine K prompts per image.

        The correction is computed only at the voxels inside the band (gathered, then
        scattered back): outside it the gate multiplies the correction by zero, so computing
        it there would cost time and change nothing, neither the output nor any gradient.
        When the band holds more than ``dense_above`` of the voxels (a fresh network is
        unsure everywhere) the dense computation is faster and is used instead.
        Results equal ``gated_update(logit1, dense_delta, tau)`` (``dense_delta`` computes
        every voxel; kept for tests).

        Args:
            g: (B, width, X, Y, Z) from ``image_features`` (or a crop of it).
            logit1: (B*K, X, Y, Z) pass-1 logits on the same grid.
            prompts: (B*K, D) prompt embeddings.

        Returns:
            (B*K, X, Y, Z) refined logits; equal to ``logit1`` outside the band.
        """
        n, k = logit1.shape[0], logit1.shape[0] // g.shape[0]
        flat1 = logit1.reshape(n, -1)
        band = confidence_band(torch.sigmoid(flat1.detach()), self.tau)  # (N, V) 0/1
        m = int(band.sum())  # band voxels over all prompts
        if m == 0:
            return logit1
        if m > self.dense_above * band.numel():  # a wide band: dense is faster
            return logit1 + band.view_as(logit1) * self.dense_delta(g, logit1, prompts)  # = gated_update
        rows, vox = band.nonzero(as_tuple=True)  # (M,) each
        gamma, beta, w = self.film(prompts).chunk(3, dim=1)  # (N, width) each
        features = g.reshape(g.shape[0], g.shape[1], -1).transpose(1, 2)[rows // k, vox]  # (M, width)
        h = features * (1 + gamma[rows]) + beta[rows] + w[rows] * flat1.detach()[rows, vox, None] / 4.0
        delta = nn.functional.leaky_relu(h, 0.01) @ self.out_weight.to(h.dtype) + self.out_bias
        correction = torch.zeros_like(flat1).index_put((rows, vox), delta.to(flat1.dtype))
        return logit1 + correction.view_as(logit1)

    def dense_delta(self, g: torch.Tensor, logit1: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """The correction at every voxel, before gating: (B*K, X, Y, Z). Reference for tests."""
        k = logit1.shape[0] // g.shape[0]
        gamma, beta, w = (v[..., None, None, None] for v in self.film(prompts).chunk(3, dim=1))
        h = g.repeat_interleave(k, dim=0) * (1 + gamma) + beta + w * logit1.detach().unsqueeze(1) / 4.0
        h = nn.functional.leaky_relu(h, 0.01)
        return torch.einsum("nwxyz,w->nxyz", h, self.out_weight) + self.out_bias
