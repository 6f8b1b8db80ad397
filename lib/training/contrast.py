"""Label-wise contrast augmentation: a random intensity offset per labelled structure.

A CT's contrast phase moves each organ's density by its own amount (a kidney is about
35 HU without contrast, 170 HU in the portal-venous phase, the liver 58 and 118 in the
phantoms' tissue table), so a
model trained mostly on one phase learns the organs' densities in that phase and misses
them in another. This augmentation shifts every labelled structure of a training patch by
its own random offset, so that the network must also use shape, position and context. A
structure that sits inside another (a liver lesion in the liver, a cyst in a kidney) takes
its host's offset, so its contrast with the host, which is what makes it visible, is kept.
Background (label 0) is not shifted.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.preprocess import CT_WINDOW

#: a structure whose outer face neighbours are at least this share one other label lies inside it
HOST_SHARE = 0.5


def hu_to_normalized(hu: float) -> float:
    """An intensity difference in HU as a difference on the CT window's [-1, 1] scale."""
    lo, hi = CT_WINDOW
    return float(hu) * 2.0 / (hi - lo)


def nonzero_labels(lab: torch.Tensor) -> list[int]:
    """The label values of ``lab`` other than background, ascending."""
    return [int(v) for v in torch.unique(lab).tolist() if v != 0]


def host_labels(lab: torch.Tensor, values: list[int] | None = None) -> dict[int, int]:
    """For each label of ``lab`` (X, Y, Z) the label it lies inside, if any.

    A label's host is the non-zero label that makes up at least ``HOST_SHARE`` of the
    neighbours of its voxels that are not its own (6-neighbourhood, counted once per face,
    within the patch). Returns {label: host} for the
    labels that have one (a chain such as a cyst in a lesion in an organ is not followed).
    ``values``: the non-zero labels of ``lab`` when the caller has them already.
    """
    hosts = {}
    lab = lab.long()
    padded = torch.nn.functional.pad(lab, (1, 1, 1, 1, 1, 1), value=-1)  # -1: outside the patch
    X, Y, Z = lab.shape
    shifted = [padded[1 + dx:1 + dx + X, 1 + dy:1 + dy + Y, 1 + dz:1 + dz + Z]
               for dx, dy, dz in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))]
    for v in nonzero_labels(lab) if values is None else values:
        inside = lab == v
        ring = torch.cat([n[inside] for n in shifted])
        ring = ring[(ring != v) & (ring >= 0)]  # the neighbours that are not v, within the patch
        if ring.numel() == 0:
            continue
        counts = torch.bincount(ring, minlength=2)
        best = int(counts[1:].argmax()) + 1  # background counts against a host: a structure in fat has none
        if counts[best] >= HOST_SHARE * ring.numel():
            hosts[v] = best
    return hosts


def label_contrast_shift(img: torch.Tensor, lab: torch.Tensor, rng: np.random.Generator,
                         max_offset: float) -> torch.Tensor:
    """Shift each labelled structure's intensities by its own random offset.

    Args:
        img: (1, X, Y, Z) normalised CT patch.
        lab: (X, Y, Z) integer label map of the patch (0: background, never shifted).
        rng: the sampler's generator (offsets uniform in +-``max_offset``).
        max_offset: largest offset, on the normalised scale (``hu_to_normalized``).

    Returns:
        (1, X, Y, Z) a new tensor; a structure inside another (``host_labels``) gets its
        host's offset.
    """
    values = nonzero_labels(lab)
    if not values or max_offset <= 0:
        return img
    offsets = {v: float(rng.uniform(-max_offset, max_offset)) for v in values}
    hosts = host_labels(lab, values)
    table = torch.zeros(int(lab.max()) + 1, dtype=img.dtype)
    for v in values:
        table[v] = offsets[hosts.get(v, v)]
    return img + table[lab.long()][None]
