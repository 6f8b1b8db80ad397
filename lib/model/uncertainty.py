"""Uncertainty from the two passes: pure functions on probability maps."""

from __future__ import annotations

import math

import torch

_LN2 = math.log(2.0)


def binary_entropy(p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Entropy of Bernoulli(p) in bits (0 at p in {0, 1}, 1 at p = 0.5). Same shape as p."""
    p = p.clamp(eps, 1 - eps)
    return -(p * p.log() + (1 - p) * (1 - p).log()) / _LN2


def uncertainty_map(p1: torch.Tensor, p2: torch.Tensor, alpha: float) -> torch.Tensor:
    """Voxel uncertainty ``(1 - alpha) * |p2 - p1| + alpha * H(p2)``, in [0, 1].

    Args:
        p1, p2: pass-1 and pass-2 probabilities, same shape.
        alpha: weight of the entropy term.
    """
    return (1 - alpha) * (p2 - p1).abs() + alpha * binary_entropy(p2)


def candidate_region(p1: torch.Tensor, p2: torch.Tensor, tau: float) -> torch.Tensor:
    """Voxels where either pass is not confidently background: p > 0.5 - tau. Bool, same shape."""
    return (p1 > 0.5 - tau) | (p2 > 0.5 - tau)


def scalar_uncertainty(p1: torch.Tensor, p2: torch.Tensor, alpha: float, tau: float) -> torch.Tensor:
    """Mean voxel uncertainty over the candidate region, per prompt.

    Args:
        p1, p2: (N, X, Y, Z) probabilities.

    Returns:
        (N,) in [0, 1]; 0 for a prompt whose region is empty (confidently absent).
    """
    u = uncertainty_map(p1, p2, alpha)
    region = candidate_region(p1, p2, tau).to(u.dtype)
    dims = tuple(range(1, u.ndim))
    return (u * region).sum(dims) / region.sum(dims).clamp(min=1.0)
