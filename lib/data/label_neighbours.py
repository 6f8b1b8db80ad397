"""Which labels enclose which, learnt from the training label maps, for the exclusivity
clean-up (``lib.inference.postprocess.drop_claimed_pieces``).

A lesion lies inside its organ (its *host*), and its false masks tend to fall on a
neighbouring organ (a liver lesion's on the gallbladder). So for each *enclosed* label (one
with a host that is not one connected piece: lesions, cysts) this module lists its hosts and
its *competitors*: the one-piece labels of its modality that touch one of its hosts. A piece
of an enclosed label's mask that a competitor's mask claims is then dropped; the host is never
a competitor, since the host's mask covers the lesions inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
from scipy import ndimage

from .boxes import bounding_box
from .label_stats import LabelStats, is_one_piece
from .vocab import Vocabulary

HOST_SHELL_SHARE = 0.5  # a host holds at least this share of the label's one-voxel shell ...
HOST_CASE_SHARE = 0.1  # ... in at least this share of the training cases containing the label
TOUCH_CASE_SHARE = 0.1  # a competitor touches a host in at least this share of the cases with both

_CUBE = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Neighbours:
    """An enclosed label's hosts and competitors (label names, sorted)."""

    hosts: tuple[str, ...]
    competitors: tuple[str, ...]

    def to_json(self) -> dict:
        return {"hosts": list(self.hosts), "competitors": list(self.competitors)}

    @classmethod
    def from_json(cls, d: Mapping) -> "Neighbours":
        return cls(hosts=tuple(d["hosts"]), competitors=tuple(d["competitors"]))


def shell_labels(lab: np.ndarray, index: int) -> dict[int, float]:
    """Share of the one-voxel (26-connected) shell around label ``index`` in an integer
    (X, Y, Z) label map held by each label value (0, the background, included); empty when
    the label is absent. Computed on the label's bounding box plus one voxel."""
    mask = lab == index
    box = bounding_box(mask, 1)
    if box is None:
        return {}
    inner = mask[box]
    shell = ndimage.binary_dilation(inner, structure=_CUBE) & ~inner
    values = lab[box][shell]
    if not values.size:
        return {}
    kinds, counts = np.unique(values, return_counts=True)
    return {int(k): float(c) / values.size for k, c in zip(kinds, counts)}


def label_neighbours(label_maps: Iterable[np.ndarray], vocab: Vocabulary,
                     stats: Mapping[str, LabelStats]) -> dict[str, Neighbours]:
    """Hosts and competitors of every enclosed non-composite label of ``vocab`` over integer
    (X, Y, Z) label maps (see the module docstring; ``stats`` says which labels are one
    piece). Labels that are not enclosed are left out."""
    entries = {e.indices[0]: e for e in vocab if not e.composite}
    cases: dict[str, int] = {}
    hosted: dict[str, dict[str, int]] = {}  # label -> host -> cases where it holds half the shell
    touch: dict[str, dict[str, int]] = {}  # label -> label in its shell -> cases
    together: dict[tuple[str, str], int] = {}  # cases containing both
    for lab in label_maps:
        lab = np.asarray(lab)
        present = [entries[i] for i in np.unique(lab) if int(i) in entries]
        names = [e.name for e in present]
        for a in names:
            for b in names:
                together[a, b] = together.get((a, b), 0) + 1
        for e in present:
            cases[e.name] = cases.get(e.name, 0) + 1
            for value, share in shell_labels(lab, e.indices[0]).items():
                other = entries.get(value)
                if other is None or other.name == e.name:
                    continue
                touch.setdefault(e.name, {})[other.name] = touch.get(e.name, {}).get(other.name, 0) + 1
                if share >= HOST_SHELL_SHARE:
                    hosted.setdefault(e.name, {})[other.name] = hosted.get(e.name, {}).get(other.name, 0) + 1

    modality = {e.name: e.modality for e in entries.values()}
    out: dict[str, Neighbours] = {}
    for name, n in cases.items():
        hosts = sorted(h for h, k in hosted.get(name, {}).items() if k >= HOST_CASE_SHARE * n)
        if not hosts or is_one_piece(stats.get(name)):
            continue
        competitors = sorted(
            c for h in hosts for c, k in touch.get(h, {}).items()
            if c != name and c not in hosts and is_one_piece(stats.get(c)) and modality.get(c) == modality.get(name)
            and k >= TOUCH_CASE_SHARE * together.get((h, c), 0))
        out[name] = Neighbours(hosts=tuple(hosts), competitors=tuple(dict.fromkeys(competitors)))
    return out


def neighbours_to_json(data: Mapping[str, Neighbours]) -> dict:
    return {k: v.to_json() for k, v in data.items()}


def neighbours_from_json(data: Mapping | None) -> dict[str, Neighbours]:
    return {k: Neighbours.from_json(v) for k, v in (data or {}).items()}
