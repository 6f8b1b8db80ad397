"""Trilinear upsampling by whole factors, as three separable 1D interpolations.

``F.interpolate(mode="trilinear", align_corners=False)`` gives the same values, but on a
CPU its backward is slow: in a training step (8 prompts, a 64 x 64 x 48 patch) the four
upsamplings' forward and backward took about 22 ms of 177; the separable form, whose
backward is a few elementwise operations, about half as long (docs/benchmarks.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _upsample_axis(x: torch.Tensor, dim: int, factor: int) -> torch.Tensor:
    """Linear upsampling of one axis by an integer factor, ``align_corners=False``.

    Output voxel ``o = factor * i + r`` samples the input at ``i + d_r`` with
    ``d_r = (r + 0.5) / factor - 0.5`` (|d_r| < 0.5): a blend of voxel ``i`` and its
    neighbour on the side of ``d_r``, the edge voxel repeated at the borders (PyTorch clamps
    the sampling point there the same way).
    Shapes: (..., n, ...) along ``dim`` -> (..., factor * n, ...).
    """
    n = x.shape[dim]
    prev = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    phases = []
    for r in range(factor):
        d = (r + 0.5) / factor - 0.5
        phases.append(torch.lerp(x, prev if d < 0 else nxt, abs(d)))
    shape = list(x.shape)
    shape[dim] = n * factor
    return torch.stack(phases, dim + 1).reshape(shape)


def upsample_trilinear(x: torch.Tensor, size: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Trilinear upsampling of (N, C, X, Y, Z) to ``size`` (3 ints), equal to
    ``F.interpolate(x, size, mode="trilinear", align_corners=False)`` up to rounding.

    When every axis grows by a whole factor (the network's stride-2 and stride-8 maps on
    inputs divisible by 8) the interpolation is done separably (see the module docstring);
    any other size falls back to ``F.interpolate``. Keeps the dtype of ``x``.
    """
    if x.ndim != 5 or len(size) != 3:
        raise ValueError(f"expected (N, C, X, Y, Z) and 3 sizes, got {tuple(x.shape)} and {tuple(size)}")
    factors = [s // n if n and s % n == 0 else 0 for s, n in zip(size, x.shape[2:])]
    if not all(factors):
        return F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=False)
    for dim, factor in zip(range(2, 5), factors):
        if factor > 1:
            x = _upsample_axis(x, dim, factor)
    return x
