"""Training data: labelled volumes on the working grid, patch sampling with
augmentation, and prompt drawing (positive-only or balanced with absent structures)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.transforms import RandAffined, RandGaussianNoise, RandScaleIntensity, RandShiftIntensity
from monai.utils import convert_to_tensor
from tqdm import tqdm

from ..config import ABSENT_SAMPLING, FOCUS_SAMPLING
from ..data.preprocess import (COORD_SCALE_MM, coordinate_channels, load_volume, prepare, soft_label_maps,
                               to_working_grid, volume_fingerprint)
from ..data.vocab import LabelEntry, Vocabulary
from .contrast import hu_to_normalized, label_contrast_shift
from .difficulty import LabelDifficulty

logger = logging.getLogger(__name__)


@dataclass
class Case:
    """One labelled volume on the working grid.

    Attributes:
        id: image id.
        image: (1, X, Y, Z) float32 normalised intensities.
        label: (X, Y, Z) int16 label map.
        modality: "CT" or "MR".
        fingerprint: ``volume_fingerprint`` of the image as read (before resampling).
        soft: optional {label value: (X, Y, Z) uint8} share of each working voxel (x 255,
            ``soft_label_maps``), the soft training targets; None: targets from ``label``.
    """

    id: str
    image: torch.Tensor
    label: torch.Tensor
    modality: str
    fingerprint: str = ""
    soft: dict[int, torch.Tensor] | None = None


def load_case(image_path: str | Path, label_path: str | Path, spacing: float, modality: str = "auto",
              case_id: str | None = None, soft: bool = False) -> Case:
    """Read an image and its label map, check they match, and move both to the working grid
    (with ``soft``, also each label's share of every working voxel, ``Case.soft``)."""
    img = load_volume(str(image_path))
    lab = load_volume(str(label_path), label=True)
    if tuple(img.shape) != tuple(lab.shape):
        raise ValueError(f"label {label_path} has shape {tuple(lab.shape[1:])}, image has {tuple(img.shape[1:])}")
    vol = prepare(img, spacing, modality)
    lab_w = to_working_grid(lab, spacing, label=True).as_tensor()[0].round().to(torch.int16)
    if tuple(lab_w.shape) != tuple(vol.image.shape[1:]):
        raise AssertionError("image and label working grids differ")
    return Case(id=case_id or Path(image_path).name.split(".")[0], image=vol.image, label=lab_w, modality=vol.modality,
                fingerprint=volume_fingerprint(img), soft=soft_label_maps(lab, vol) if soft else None)


def load_cases(pairs: list[tuple[str, str, str]], spacing: float, progress: bool = True,
               soft: bool = False) -> list[Case]:
    """Load (id, image path, label path) triples (``soft``: with soft targets, see ``load_case``)."""
    return [load_case(i, l, spacing, case_id=cid, soft=soft)
            for cid, i, l in tqdm(pairs, desc="loading", disable=not progress)]


class PatchSampler:
    """Draws augmented training patches and their prompts.

    Args:
        cases: training cases.
        vocab: label vocabulary (prompts and absent-structure candidates).
        patch_size: (X, Y, Z) on the working grid.
        spacing: working spacing (for the coordinate channels).
        seed: random seed.
        augment: apply spatial and intensity augmentation (no flips: a flip would swap
            left and right structures).
        coord_jitter_mm: with ``augment``, a random shift (uniform in +-jitter, per axis,
            per patch) of the coordinate channels. The coordinates are relative to the
            volume's centre, which moves with the field of view (a kidney-only scan is
            centred lower than an abdomen); the shift keeps the network from trusting them
            more than the image.
        focus_sampling: "case" (a case first, then one of its labels as the patch's
            centre), "label" (a label first, then a case that has it) or "adaptive" (a
            label first, weighted by its running difficulty, see ``LabelDifficulty``; the
            trainer feeds ``difficulty`` after every step).
        distinct_prompts: draw each label at most once per patch (without it the draws are
            with replacement and a patch may prompt the same label twice); a patch then
            has fewer than K prompts when its modality has too few labels, and a
            positive-only draw stops when the present labels run out.
        absent_sampling: "uniform" (each absent label equally likely), "found" (absent
            labels drawn by ``LabelDifficulty.absent_weight``: a label the model does not
            find yet is rarely prompted absent; needs ``focus_sampling`` "adaptive") or
            "balanced" (a label is prompted absent only while, since absent prompts began,
            it has been prompted absent fewer times than present; ``prompt_counts``).
        affine_prob: with ``augment``, the probability of the random affine (rotation and
            scaling) of a patch; the intensity augmentation does not depend on it.
        label_contrast_hu: with ``augment``, the largest per-structure intensity offset (HU)
            of the label-wise contrast augmentation of CT patches (``contrast.py``; 0: off).
        label_contrast_prob: the probability that a CT patch gets it.
    """

    def __init__(self, cases: list[Case], vocab: Vocabulary, patch_size: tuple[int, int, int], spacing: float,
                 seed: int = 0, augment: bool = True,
                 coord_jitter_mm: tuple[float, float, float] = (0.0, 0.0, 0.0), focus_sampling: str = "case",
                 distinct_prompts: bool = False, absent_sampling: str = "uniform", affine_prob: float = 0.5,
                 label_contrast_hu: float = 0.0, label_contrast_prob: float = 0.5) -> None:
        if not cases:
            raise ValueError("no labelled cases to train on")
        self.cases, self.vocab, self.patch_size, self.spacing = cases, vocab, patch_size, spacing
        self.coord_jitter_mm = tuple(float(j) for j in coord_jitter_mm)
        self.rng = np.random.default_rng(seed)
        self.augment = augment
        if focus_sampling not in FOCUS_SAMPLING:
            raise ValueError(f"focus_sampling must be one of {FOCUS_SAMPLING}, got {focus_sampling!r}")
        self.focus_sampling = focus_sampling
        self.distinct_prompts = distinct_prompts
        if absent_sampling not in ABSENT_SAMPLING:
            raise ValueError(f"absent_sampling must be one of {ABSENT_SAMPLING}, got {absent_sampling!r}")
        if absent_sampling == "found" and focus_sampling != "adaptive":
            raise ValueError("absent_sampling 'found' needs focus_sampling 'adaptive' (the running losses it reads)")
        self.absent_sampling = absent_sampling
        # label name -> [present, absent] prompts drawn since absent prompts began (stage 2)
        self.prompt_counts: dict[str, list[int]] = {}
        self.difficulty = LabelDifficulty() if focus_sampling == "adaptive" else None
        self._values = [set(torch.unique(c.label).tolist()) - {0} for c in cases]  # labels per case
        # (modality, label value) -> name of its single-label entry, for adaptive weights
        self._names = {(e.modality, e.indices[0]): e.name for e in vocab if len(e.indices) == 1}
        # one draw of the affine moves image, label and soft targets alike ("soft" is there
        # only for cases with soft targets)
        if not 0.0 <= affine_prob <= 1.0:
            raise ValueError(f"affine_prob must be in [0, 1], got {affine_prob!r}")
        self.affine = RandAffined(keys=("image", "label", "soft"), prob=affine_prob, rotate_range=(0.12, 0.12, 0.12),
                                  scale_range=(0.1, 0.1, 0.1), mode=("bilinear", "nearest", "bilinear"),
                                  padding_mode="border", allow_missing_keys=True)
        self.affine.set_random_state(seed)
        if label_contrast_hu < 0 or not 0.0 <= label_contrast_prob <= 1.0:
            raise ValueError(f"label_contrast_hu must be >= 0 and label_contrast_prob in [0, 1], got "
                             f"{label_contrast_hu!r}, {label_contrast_prob!r}")
        self.contrast_offset = hu_to_normalized(label_contrast_hu)
        self.contrast_prob = float(label_contrast_prob)
        self.intensity = [RandScaleIntensity(factors=0.1, prob=0.5), RandShiftIntensity(offsets=0.1, prob=0.5),
                          RandGaussianNoise(prob=0.3, std=0.05)]
        for i, t in enumerate(self.intensity):
            t.set_random_state(seed + 1 + i)

    def _pick_case(self) -> tuple[Case, int]:
        """A modality first, with probability proportional to the square root of its case
        count (a single MR volume among 40 CT ones is drawn 14% of the time, not 2%). Then,
        75% of the time, a focus label: with ``focus_sampling`` "case", a case drawn
        uniformly and one of its labels; with "label", a label drawn uniformly among the
        labels of that modality's cases and a case that has it (so a lesion found in a
        third of the cases is the focus as often as the liver found in all); with
        "adaptive", likewise but the label is drawn with probability proportional to its
        difficulty weight (labels without a vocabulary entry are not drawn). Otherwise a
        case drawn uniformly and no focus. Returns the case and the focus label (0: none)."""
        modalities = sorted({c.modality for c in self.cases})
        groups = [[i for i, c in enumerate(self.cases) if c.modality == m] for m in modalities]
        weights = np.sqrt([len(g) for g in groups])
        group = groups[self.rng.choice(len(groups), p=weights / weights.sum())]
        focused = self.rng.random() < 0.75
        if focused and self.focus_sampling in ("label", "adaptive"):
            modality = self.cases[group[0]].modality
            values = sorted(set().union(*(self._values[i] for i in group)))
            p = None
            if self.difficulty is not None:
                values = [v for v in values if (modality, v) in self._names]
                w = np.array([self.difficulty.weight(self._names[modality, v]) for v in values])
                p = w / w.sum() if len(values) else None
            if values:
                v = values[self.rng.choice(len(values), p=p)]
                having = [i for i in group if v in self._values[i]]
                return self.cases[having[self.rng.integers(len(having))]], v
        i = group[self.rng.integers(len(group))]
        if focused and self._values[i]:
            values = sorted(self._values[i])
            return self.cases[i], values[self.rng.integers(len(values))]
        return self.cases[i], 0

    def _crop(self, case: Case, focus: int = 0):
        """A patch of the case, centred (up to a random shift of a quarter patch) on a
        random voxel of label ``focus``, or placed at random when it is 0.

        Returns (image (1, X, Y, Z), label (X, Y, Z), start, focus, soft): ``soft`` is
        None, or (values, (K, X, Y, Z) float shares in [0, 1]) for the K labels of the
        patch's label map when the case has soft targets."""
        shape = case.label.shape
        ps = self.patch_size
        if focus:
            idx = (case.label == focus).nonzero()
            centre = idx[self.rng.integers(len(idx))].tolist()
        else:
            centre = [int(self.rng.integers(s)) for s in shape]
        start = [int(np.clip(c - p // 2 + self.rng.integers(-p // 4, p // 4 + 1), 0, max(0, s - p)))
                 for c, p, s in zip(centre, ps, shape)]
        sl = tuple(slice(a, a + p) for a, p in zip(start, ps))
        img, lab = case.image[(slice(None),) + sl], case.label[sl]
        soft = None
        if case.soft is not None:
            values = [v for v in torch.unique(lab).tolist() if v in case.soft]
            shares = [case.soft[v][sl].float() / 255.0 for v in values]
            soft = (values, torch.stack(shares) if shares else torch.zeros((0, *lab.shape)))
        pad = [p - s for p, s in zip(ps, lab.shape)]
        if any(pad):
            padding = (0, pad[2], 0, pad[1], 0, pad[0])
            img = torch.nn.functional.pad(img.unsqueeze(0), padding, mode="replicate")[0]
            lab = torch.nn.functional.pad(lab, padding)
            if soft is not None:
                soft = (soft[0], torch.nn.functional.pad(soft[1], padding))
        return img, lab, tuple(start), focus, soft

    def patch(self, require_foreground: bool = False) -> tuple[torch.Tensor, torch.Tensor, str, int]:
        """One augmented patch.

        Returns:
            x: (1, 4, X, Y, Z) image + coordinate channels.
            label: (X, Y, Z) int16 label map of the patch.
            modality: of the case it came from.
            focus: the label value the patch was centred on (0: none, or lost to augmentation).
            soft: None, or {label value: (X, Y, Z) float share} for the values in ``label``
                (cases with soft targets).
        """
        for _ in range(20):  # stage 1 needs a patch with at least one structure in it
            case, focus = self._pick_case()
            img, lab, start, focus, soft = self._crop(case, focus)
            if not require_foreground or bool((lab > 0).any()):
                break
        coords = coordinate_channels(self.patch_size, self.spacing, start, tuple(case.label.shape))
        if self.augment and any(self.coord_jitter_mm):
            shift = [self.rng.uniform(-j, j) / COORD_SCALE_MM for j in self.coord_jitter_mm]
            coords = coords + torch.tensor(shift, dtype=coords.dtype).view(3, 1, 1, 1)
        if (self.augment and self.contrast_offset > 0 and case.modality == "CT"
                and self.rng.random() < self.contrast_prob):
            img = label_contrast_shift(img, lab, self.rng, self.contrast_offset)
        if self.augment:
            d = {"image": torch.cat([img, coords]), "label": lab.unsqueeze(0).float()}
            if soft is not None and len(soft[0]):
                d["soft"] = soft[1]
            d = self.affine(d)
            img, coords, lab = d["image"][:1], d["image"][1:], d["label"][0].round().to(torch.int16)
            if "soft" in d:
                soft = (soft[0], torch.as_tensor(d["soft"]).clamp(0, 1))
            img = torch.as_tensor(img)
            for t in self.intensity:
                img = torch.as_tensor(t(img))
        # plain tensors: a MetaTensor (MONAI's transforms return them) would carry its
        # metadata through every operation of the network's forward and backward pass
        x = convert_to_tensor(torch.cat([torch.as_tensor(img), torch.as_tensor(coords)]).unsqueeze(0).float(),
                              track_meta=False)
        lab = convert_to_tensor(lab, track_meta=False)
        focus = focus if focus and bool((lab == focus).any()) else 0
        shares = None if soft is None else {v: m for v, m in zip(soft[0], soft[1])}
        return x, lab, case.modality, focus, shares

    def sample(self, prompts_per_image: int, absent_fraction: float):
        """One training example for the text-prompted model.

        Returns:
            x: (1, 4, X, Y, Z) image + coordinate channels.
            prompts: list of K prompt strings (random training paraphrases).
            targets: (K, X, Y, Z) float: {0, 1}, or the structure's share of each voxel
                with soft targets (all zero for absent prompts).
            names: the K label names the prompts stand for.
        """
        x, lab, modality, focus, soft = self.patch(require_foreground=absent_fraction == 0)
        entries, targets = self.draw_prompts(lab, modality, prompts_per_image, absent_fraction, focus, soft)
        prompts = [e.train_prompts[self.rng.integers(len(e.train_prompts))] for e in entries]
        return x, prompts, targets, [e.name for e in entries]

    def draw_prompts(self, lab: torch.Tensor, modality: str, k: int, absent_fraction: float, focus: int = 0,
                     soft: dict[int, torch.Tensor] | None = None):
        """Choose K labels for a patch: present ones, and absent ones with probability
        ``absent_fraction`` each (same modality, not in the patch). The label the patch was
        centred on (``focus``), when it has a non-composite entry, is always the first: a
        small structure is otherwise prompted as absent (in most patches) far more often
        than as present, and the model learns to never find it. Presence is the label map's;
        the targets are the shares in ``soft`` ({value: (X, Y, Z)}, summed over a composite
        entry's values) when given, else {0, 1} from ``lab``. Returns (entries, targets)."""
        values = set(torch.unique(lab).tolist())
        pool = [e for e in self.vocab if e.modality == modality]
        present = [e for e in pool if values.intersection(e.indices)]
        absent = [e for e in pool if not values.intersection(e.indices)]
        chosen: list[LabelEntry] = [e for e in present if e.indices == (focus,)][:1]
        positive_only = absent_fraction == 0 and bool(present)  # absent ones only in a patch without any
        if absent_fraction > 0 and self.absent_sampling == "balanced":
            absent = self._balanced(absent, none_present=not present)
        if self.distinct_prompts:  # each label at most once: pools shrink as they are drawn
            present = [e for e in present if e not in chosen]
        absent_names = {e.name for e in absent}
        while len(chosen) < k:
            if self.distinct_prompts and positive_only and not present:
                break  # stage 1 stays positive-only: fewer prompts, never an absent one
            use_absent = absent and (not present or self.rng.random() < absent_fraction)
            group = absent if use_absent else present
            if not group:
                break
            i = self._absent_index(group) if use_absent else int(self.rng.integers(len(group)))
            once = self.distinct_prompts or (use_absent and self.absent_sampling == "balanced")  # within credit
            chosen.append(group.pop(i) if once else group[i])
        if not chosen:
            raise ValueError("patch has no usable prompts")
        if absent_fraction > 0:
            for e in chosen:
                self.prompt_counts.setdefault(e.name, [0, 0])[int(e.name in absent_names)] += 1
        if soft is None:
            targets = torch.stack([torch.as_tensor(np.isin(lab.numpy(), e.indices)) for e in chosen]).float()
        else:
            zero = torch.zeros(lab.shape)
            targets = torch.stack([sum((soft[v] for v in e.indices if v in soft), zero).clamp(max=1.0)
                                   for e in chosen]).float()
        return chosen, targets

    def _balanced(self, absent: list[LabelEntry], none_present: bool) -> list[LabelEntry]:
        """The absent labels that may be prompted absent under "balanced" sampling: those
        prompted absent fewer times than present so far (``prompt_counts``). A patch with no
        present label and none of those gets the one with the most credit, so that it
        still has a prompt."""
        def credit(e: LabelEntry) -> int:
            present, absent_ = self.prompt_counts.get(e.name, (0, 0))
            return present - absent_

        eligible = [e for e in absent if credit(e) > 0]
        if not eligible and none_present and absent:
            eligible = [max(absent, key=credit)]
        return eligible

    def _absent_index(self, absent: list[LabelEntry]) -> int:
        """Index of the absent label to prompt: uniform, or by ``absent_weight`` ("found")."""
        if self.absent_sampling != "found" or self.difficulty is None:
            return int(self.rng.integers(len(absent)))
        w = np.array([self.difficulty.absent_weight(e.name) for e in absent])
        return int(self.rng.choice(len(absent), p=w / w.sum()))
