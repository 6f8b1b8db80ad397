"""Lesion-wise scoring: which of a scan's lesions a served mask finds, by size.

Dice over a scan's whole lesion label hides how it is lost: a scan with three lesions, two of
them found in full, scores like one with a single lesion half covered. ``evaluate`` therefore
also scores each true lesion on its own, a connected piece (26-connectivity) of the label's
truth: its size (the diameter of a sphere of its volume), the share of it the mask covers, and
whether that share reaches ``DETECT_SHARE`` (found). A piece of the mask that touches no true
lesion is a false piece when it is at least ``MIN_PIECE_MM`` across (the diameter of a sphere of
its volume); smaller ones, often one voxel where the probability grazes the threshold, are
counted apart as specks. ``detection_summary`` pools these rows by label and size band.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

DETECT_SHARE = 0.1  # a lesion counts as found when the mask covers at least this share of it
SIZE_BANDS_MM = (10.0, 20.0)  # band edges of the equivalent diameter: < 10, 10-20, >= 20 mm
MIN_PIECE_MM = 3.0  # a stray piece of the mask smaller than this across is a speck, not a false lesion

_CUBE = np.ones((3, 3, 3), dtype=bool)


def equivalent_diameter_mm(voxels, voxel_volume_mm3: float):
    """The diameter of a sphere of ``voxels`` voxels' volume, in mm: a float for one count,
    an array of the same shape for an array of counts."""
    d = np.cbrt(6.0 * np.asarray(voxels, dtype=float) * voxel_volume_mm3 / math.pi)
    return float(d) if d.ndim == 0 else d


def size_band(diameter_mm: float, edges: tuple[float, ...] = SIZE_BANDS_MM) -> str:
    """The band name of a diameter: "<10 mm", "10-20 mm", ">=20 mm" for the default edges."""
    if not edges or list(edges) != sorted(edges):
        raise ValueError(f"size band edges must be increasing, got {edges!r}")
    fmt = lambda v: f"{v:g}"  # noqa: E731
    if diameter_mm < edges[0]:
        return f"<{fmt(edges[0])} mm"
    for lo, hi in zip(edges, edges[1:]):
        if diameter_mm < hi:
            return f"{fmt(lo)}-{fmt(hi)} mm"
    return f">={fmt(edges[-1])} mm"


def lesion_rows(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float],
                detect_share: float = DETECT_SHARE, min_piece_mm: float = MIN_PIECE_MM) -> tuple[list[dict], dict]:
    """Score each true lesion of one scan and count the mask's false pieces.

    Args:
        pred: (X, Y, Z) bool, the served mask (empty when the label was reported absent).
        truth: (X, Y, Z) bool, the label's truth.
        spacing: voxel size in mm along each axis.
        detect_share: the covered share from which a lesion counts as found.
        min_piece_mm: the size from which a piece touching no lesion is a false piece.

    Returns:
        (rows, stray): one row per true lesion, largest first, with ``voxels``,
        ``diameter_mm``, ``covered`` (share of its voxels in ``pred``) and ``found``; and,
        of the connected pieces of ``pred`` that touch no true lesion, ``false_pieces`` (those
        at least ``min_piece_mm`` across), ``false_mm3`` (their volume) and ``specks`` (the
        smaller ones). Raises ValueError for mismatched grids or a bad spacing.
    """
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} must share a grid")
    sp = np.asarray(spacing, dtype=float)
    if sp.shape != (3,) or not np.all(sp > 0):
        raise ValueError(f"spacing must be three positive sizes in mm, got {spacing!r}")
    if not 0.0 < detect_share <= 1.0:
        raise ValueError(f"detect_share must be in (0, 1], got {detect_share}")
    pred, truth = pred.astype(bool, copy=False), truth.astype(bool, copy=False)
    voxel_mm3 = float(np.prod(sp))
    rows = []
    if truth.any():
        pieces, n = ndimage.label(truth, structure=_CUBE)
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)
        hits = np.bincount(pieces[pred], minlength=n + 1)
        for i in range(1, n + 1):
            covered = float(hits[i] / sizes[i])
            rows.append({"voxels": int(sizes[i]), "diameter_mm": round(equivalent_diameter_mm(int(sizes[i]), voxel_mm3), 1),
                         "covered": round(covered, 4), "found": covered >= detect_share})
        rows.sort(key=lambda r: -r["voxels"])
    stray = {"false_pieces": 0, "false_mm3": 0.0, "specks": 0}
    if pred.any():
        mask_pieces, m = ndimage.label(pred, structure=_CUBE)
        sizes = np.bincount(mask_pieces.ravel(), minlength=m + 1)
        sizes[np.unique(mask_pieces[truth & pred])] = 0  # pieces touching a lesion are not stray
        false = (sizes[1:] > 0) & (equivalent_diameter_mm(sizes[1:], voxel_mm3) >= min_piece_mm)
        stray = {"false_pieces": int(false.sum()), "false_mm3": round(float(sizes[1:][false].sum() * voxel_mm3), 1),
                 "specks": int(((sizes[1:] > 0) & ~false).sum())}
    return rows, stray


def case_lesion_rows(case: str, label: str, pred: np.ndarray, truth: np.ndarray,
                     spacing: tuple[float, float, float]) -> list[dict]:
    """One scan's rows for ``detection_summary``: ``lesion_rows``' lesion rows and its stray
    dict, each with ``case`` and ``label`` added (the stray row last)."""
    found, stray = lesion_rows(pred, truth, spacing)
    return [*({"case": case, "label": label, **f} for f in found), {"case": case, "label": label, **stray}]


def detection_summary(rows: list[dict], edges: tuple[float, ...] = SIZE_BANDS_MM) -> dict:
    """Pool lesion rows (``lesion_rows``' lesion rows with ``label`` added, and one row per
    scored scan and label: its ``stray`` dict with ``label`` added) by label and size band.

    Returns:
        {label: {"lesions", "found", "sensitivity", "mean_covered", "false_pieces",
        "false_mm3", "specks", "scans", "bands": {band: {"lesions", "found", "sensitivity",
        "mean_covered"}}}}; ``sensitivity`` and ``mean_covered`` are None without lesions.
    """
    out: dict[str, dict] = {}
    for label in sorted({r["label"] for r in rows}):
        mine = [r for r in rows if r["label"] == label]
        lesions = [r for r in mine if "covered" in r]
        scans = [r for r in mine if "false_pieces" in r]

        def pooled(sel: list[dict]) -> dict:
            found = sum(r["found"] for r in sel)
            return {"lesions": len(sel), "found": found, "sensitivity": found / len(sel) if sel else None,
                    "mean_covered": float(np.mean([r["covered"] for r in sel])) if sel else None}

        bands = {}
        for r in lesions:
            bands.setdefault(size_band(r["diameter_mm"], edges), []).append(r)
        order = [size_band(d, edges) for d in (edges[0] - 1, *edges)]
        out[label] = {**pooled(lesions), "false_pieces": sum(r["false_pieces"] for r in scans),
                      "false_mm3": round(sum(r["false_mm3"] for r in scans), 1),
                      "specks": sum(r["specks"] for r in scans), "scans": len(scans),
                      "bands": {b: pooled(bands[b]) for b in order if b in bands}}
    return out


def detection_markdown(summary: dict) -> str:
    """The detection summary as Markdown lines, one per label (empty string without labels)."""
    lines = []
    for label, s in summary.items():
        stray = (f"in {s['scans']} scans, {s['false_pieces']} false pieces of at least {MIN_PIECE_MM:g} mm "
                 f"({s['false_mm3']:.0f} mm3) and {s['specks']} smaller specks")
        if not s["lesions"]:
            lines.append(f"- {label}: no lesion to find; {stray}")
            continue
        bands = "; ".join(f"{b}: {v['found']}/{v['lesions']}" for b, v in s["bands"].items())
        lines.append(f"- {label}: {s['found']} of {s['lesions']} lesions found ({bands}), mean share covered "
                     f"{s['mean_covered']:.2f}; {stray}")
    return "\n".join(lines) + "\n" if lines else ""
