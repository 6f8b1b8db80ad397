"""Bounding boxes of boolean volumes: most clean-up, scoring and completion work runs on the
box of a mask (labelling or filtering only the box is much faster than the whole volume)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def bounding_box(mask: np.ndarray, margin: int | Sequence[int] | np.ndarray = 0) -> tuple[slice, ...] | None:
    """Bounding box of the True voxels of a boolean array, grown by ``margin`` voxels (one
    number for every axis, or one per axis) and clipped to the array; None when no voxel is
    True. Raises ValueError for a negative margin or one of the wrong length."""
    m = np.asarray(margin, dtype=int)
    if m.ndim == 0:
        m = np.full(mask.ndim, int(m))
    if m.shape != (mask.ndim,) or np.any(m < 0):
        raise ValueError(f"margin must be one non-negative number or one per axis ({mask.ndim}), got {margin!r}")
    idx = np.argwhere(mask)
    if not idx.size:
        return None
    lo = np.maximum(idx.min(0) - m, 0)
    hi = np.minimum(idx.max(0) + m + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
