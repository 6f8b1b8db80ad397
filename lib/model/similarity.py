"""Similarity-matrix mask prediction: one logit map per (voxel, prompt) pair."""

from __future__ import annotations

import math

import torch
from torch import nn


def similarity_logits(voxels: torch.Tensor, prompts: torch.Tensor, temperature: float, bias: torch.Tensor | float = 0.0,
                      scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Scaled cosine similarity between voxel and prompt embeddings (the similarity matrix
    of voxels x prompts, one prompt per row here).

    Args:
        voxels: (N, D, X, Y, Z) voxel embeddings (one row per prompt).
        prompts: (N, D) prompt embeddings.
        temperature: divides the similarity; 1 by default.
        bias: scalar added to every logit.
        scale: multiplies the cosine (learned, like CLIP's logit scale).

    Returns:
        (N, X, Y, Z) logits = scale * cos(v, t) / temperature + bias.
    """
    if voxels.shape[:2] != prompts.shape:
        raise ValueError(f"voxels {tuple(voxels.shape)} and prompts {tuple(prompts.shape)} disagree on (N, D)")
    return cosine_map(voxels, prompts) * (scale / temperature) + bias


def cosine_map(voxels: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between each voxel embedding and its prompt: (N, D, ...) x (N, D) -> (N, ...).

    Always computed in float32, also under bf16 autocast: the logits are the cosine times a
    scale of ~10, and bf16's 8-bit mantissa would quantise them in steps of ~0.05."""
    with torch.autocast(voxels.device.type, enabled=False):
        v = nn.functional.normalize(voxels.float(), dim=1)
        t = nn.functional.normalize(prompts.float(), dim=1)
        return torch.einsum("ndxyz,nd->nxyz", v, t)


def shared_cosine_map(voxels: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """``cosine_map`` for K prompts per image that share the image's voxel embeddings:
    (B, D, X, Y, Z) x (B*K, D) -> (B*K, X, Y, Z), K consecutive rows per image. Each voxel
    is normalised once, not once per prompt; float32 as ``cosine_map``."""
    b, d = voxels.shape[:2]
    if prompts.ndim != 2 or prompts.shape[1] != d or prompts.shape[0] % b:
        raise ValueError(f"prompts {tuple(prompts.shape)} do not fit voxels {tuple(voxels.shape)}")
    with torch.autocast(voxels.device.type, enabled=False):
        v = nn.functional.normalize(voxels.float(), dim=1)
        t = nn.functional.normalize(prompts.float(), dim=1).view(b, -1, d)
        cos = torch.einsum("bdxyz,bkd->bkxyz", v, t)
    return cos.reshape(-1, *voxels.shape[2:])


class SimilarityHead(nn.Module):
    """Projects frozen text features to prompt embeddings and scores voxels against them.

    Args:
        text_dim: width H of the frozen text encoder's output.
        embed_dim: shared embedding width D.
        temperature: similarity temperature.
    """

    def __init__(self, text_dim: int, embed_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        # Sentence embeddings of anatomy prompts are highly correlated (mean cosine ~0.35);
        # centring them on the training vocabulary's mean makes them separable from step 1.
        self.register_buffer("text_center", torch.zeros(text_dim))
        self.project = nn.Sequential(
            nn.LayerNorm(text_dim),
            nn.Linear(text_dim, 2 * embed_dim), nn.GELU(), nn.Linear(2 * embed_dim, 2 * embed_dim), nn.GELU(),
            nn.Linear(2 * embed_dim, embed_dim),
        )
        self.bias = nn.Parameter(torch.tensor(-4.0))
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.temperature = temperature

    def embed_prompts(self, text_features: torch.Tensor) -> torch.Tensor:
        """(N, H) frozen text features -> (N, D) prompt embeddings."""
        return self.project(text_features - self.text_center)

    @torch.no_grad()
    def set_text_center(self, text_features: torch.Tensor) -> None:
        """Centre prompts on the mean of (M, H) training-vocabulary features."""
        self.text_center.copy_(text_features.mean(0))

    def forward(self, voxels: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """(N, D, X, Y, Z) x (N, D) -> (N, X, Y, Z) logits."""
        return similarity_logits(voxels, prompts, self.temperature, self.bias, self.log_scale.exp())

    def logits_from_cosine(self, cosine: torch.Tensor) -> torch.Tensor:
        """The same logits from an already computed (N, X, Y, Z) ``cosine_map`` (so a caller
        that also needs the cosine computes it once)."""
        return cosine * (self.log_scale.exp() / self.temperature) + self.bias
