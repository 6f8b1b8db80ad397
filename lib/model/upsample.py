"""Trilinear upsampling by whole factors, separable, for float CPU tensors.

PyTorch's CPU ``upsample_trilinear3d`` backward scatters each output gradient into its eight
source voxels on one thread; in a float32 training step of this network its four calls (the
decoder's two x2 steps, the adapter's x4 map, pass 1's x2 logits) took about a tenth of the
step. Where every axis grows by a whole factor ``f`` (as on this network's padded grids),
``align_corners=False`` trilinear interpolation is separable and each output voxel along an
axis mixes one voxel with one neighbour at a weight that depends only on the output's phase
``r`` (output index ``f * i + r``): the source coordinate is ``i + d`` with
``d = (r + 0.5) / f - 0.5``, so the output is ``(1 - |d|) x[i] + |d| x[i -+ 1]``, the
neighbour clamped at the edges as PyTorch clamps. ``upsample_trilinear`` computes that from
shifted copies and elementwise products, whose backward is elementwise too, and equals
``F.interpolate`` to rounding. Other sizes, dtypes and devices go to ``F.interpolate``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FAST_DTYPES = (torch.float32, torch.float64)


def whole_factors(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The per-axis growth factors when every output size is a whole multiple (>= 1) of its
    input size, else None."""
    if len(in_shape) != len(out_shape) or any(n < 1 for n in in_shape):
        return None
    factors = tuple(m // n for n, m in zip(in_shape, out_shape))
    if any(f < 1 or f * n != m for f, n, m in zip(factors, in_shape, out_shape)):
        return None
    return factors


def upsample_axis(x: torch.Tensor, dim: int, factor: int) -> torch.Tensor:
    """Linear (``align_corners=False``) upsampling of one axis by a whole ``factor``:
    (..., n, ...) -> (..., factor * n, ...)."""
    if factor == 1:
        return x
    n = x.shape[dim]
    prev = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)  # x[i - 1], clamped
    nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)  # x[i + 1], clamped
    phases = []
    for r in range(factor):
        d = (r + 0.5) / factor - 0.5
        phases.append(x if d == 0 else (1 - abs(d)) * x + abs(d) * (prev if d < 0 else nxt))
    shape = list(x.shape)
    shape[dim] = factor * n
    return torch.stack(phases, dim + 1).reshape(shape)


def upsample_trilinear(x: torch.Tensor, size: tuple[int, int, int] | torch.Size) -> torch.Tensor:
    """``F.interpolate(x, size, mode="trilinear", align_corners=False)`` for a (B, C, X, Y, Z)
    tensor: separable (``upsample_axis``) for a float32/float64 CPU tensor whose every axis
    grows by a whole factor, ``F.interpolate`` otherwise. Returns (B, C, *size)."""
    size = tuple(int(s) for s in size)
    factors = whole_factors(tuple(x.shape[2:]), size)
    if x.dim() != 5 or factors is None or x.device.type != "cpu" or x.dtype not in FAST_DTYPES:
        return F.interpolate(x, size=size, mode="trilinear", align_corners=False)
    for axis, factor in enumerate(factors):
        x = upsample_axis(x, 2 + axis, factor)
    return x
