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


@dataclass(frozen=True)
class AbsentSite:
    """Where a structure usually lies, for the cases that lack it.

    Attributes:
        entry: the structure's vocabulary entry (one label value).
        centre: (3,) its mean centre over the cases that have it, as a fraction of each
            axis's extent (0: first voxel, 1: past the last).
        cases: indices of the cases (same modality) without it.
    """

    entry: LabelEntry
    centre: tuple[float, float, float]
    cases: tuple[int, ...]


def label_centres(label: torch.Tensor) -> dict[int, tuple[float, float, float]]:
    """Centre of every label value of an (X, Y, Z) map as a fraction of each axis's extent
    (one pass per axis with ``np.bincount``). Returns {value: (fx, fy, fz)} without 0."""
    lab = label.numpy().astype(np.int64).ravel()
    counts = np.bincount(lab)
    present = [int(v) for v in np.nonzero(counts)[0] if v]
    sums = []
    for axis, n in enumerate(label.shape):
        shape = [1, 1, 1]
        shape[axis] = n
        pos = np.broadcast_to((np.arange(n, dtype=np.float64) + 0.5).reshape(shape) / n, label.shape).ravel()
        sums.append(np.bincount(lab, weights=pos, minlength=len(counts)))
    return {v: tuple(float(s[v] / counts[v]) for s in sums) for v in present}


def absent_sites(cases: list[Case], values: list[set[int]], vocab: Vocabulary) -> list[AbsentSite]:
    """The ``AbsentSite`` of every single-label structure present in at least three
    quarters (and not all) of its modality's cases; ``values`` holds each case's label
    values."""
    sites = []
    centres: list[dict[int, tuple[float, float, float]] | None] = [None] * len(cases)
    for e in vocab:
        if len(e.indices) != 1:
            continue
        group = [i for i, c in enumerate(cases) if c.modality == e.modality]
        having = [i for i in group if e.indices[0] in values[i]]
        lacking = tuple(i for i in group if e.indices[0] not in values[i])
        if not lacking or 4 * len(having) < 3 * len(group):
            continue
        for i in having:
            if centres[i] is None:
                centres[i] = label_centres(cases[i].label)
        centre = np.mean([centres[i][e.indices[0]] for i in having], axis=0)
        sites.append(AbsentSite(e, tuple(float(c) for c in centre), lacking))
        logger.info("absent sites: %s lacks in %d of %d %s cases, usual centre %s", e.name, len(lacking),
                    len(group), e.modality, ", ".join(f"{c:.2f}" for c in centre))
    return sites


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
        absent_site: in stage 2 (``absent_fraction`` > 0), the probability that a patch is
            placed where a structure the case lacks usually lies (its mean centre, as a
            fraction of the volume's extent, over the cases that have it) and prompts that
            structure absent first: a scan without a left kidney, cropped around its empty
            left renal fossa, asked for the left kidney. Only structures present in at
            least three quarters of their modality's cases qualify (organs, not lesions,
            whose mean centre would say little); with
            "balanced" absent sampling, only while the structure has absent credit. 0: off.
        focus_boost: label name -> factor multiplying that label's weight in the
            label-first draw of a patch's centre ("label" or "adaptive" focus sampling).
    """

    def __init__(self, cases: list[Case], vocab: Vocabulary, patch_size: tuple[int, int, int], spacing: float,
                 seed: int = 0, augment: bool = True,
                 coord_jitter_mm: tuple[float, float, float] = (0.0, 0.0, 0.0), focus_sampling: str = "case",
                 distinct_prompts: bool = False, absent_sampling: str = "uniform", affine_prob: float = 0.5,
                 label_contrast_hu: float = 0.0, label_contrast_prob: float = 0.5,
                 absent_site: float = 0.0, focus_boost: dict[str, float] | None = None) -> None:
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
        self.focus_boost = dict(focus_boost or {})
        unknown = sorted(set(self.focus_boost) - set(self._names.values()))
        if unknown:
            raise ValueError(f"focus_boost names labels the training vocabulary lacks: {unknown}")
        if self.focus_boost and focus_sampling == "case":
            raise ValueError("focus_boost needs focus_sampling 'label' or 'adaptive' (a label drawn first)")
        if not 0.0 <= absent_site <= 1.0:
            raise ValueError(f"absent_site must be in [0, 1], got {absent_site!r}")
        self.absent_site = float(absent_site)
        self.sites = absent_sites(cases, self._values, vocab) if absent_site > 0 else []
        self.site_counts: dict[str, int] = {}  # absent-site patches drawn, per structure
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
            if self.difficulty is not None or self.focus_boost:
                if self.difficulty is not None:
                    values = [v for v in values if (modality, v) in self._names]
                w = np.array([self._focus_weight(modality, v) for v in values])
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

    def _focus_weight(self, modality: str, value: int) -> float:
        """A label's weight in the label-first draw: its running difficulty weight
        ("adaptive"; else 1) times its ``focus_boost`` factor (1 when not named)."""
        name = self._names.get((modality, value))
        w = self.difficulty.weight(name) if self.difficulty is not None else 1.0
        return w * self.focus_boost.get(name, 1.0)

    def _crop(self, case: Case, focus: int = 0, centre: list[int] | None = None):
        """A patch of the case, centred (up to a random shift of a quarter patch) on
        ``centre`` (voxel indices) when given, else on a random voxel of label ``focus``,
        or placed at random when it is 0.

        Returns (image (1, X, Y, Z), label (X, Y, Z), start, focus, soft): ``soft`` is
        None, or (values, (K, X, Y, Z) float shares in [0, 1]) for the K labels of the
        patch's label map when the case has soft targets."""
        shape = case.label.shape
        ps = self.patch_size
        if centre is None and focus:
            idx = (case.label == focus).nonzero()
            centre = idx[self.rng.integers(len(idx))].tolist()
        elif centre is None:
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

    def patch(self, require_foreground: bool = False,
              site: tuple[AbsentSite, int] | None = None) -> tuple[torch.Tensor, torch.Tensor, str, int]:
        """One augmented patch (of case ``site[1]`` around ``site[0]``'s usual place when
        ``site`` is given, see ``absent_site``).

        Returns:
            x: (1, 4, X, Y, Z) image + coordinate channels.
            label: (X, Y, Z) int16 label map of the patch.
            modality: of the case it came from.
            focus: the label value the patch was centred on (0: none, or lost to augmentation).
            soft: None, or {label value: (X, Y, Z) float share} for the values in ``label``
                (cases with soft targets).
        """
        for _ in range(20):  # stage 1 needs a patch with at least one structure in it
            if site is not None:
                case = self.cases[site[1]]
                centre = [int(f * n) for f, n in zip(site[0].centre, case.label.shape)]
                img, lab, start, focus, soft = self._crop(case, 0, centre)
                break
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
        site = self._pick_site(absent_fraction)
        x, lab, modality, focus, soft = self.patch(require_foreground=absent_fraction == 0, site=site)
        entries, targets = self.draw_prompts(lab, modality, prompts_per_image, absent_fraction, focus, soft,
                                             forced_absent=site[0].entry if site else None)
        prompts = [e.train_prompts[self.rng.integers(len(e.train_prompts))] for e in entries]
        return x, prompts, targets, [e.name for e in entries]

    def draw_prompts(self, lab: torch.Tensor, modality: str, k: int, absent_fraction: float, focus: int = 0,
                     soft: dict[int, torch.Tensor] | None = None, forced_absent: LabelEntry | None = None):
        """Choose K labels for a patch: present ones, and absent ones with probability
        ``absent_fraction`` each (same modality, not in the patch). The label the patch was
        centred on (``focus``), when it has a non-composite entry, is always the first: a
        small structure is otherwise prompted as absent (in most patches) far more often
        than as present, and the model learns to never find it. ``forced_absent`` (an entry
        not in the patch, the absent-site patches') comes first of all. Presence is the label map's;
        the targets are the shares in ``soft`` ({value: (X, Y, Z)}, summed over a composite
        entry's values) when given, else {0, 1} from ``lab``. Returns (entries, targets)."""
        values = set(torch.unique(lab).tolist())
        pool = [e for e in self.vocab if e.modality == modality]
        present = [e for e in pool if values.intersection(e.indices)]
        absent = [e for e in pool if not values.intersection(e.indices)]
        chosen: list[LabelEntry] = [e for e in present if e.indices == (focus,)][:1]
        if forced_absent is not None:
            if values.intersection(forced_absent.indices):
                raise ValueError(f"{forced_absent.name!r} is in the patch; it cannot be prompted absent")
            chosen.insert(0, forced_absent)
            absent = [e for e in absent if e.name != forced_absent.name]
        positive_only = absent_fraction == 0 and bool(present)  # absent ones only in a patch without any
        if absent_fraction > 0 and self.absent_sampling == "balanced":
            absent = self._balanced(absent, none_present=not present)
        if self.distinct_prompts:  # each label at most once: pools shrink as they are drawn
            present = [e for e in present if e not in chosen]
        absent_names = {e.name for e in absent} | ({forced_absent.name} if forced_absent is not None else set())
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

    def _credit(self, e: LabelEntry) -> int:
        """Times ``e`` was prompted present minus absent since absent prompts began."""
        present, absent = self.prompt_counts.get(e.name, (0, 0))
        return present - absent

    def _balanced(self, absent: list[LabelEntry], none_present: bool) -> list[LabelEntry]:
        """The absent labels that may be prompted absent under "balanced" sampling: those
        prompted absent fewer times than present so far (``prompt_counts``). A patch with no
        present label and none of those gets the one with the most credit, so that it
        still has a prompt."""
        eligible = [e for e in absent if self._credit(e) > 0]
        if not eligible and none_present and absent:
            eligible = [max(absent, key=self._credit)]
        return eligible

    def _pick_site(self, absent_fraction: float) -> tuple[AbsentSite, int] | None:
        """With probability ``absent_site`` in stage 2: a structure (uniformly among the
        qualifying ones, within credit under "balanced" sampling) and a case without it
        (uniformly). None: an ordinary patch."""
        if not self.sites or absent_fraction <= 0 or self.rng.random() >= self.absent_site:
            return None
        sites = self.sites
        if self.absent_sampling == "balanced":
            sites = [s for s in sites if self._credit(s.entry) > 0]
        if not sites:
            return None
        site = sites[int(self.rng.integers(len(sites)))]
        self.site_counts[site.entry.name] = self.site_counts.get(site.entry.name, 0) + 1
        return site, site.cases[int(self.rng.integers(len(site.cases)))]

    def _absent_index(self, absent: list[LabelEntry]) -> int:
        """Index of the absent label to prompt: uniform, or by ``absent_weight`` ("found")."""
        if self.absent_sampling != "found" or self.difficulty is None:
            return int(self.rng.integers(len(absent)))
        w = np.array([self.difficulty.absent_weight(e.name) for e in absent])
        return int(self.rng.choice(len(absent), p=w / w.sum()))
