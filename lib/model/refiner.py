"""Pass 2: a confidence-gated refiner that edits only voxels pass 1 is unsure about."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import DecomposedConv
from .conv import Conv3d


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

    The image part (a decomposed convolution over the stride-1 features, plus, with
    ``context_channels``, a projection of the decoder's stride-2 features) runs once per
    image (``image_features``); per prompt only a FiLM modulation by the prompt, the
    pass-1 logit, an optional per-voxel hidden layer and a per-voxel linear read-out run,
    so extra prompts stay cheap.

    Args:
        c1: channels of the stride-1 image features.
        embed_dim: prompt-embedding width D.
        tau: half-width of the band.
        width: refiner channels.
        context_channels: channels of the decoder's stride-2 features to add to the image
            part (0: none, the refiner sees only the stride-1 stem features: local
            intensity, no anatomy beyond what pass 1's logit carries).
        hidden: add a per-voxel hidden layer (width -> width) after the FiLM modulation.
    """

    def __init__(self, c1: int, embed_dim: int, tau: float, width: int = 8, context_channels: int = 0,
                 hidden: bool = False) -> None:
        super().__init__()
        self.tau = tau
        self.dense_above = 0.3  # band share of voxels above which the dense path is faster
        self.image = DecomposedConv(c1, width)
        self.context = Conv3d(context_channels, width, 1) if context_channels else None
        self.film = nn.Linear(embed_dim, 3 * width)
        self.hidden = nn.Linear(width, width) if hidden else None
        # per-voxel read-out (an einsum: a 1-output Conv3d has a very slow backward on CPU)
        self.out_weight = nn.Parameter(torch.zeros(width))
        self.out_bias = nn.Parameter(torch.zeros(()))

    def image_features(self, f1: torch.Tensor, d2: torch.Tensor | None = None) -> torch.Tensor:
        """Prompt-independent, computed once per image.

        Args:
            f1: (B, c1, X, Y, Z) stride-1 features.
            d2: (B, context_channels, X/2, Y/2, Z/2) decoder features; needed (only) with
                ``context_channels``. Their projection is upsampled by repetition (nearest):
                the stride-1 convolution and pass 1's trilinear logit carry the fine detail,
                and the repetition's backward is a cheap sum where a trilinear one is not.

        Returns:
            (B, width, X, Y, Z).
        """
        g = self.image(f1)
        if self.context is None:
            return g
        if d2 is None:
            raise ValueError("this refiner adds the decoder's stride-2 features: pass d2")
        return g + F.interpolate(self.context(d2), size=g.shape[2:], mode="nearest")

    def _readout(self, h: torch.Tensor) -> torch.Tensor:
        """(..., width) modulated features -> (...,) correction."""
        h = F.leaky_relu(h, 0.01)
        if self.hidden is not None:
            h = F.leaky_relu(self.hidden(h), 0.01)
        return h @ self.out_weight.to(h.dtype) + self.out_bias

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
        delta = self._readout(h)
        correction = torch.zeros_like(flat1).index_put((rows, vox), delta.to(flat1.dtype))
        return logit1 + correction.view_as(logit1)

    def dense_delta(self, g: torch.Tensor, logit1: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """The correction at every voxel, before gating: (B*K, X, Y, Z). Reference for tests."""
        k = logit1.shape[0] // g.shape[0]
        gamma, beta, w = (v[..., None, None, None] for v in self.film(prompts).chunk(3, dim=1))
        h = g.repeat_interleave(k, dim=0) * (1 + gamma) + beta + w * logit1.detach().unsqueeze(1) / 4.0
        return self._readout(h.movedim(1, -1))


class FineLogit(nn.Module):
    """Pass 1's fine term (``ModelConfig.fine_logit``): a per-prompt linear read-out of the
    refiner's stride-1 image features ``g``, added to the upsampled stride-2 similarity
    logits at every voxel (not only in the band), so pass 1's boundaries are not limited to
    the stride-2 grid. The read-out weights are a linear map of the prompt's unit
    embedding, starting at zero (a fresh network's pass 1 is the similarity map alone).
    Equal to a 1x1x1 convolution of ``g`` to D channels dotted with the unit prompt, without
    materialising the D-channel map.

    Shapes: g (B, width, X, Y, Z), prompts (B*K, D), K consecutive rows per image ->
    (B*K, X, Y, Z), float32.
    """

    def __init__(self, width: int, embed_dim: int) -> None:
        super().__init__()
        self.weights = nn.Linear(embed_dim, width + 1)  # width read-out weights and a bias
        nn.init.zeros_(self.weights.weight)
        nn.init.zeros_(self.weights.bias)

    def forward(self, g: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        b, width = g.shape[:2]
        if prompts.ndim != 2 or prompts.shape[0] % b:
            raise ValueError(f"prompts {tuple(prompts.shape)} do not fit features {tuple(g.shape)}")
        with torch.autocast(g.device.type, enabled=False):
            u = self.weights(F.normalize(prompts.float(), dim=1)).view(b, -1, width + 1)
            out = torch.einsum("bcxyz,bkc->bkxyz", g.float(), u[..., :width]) + u[..., width, None, None, None]
        return out.reshape(-1, *g.shape[2:])
