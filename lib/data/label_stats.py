"""Shape statistics of each label in the training labels: how often it is one connected
piece and how large it is. Stored in the checkpoint; the predictor uses them to clean its
masks (keep the largest piece of a one-piece organ; call a far too small mask absent)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Mapping

import numpy as np
from scipy import ndimage

from .vocab import Vocabulary


@dataclass(frozen=True)
class LabelStats:
    """One label's statistics over the training cases that contain it.

    Attributes:
        cases: how many training cases contain the label.
        single_component: share of those cases in which it is essentially one connected
            piece (26-connectivity; the largest piece holds at least ``ONE_PIECE_VOLUME`` of
            its voxels, so resampling crumbs do not count); about 1 for an organ, lower for
            lesions and cysts.
        volume_p05_mm3: 5th percentile of its volume (field-of-view crops included).
    """

    cases: int
    single_component: float
    volume_p05_mm3: float

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping) -> "LabelStats":
        return cls(cases=int(d["cases"]), single_component=float(d["single_component"]),
                   volume_p05_mm3=float(d["volume_p05_mm3"]))


ONE_PIECE_VOLUME = 0.95
ONE_PIECE_SHARE = 0.9  # a label one piece in at least this share of its training cases is a one-piece label


def is_one_piece(stats: LabelStats | None, min_share: float = ONE_PIECE_SHARE) -> bool:
    """Whether a label is one connected piece in at least ``min_share`` of the training
    cases that contain it (so stray pieces of its mask are errors)."""
    return stats is not None and stats.cases > 0 and stats.single_component >= min_share


def largest_piece_share(mask: np.ndarray) -> float:
    """Share of a non-empty boolean (X, Y, Z) mask's voxels in its largest 26-connected piece."""
    pieces, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return 1.0
    sizes = np.bincount(pieces.ravel())[1:]
    return float(sizes.max() / sizes.sum())


def _voxel_counts(lab: np.ndarray, entries) -> dict[str, int]:
    """Voxel count of each vocabulary entry (a composite: the union of its parts) in an
    integer (X, Y, Z) label map; entries the map lacks are left out."""
    hist = np.bincount(np.asarray(lab).ravel().clip(min=0).astype(np.int64))
    counts = {e.name: int(sum(hist[i] for i in e.indices if i < len(hist))) for e in entries}
    return {name: n for name, n in counts.items() if n}


def label_stats(label_maps: Iterable[np.ndarray], vocab: Vocabulary, voxel_mm3: float) -> dict[str, LabelStats]:
    """Statistics of every non-composite label of ``vocab`` over integer (X, Y, Z) label
    maps sharing one voxel volume ``voxel_mm3`` (the working grid). Labels that no map
    contains are left out."""
    pieces: dict[str, list[float]] = {}
    volumes: dict[str, list[float]] = {}
    entries = {e.name: e for e in vocab if not e.composite}
    for lab in label_maps:
        lab = np.asarray(lab)
        for name, n in _voxel_counts(lab, entries.values()).items():
            pieces.setdefault(name, []).append(largest_piece_share(lab == entries[name].indices[0]))
            volumes.setdefault(name, []).append(float(n) * voxel_mm3)
    return {name: LabelStats(cases=len(n), single_component=float(np.mean(np.asarray(n) >= ONE_PIECE_VOLUME)),
                             volume_p05_mm3=float(np.percentile(volumes[name], 5)))
            for name, n in pieces.items()}


def typical_voxels(label_maps: Iterable[np.ndarray], vocab: Vocabulary, cap: float) -> dict[str, float]:
    """Median voxel count of every label of ``vocab`` (composites as the union of their
    parts) over the integer (X, Y, Z) label maps that contain it, at most ``cap`` (a
    training patch sees only part of a large organ). Labels that no map contains are left
    out. Used as each label's smoothing of the absent-prompt Dice term
    (``train.absent_smooth: size``)."""
    counts: dict[str, list[int]] = {}
    for lab in label_maps:
        for name, n in _voxel_counts(lab, vocab).items():
            counts.setdefault(name, []).append(n)
    return {name: float(min(np.median(n), cap)) for name, n in counts.items()}


def stats_to_json(stats: Mapping[str, LabelStats]) -> dict:
    return {k: v.to_json() for k, v in stats.items()}


def stats_from_json(data: Mapping | None) -> dict[str, LabelStats]:
    return {k: LabelStats.from_json(v) for k, v in (data or {}).items()}
