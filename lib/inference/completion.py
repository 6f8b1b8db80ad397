"""Intensity completion of an enclosed label's mask (a lesion, a cyst) inside its host organ.

The network finds a faint lesion but covers only part of it: its edge lies where the lesion
is barely darker than the organ around it. The completion grows the mask, near its edge, into
host voxels that are clearly darker than the host: on the image smoothed by a Gaussian of
``SIGMA_MM``, a host voxel is a candidate when its value is below ``m - k * s`` (``m`` the
median and ``s`` the MAD-based standard deviation of the host outside the mask), below the
midpoint of ``m`` and the median inside the mask (the half-contrast level, where a blurred
edge lies: without it a lesion far darker than the host would swell by the blur's width),
and it lies within ``radius_mm`` of the mask; the mask gains the candidates connected
(26-connectivity) to it through candidates. It never starts a mask where there is none.

Whether a label gets a completion, and with which ``k`` and radius, is chosen per label by
``calibrate`` on a labelled validation pool (``lib.inference.calibration``): growing leaks
wherever the host has dark parts of its own (a kidney's sinus beside a cyst), so a label
keeps a setting only when it raised the pool's Dice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
from scipy import ndimage

from ..data.boxes import bounding_box

SIGMA_MM = 1.5  # smoothing of the image before comparing a voxel with the host
MAD_TO_SD = 1.4826  # the MAD of a normal distribution times this is its standard deviation
MIN_HOST_VOXELS = 50  # fewer host voxels outside the mask give no reliable host statistics
K_GRID = (1.5, 2.0, 2.5, 3.0)
RADIUS_GRID_MM = (2.0, 4.0, 6.0, 8.0)

_CUBE = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Growth:
    """One label's completion: candidates are darker than the host's median by ``k`` of its
    standard deviations, within ``radius_mm`` of the mask."""

    k: float
    radius_mm: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.k) and self.k > 0):
            raise ValueError(f"growth k must be a positive number, got {self.k!r}")
        if not (np.isfinite(self.radius_mm) and self.radius_mm > 0):
            raise ValueError(f"growth radius must be a positive number of mm, got {self.radius_mm!r}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping) -> "Growth":
        return cls(k=float(d["k"]), radius_mm=float(d["radius_mm"]))


def growth_from_json(data: Mapping | None) -> dict[str, Growth]:
    return {k: Growth.from_json(v) for k, v in (data or {}).items()}


def growth_to_json(data: Mapping[str, Growth]) -> dict:
    return {k: v.to_json() for k, v in data.items()}


@dataclass(frozen=True, eq=False)
class HostView:
    """What the completion needs of one mask and its host, computed once for any number of
    settings (``host_view``; ``grow`` applies one).

    Attributes:
        mask: (X, Y, Z) bool, the mask on the input grid.
        box: the host's box (mask included), widened by the smoothing's reach.
        inside: the host with its holes filled and the mask added, on ``box``.
        smooth: the smoothed image on ``box``.
        median, sd: the host's median and MAD-based s.d. outside the mask (smoothed image).
        inner: the median of the smoothed image inside the mask.
        spacing: (3,) voxel size in mm.
    """

    mask: np.ndarray
    box: tuple[slice, ...]
    inside: np.ndarray
    smooth: np.ndarray
    median: float
    sd: float
    inner: float
    spacing: np.ndarray


def host_view(mask: np.ndarray, image: np.ndarray, host: np.ndarray, spacing: tuple[float, float, float],
              sigma_mm: float = SIGMA_MM) -> HostView | None:
    """The host statistics of ``grow_into_host`` (its arguments but the setting); None when no
    setting can change the mask: it is empty, the host is too small to describe or uniform, or
    the mask is not darker than the host. Raises ValueError for mismatched grids or a bad
    spacing."""
    if mask.shape != image.shape or mask.shape != host.shape:
        raise ValueError(f"mask {mask.shape}, image {image.shape} and host {host.shape} must share a grid")
    sp = np.asarray(spacing, dtype=float)
    if sp.shape != (3,) or not np.all(sp > 0):
        raise ValueError(f"spacing must be three positive sizes in mm, got {spacing!r}")
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        return None
    hbox = bounding_box(host | mask, np.ceil(3 * sigma_mm / sp).astype(int))
    inside = ndimage.binary_fill_holes(host[hbox] | mask[hbox])
    smooth = ndimage.gaussian_filter(image[hbox].astype(np.float32), sigma_mm / sp, truncate=3.0)
    ref = smooth[inside & ~mask[hbox]]
    if ref.size < MIN_HOST_VOXELS:
        return None
    median = float(np.median(ref))
    sd = MAD_TO_SD * float(np.median(np.abs(ref - median)))
    inner = float(np.median(smooth[mask[hbox]]))
    if sd <= 0 or inner >= median:
        return None
    return HostView(mask=mask, box=hbox, inside=inside, smooth=smooth, median=median, sd=sd, inner=inner, spacing=sp)


def grow(view: HostView, growth: Growth) -> np.ndarray:
    """``view.mask`` completed at one setting: (X, Y, Z) bool, a new array."""
    out = view.mask.copy()
    level = min(view.median - growth.k * view.sd, 0.5 * (view.median + view.inner))
    # candidates and their distance to the mask, within the mask's box widened by the radius
    sp, mask = view.spacing, out[view.box]
    gbox = bounding_box(mask, np.ceil(growth.radius_mm / sp).astype(int) + 1)
    seed = mask[gbox]
    near = ndimage.distance_transform_edt(~seed, sampling=sp) <= growth.radius_mm
    cand = view.inside[gbox] & near & (view.smooth[gbox] < level) & ~seed
    if not cand.any():
        return out
    pieces, _ = ndimage.label(cand | seed, structure=_CUBE)
    touched = np.unique(pieces[seed])
    mask[gbox] |= np.isin(pieces, touched[touched > 0]) & cand  # ``mask`` is a view: this writes into ``out``
    return out


def grow_into_host(mask: np.ndarray, image: np.ndarray, host: np.ndarray, spacing: tuple[float, float, float],
                   growth: Growth, sigma_mm: float = SIGMA_MM) -> np.ndarray:
    """The completed mask.

    Args:
        mask: (X, Y, Z) bool, the label's mask on the input grid.
        image: (X, Y, Z) float intensities on the same grid (any linear scale).
        host: (X, Y, Z) bool, the union of the label's hosts' masks; its holes are filled and
            the mask is added, since a host's mask leaves out the lesions inside it.
        spacing: voxel size in mm along each axis.
        growth: the label's setting.
        sigma_mm: the smoothing's standard deviation.

    Returns:
        (X, Y, Z) bool, a new array (``mask`` itself is not changed): ``mask`` plus the
        connected candidates; ``mask`` unchanged when it is empty, when the host is too small
        to describe, when the host is uniform or when the mask is not darker than the host.
    """
    view = host_view(mask, image, host, spacing, sigma_mm)
    return mask.astype(bool, copy=True) if view is None else grow(view, growth)


def choose_growth(base: list[float], scores: Mapping[Growth, list[float]], min_cases: int,
                  min_gain: float) -> Growth | None:
    """The setting to keep for one label (pure): the one of ``scores`` (setting -> the Dice
    of each of the pool's scans holding the label, in the order of ``base``, the Dice without
    completion) with the best mean Dice, if it beats ``base`` by at least ``min_gain`` over
    at least ``min_cases`` scans; else None. Ties go to the smaller radius, then the larger
    ``k`` (the more cautious setting). Raises ValueError when a list's length differs from
    ``base``'s."""
    for g, values in scores.items():
        if len(values) != len(base):
            raise ValueError(f"{len(values)} scores for {g} against {len(base)} without completion")
    if len(base) < min_cases or not scores:
        return None
    best = max(sorted(scores, key=lambda g: (g.radius_mm, -g.k)), key=lambda g: float(np.mean(scores[g])))
    return best if float(np.mean(scores[best])) >= float(np.mean(base)) + min_gain else None
