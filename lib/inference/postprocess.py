"""Mask clean-up after the two passes, driven by the prompt and the training labels' shape
statistics: the side a prompt names, the largest connected piece, a volume floor, and the
pieces of a lesion mask that a neighbouring organ's mask claims."""

from __future__ import annotations

import re

import numpy as np
import torch
from monai.transforms.utils import get_largest_connected_component_mask
from scipy import ndimage

from ..data.boxes import bounding_box
from ..data.label_stats import LabelStats

CLEANUP_OFF = {"side_check": False, "largest_piece": False, "min_volume_fraction": 0.0,
               "exclusive_share": 0.0}  # ModelConfig values

_SIDE = re.compile(r"\b(left|right)\b")
_SIDE_LETTER = re.compile(r"(?<![\w-])([lr])(?![\w-])")  # "L hippocampus", not "l-spine"
STRADDLE_SHARE = 0.25  # ``drop_wrong_side``: a piece with a share beyond the midline between this and 1 - this is cut


def prompt_side(prompt: str) -> str | None:
    """"left" or "right" when the prompt names exactly one side ("left kidney",
    "tumour in the right lung", "L hippocampus"); None otherwise (no side, or both)."""
    text = prompt.lower()
    sides = set(_SIDE.findall(text)) | {"left" if s == "l" else "right" for s in _SIDE_LETTER.findall(text)}
    return sides.pop() if len(sides) == 1 else None


def body_midline(image: torch.Tensor) -> float:
    """Working-grid x index of the body's midline: the mean x of the voxels brighter than
    5% of the intensity range (the body, not the air around it). (X, Y, Z) -> float."""
    lo, hi = float(image.min()), float(image.max())
    body = image > lo + 0.05 * (hi - lo)
    if not body.any():
        return (image.shape[0] - 1) / 2.0
    profile = body.sum(dim=(1, 2)).double()
    return float((profile * torch.arange(len(profile), dtype=torch.float64)).sum() / profile.sum())


def drop_wrong_side(p: torch.Tensor, side: str, midline: float, threshold: float) -> torch.Tensor:
    """Clear what lies on the other side of the midline than ``side`` from ``p >= threshold``
    (26-connected pieces), by the share ``w`` of each piece's voxels beyond the midline.
    The working grid is RAS: x grows toward the patient's right.

    - ``w >= 1 - STRADDLE_SHARE``: the piece is dropped whole. A left kidney is never right
      of the midline, so a "left kidney" prompt that also lights up the right one (or only
      it, after a left nephrectomy) loses that piece.
    - ``STRADDLE_SHARE < w < 1 - STRADDLE_SHARE``: the piece is cut at the midline. Both
      lungs touch in the mediastinum, and a prompt that lights up both as one piece ("the
      lung on the right") keeps the named one.
    - ``w <= STRADDLE_SHARE``: the piece is kept whole (a kidney's hilum or a lung's
      mediastinal edge may reach a little over the midline).

    (X, Y, Z) -> (X, Y, Z)."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    mask = (p >= threshold).numpy()
    if not mask.any():
        return p
    box = bounding_box(mask)
    pieces, n = ndimage.label(mask[box], structure=np.ones((3, 3, 3), dtype=bool))
    x = np.arange(box[0].start, box[0].stop)
    beyond = ((x > midline) if side == "left" else (x < midline))[:, None, None]  # rows on the other side
    index = range(1, n + 1)
    share = np.asarray(ndimage.sum(mask[box] & beyond, pieces, index)) / np.asarray(ndimage.sum(mask[box], pieces, index))
    drop = [i + 1 for i in range(n) if share[i] >= 1 - STRADDLE_SHARE]
    cut = [i + 1 for i in range(n) if STRADDLE_SHARE < share[i] < 1 - STRADDLE_SHARE]
    if not drop and not cut:
        return p
    clear = np.isin(pieces, drop) | (np.isin(pieces, cut) & beyond)
    out = p.clone()
    out[box][torch.as_tensor(clear)] = 0.0
    return out


def keep_largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected piece of a boolean (X, Y, Z) mask (MONAI's
    ``get_largest_connected_component_mask``, on the mask's bounding box); an empty mask
    stays empty."""
    if not mask.any():
        return mask
    box = bounding_box(mask)
    out = np.zeros_like(mask, dtype=bool)
    out[box] = np.asarray(get_largest_connected_component_mask(mask[box], connectivity=None)).astype(bool)
    return out


def drop_smaller_pieces(p: torch.Tensor, threshold: float) -> torch.Tensor:
    """Zero the voxels of ``p >= threshold`` outside its largest 26-connected piece.

    Run on the working grid before resampling: two voxels of one 2x2x2 interpolation cell
    are always 26-connected, so no cell mixes the kept piece with a dropped one, and the
    linearly resampled map thresholds to the kept piece only (a convex combination of
    values below the threshold stays below it). (X, Y, Z) -> (X, Y, Z)."""
    mask = (p >= threshold).numpy()
    drop = mask & ~keep_largest_piece(mask)
    if not drop.any():
        return p
    out = p.clone()
    out[torch.from_numpy(drop)] = 0.0
    return out


def drop_claimed_pieces(p: torch.Tensor, threshold: float, claimed: np.ndarray, share: float) -> torch.Tensor:
    """Zero every 26-connected piece of ``p >= threshold`` of which at least ``share`` of the
    voxels lie in ``claimed`` (bool, the union of other structures' masks): a false lesion
    mask on the gallbladder is dropped, a lesion that only grazes a neighbour is kept. On the
    working grid before resampling, for the reason given in ``drop_smaller_pieces``.
    (X, Y, Z) -> (X, Y, Z)."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    mask = (p >= threshold).numpy()
    if not (mask & claimed).any():
        return p
    box = bounding_box(mask)
    pieces, n = ndimage.label(mask[box], structure=np.ones((3, 3, 3), dtype=bool))
    index = range(1, n + 1)
    held = np.asarray(ndimage.sum(claimed[box], pieces, index)) / np.asarray(ndimage.sum(mask[box], pieces, index))
    drop = [i + 1 for i in range(n) if held[i] >= share]
    if not drop:
        return p
    out = p.clone()
    out[box][torch.as_tensor(np.isin(pieces, drop))] = 0.0
    return out


CUT_FACE_SHARE = 0.9  # a face holding this share of the mask's widest section cuts the structure
CUT_FLOOR_SHARE = 0.5  # a cut structure's volume floor is this share of the label's floor


def cut_by_field_of_view(mask: np.ndarray, share: float = CUT_FACE_SHARE) -> bool:
    """Whether the edge of the scan cuts the structure off: along some axis, the mask's
    section on the first or last slice is (nearly, ``share``) its widest section along that
    axis. A structure cut there goes on outside the field of view, so its visible part can
    be far smaller than any training volume (the lung bases at the top of an abdominal
    scan); a spurious blob that only grazes the edge is wider inside. (X, Y, Z) bool."""
    if not mask.any():
        return False
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        sections = mask.sum(axis=others)  # (N,) voxels of each slice along ``axis``
        widest = sections.max()
        if max(sections[0], sections[-1]) >= share * widest:
            return True
    return False


def below_volume_floor(volume_mm3: float, stats: LabelStats | None, fraction: float) -> bool:
    """Whether a mask is smaller than ``fraction`` of the label's 5th-percentile training
    volume: too small to be that structure, so it is reported absent."""
    return stats is not None and fraction > 0 and volume_mm3 < fraction * stats.volume_p05_mm3


def below_floor(mask: np.ndarray, volume_mm3: float, stats: LabelStats | None, fraction: float) -> bool:
    """``below_volume_floor``, with a floor ``CUT_FLOOR_SHARE`` as high for a mask the edge
    of the scan cuts (``cut_by_field_of_view``): its visible part may be much smaller than
    any training volume, but a sliver far below even that lowered floor is more often a
    structure just outside the scan lit up at its edge than a piece of it inside."""
    if not below_volume_floor(volume_mm3, stats, fraction):
        return False
    return not cut_by_field_of_view(mask) or below_volume_floor(volume_mm3, stats, fraction * CUT_FLOOR_SHARE)
