"""Predictor: encode an image once, answer any number of text prompts from the encoding.

Pass 1 runs on the whole volume at stride 2; pass 2 (the gated refiner) runs at the
working resolution only inside the bounding box of pass 1's candidate region.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.boxes import bounding_box
from ..data.label_neighbours import Neighbours
from ..data.label_stats import LabelStats, is_one_piece
from ..data.preprocess import (WorkingVolume, coordinate_channels, normalize_intensity, pad_to_multiple, prepare,
                               to_original_grid)
from ..data.vocab import Vocabulary, normalize_prompt
from ..model.text_encoder import TextEncoder
from ..model.textseg import ImageEncoding, TextSegNet
from ..model.uncertainty import candidate_region, scalar_uncertainty, uncertainty_map
from .completion import Growth, grow_into_host
from .guided import guided_upsample
from .postprocess import (below_floor, body_midline, drop_claimed_pieces, drop_smaller_pieces, drop_wrong_side,
                          prompt_side)

logger = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 200
MAX_PROMPTS = 64


class PromptError(ValueError):
    """A prompt that cannot be used (empty, too long, no letters)."""


def clean_prompt(prompt: str) -> str:
    """Validate and normalise one prompt. Raises PromptError with the reason."""
    if not isinstance(prompt, str):
        raise PromptError(f"prompt must be text, got {type(prompt).__name__}")
    text = normalize_prompt(prompt)
    if not text:
        raise PromptError("prompt is empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptError(f"prompt is {len(text)} characters long; at most {MAX_PROMPT_CHARS} are allowed")
    if not any(ch.isalpha() for ch in text):
        raise PromptError(f"prompt {prompt[:40]!r} has no letters")
    return text


def script_warning(prompt: str) -> str | None:
    """A note for prompts written mostly outside the Latin script: the default text encoder
    was trained on English, so such prompts are understood poorly (they are still run)."""
    letters = [ch for ch in prompt if ch.isalpha()]
    if letters and sum(ch.isascii() for ch in letters) < len(letters) / 2:
        return "prompt is mostly in a non-Latin script; the text encoder understands English prompts best"
    return None


def split_prompts(text: str, vocab: Vocabulary | None = None) -> list[str]:
    """Split a ';'-separated prompt field. Empty text means every non-composite label of
    ``vocab``. Raises PromptError."""
    parts = [p for p in (text or "").split(";") if p.strip()]
    if not parts:
        if vocab is None or not len(vocab):
            raise PromptError("prompt is empty and there is no label vocabulary to fall back on")
        return vocab.names(composite=False)
    if len(parts) > MAX_PROMPTS:
        raise PromptError(f"{len(parts)} prompts given; at most {MAX_PROMPTS} per request")
    return [clean_prompt(p) for p in parts]


@dataclass
class EncodedImage:
    """A prepared volume and its cached network encoding."""

    volume: WorkingVolume
    encoding: ImageEncoding
    shape: tuple[int, int, int]  # working-grid shape before padding
    seconds: float
    guide: torch.Tensor | None = None  # (X0, Y0, Z0) normalised input image, for the guided filter

    def nbytes(self) -> int:
        guide = self.guide.numel() * 4 if self.guide is not None else 0
        return self.encoding.nbytes() + self.volume.image.numel() * 4 + guide

    def input_spacing(self) -> tuple[float, float, float]:
        """Voxel size of the input grid along its array axes, in mm."""
        return tuple(float(v) for v in torch.linalg.norm(self.volume.original_affine[:3, :3].double(), dim=0))


@dataclass
class PromptResult:
    """One prompt's answer.

    Attributes:
        prompt: the (normalised) prompt text.
        label: the vocabulary label it names exactly, if any.
        present: False when the mask is empty (the structure is reported absent).
        mask: (X0, Y0, Z0) bool on the input grid.
        probability: (X0, Y0, Z0) float32 refined probability, or None unless requested.
        uncertainty_map: (X0, Y0, Z0) float32 voxel uncertainty, or None unless requested.
        uncertainty: scalar uncertainty in [0, 1] (disagreement + entropy in the band).
        volume_mm3: mask volume.
        seconds: time for this prompt (the image encoding is not included).
    """

    prompt: str
    label: str | None
    present: bool
    mask: np.ndarray
    uncertainty: float
    volume_mm3: float
    seconds: float
    probability: np.ndarray | None = None
    pass1_probability: np.ndarray | None = None
    uncertainty_map: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        out = {"prompt": self.prompt, "label": self.label, "present": self.present,
               "voxels": int(self.mask.sum()), "volume_mm3": round(self.volume_mm3, 1),
               "uncertainty": round(self.uncertainty, 5), "seconds": round(self.seconds, 3)}
        warning = script_warning(self.prompt)
        if warning:
            out["warning"] = warning
        if "absent_reason" in self.extra:
            out["absent_reason"] = self.extra["absent_reason"]
        return out


class Predictor:
    """Serves text prompts for volumes.

    Args:
        net: a trained TextSegNet (eval mode).
        text_encoder: the frozen encoder the net was trained with.
        vocab: the label vocabulary (to name results and for empty prompts).
        label_stats: the training labels' shape statistics per label name (checkpoint
            metadata); without them no largest-piece or volume-floor clean-up is done.
        label_thresholds: per label name, its calibrated mask threshold (else the model's).
        label_max_uncertainty: per label name, its calibrated presence cut: a mask whose
            scalar uncertainty is above it is reported absent (``calibrate``).
        label_neighbours: per enclosed label name, its hosts and competitors (checkpoint
            metadata, ``lib.data.label_neighbours``); without them no exclusivity clean-up.
        label_growth: per label name with hosts, its calibrated intensity completion
            (``lib.inference.completion``, chosen by ``calibrate``); needs ``label_neighbours``.
    """

    def __init__(self, net: TextSegNet, text_encoder: TextEncoder, vocab: Vocabulary,
                 label_stats: dict[str, LabelStats] | None = None,
                 label_thresholds: dict[str, float] | None = None,
                 label_max_uncertainty: dict[str, float] | None = None,
                 label_neighbours: dict[str, Neighbours] | None = None,
                 label_growth: dict[str, Growth] | None = None) -> None:
        self.net = net.eval()
        self.cfg = net.cfg
        self.text = text_encoder
        self.vocab = vocab
        self.label_stats = dict(label_stats or {})
        self.label_thresholds = dict(label_thresholds or {})
        for name, t in self.label_thresholds.items():
            if not 0.0 < t < 1.0:
                raise ValueError(f"threshold of {name!r} must be in (0, 1), got {t!r}")
        self.label_max_uncertainty = dict(label_max_uncertainty or {})
        for name, c in self.label_max_uncertainty.items():
            if not c > 0.0:
                raise ValueError(f"presence cut of {name!r} must be positive, got {c!r}")
        self.label_neighbours = dict(label_neighbours or {})
        self.label_growth = dict(label_growth or {})
        for name, g in self.label_growth.items():
            if not isinstance(g, Growth):
                raise ValueError(f"growth of {name!r} must be a Growth, got {g!r}")
        if text_encoder.dim != self.cfg.text_dim:
            raise ValueError(f"text encoder width {text_encoder.dim} != model text_dim {self.cfg.text_dim}")

    @torch.no_grad()
    def encode(self, image) -> EncodedImage:
        """Prepare and encode a (1, X0, Y0, Z0) MetaTensor (with affine). Cost paid once per image."""
        start = time.perf_counter()
        vol = prepare(image, self.cfg.working_spacing, self.cfg.modality)
        x, shape = self._network_input(vol)
        enc = self.net.encode_volume(x)
        guide = None
        if vol.modality in self.cfg.guided_modalities:
            values = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)
            guide = normalize_intensity(values[0], vol.modality)
        return EncodedImage(volume=vol, encoding=enc, shape=shape, seconds=time.perf_counter() - start, guide=guide)

    def _network_input(self, vol: WorkingVolume) -> tuple[torch.Tensor, tuple[int, int, int]]:
        shape = tuple(int(s) for s in vol.image.shape[1:])
        coords = coordinate_channels(shape, self.cfg.working_spacing)
        x, _ = pad_to_multiple(torch.cat([vol.image, coords]).unsqueeze(0))
        return x, shape

    @torch.no_grad()
    def predict(self, encoded: EncodedImage, prompts: list[str], probabilities: bool = False,
                uncertainty_maps: bool = False) -> list[PromptResult]:
        """Segment ``prompts`` (already cleaned) in an encoded image.

        After the two passes, masks are cleaned (see ``ModelConfig``): a prompt naming one
        side loses pieces on the other side of the midline; a known label that is one piece
        in training keeps its largest piece (both on the working grid, before resampling);
        with ``ModelConfig.exclusive_share`` set, a piece of an enclosed label's mask (a lesion,
        a cyst) that its competitors' masks claim is dropped (``_exclusive``);
        a mask below the label's volume floor is reported absent (half that floor when the
        edge of the scan cuts it, ``below_floor``); a label of the other modality (a CT organ
        in an image that looks like MR, or the reverse: training never prompts a label in the
        other modality's scans, so the network's answer there is a guess) is reported absent,
        with the reason in ``extra["absent_reason"]``. A known label's mask is its probability
        at or above the label's calibrated threshold (``label_thresholds``, from ``calibrate``),
        any other prompt's at ``ModelConfig.threshold``; a known label with a calibrated
        presence cut (``label_max_uncertainty``) is reported absent when the scalar
        uncertainty is above it; a label with a calibrated completion (``label_growth``) that
        is present gains the darker host voxels next to its mask (``_complete``, on the input
        grid, where the encoding kept the input image: a modality of
        ``ModelConfig.guided_modalities``). On a modality of
        ``ModelConfig.guided_modalities`` the probabilities reach the input grid by the
        image-guided filter (``lib.inference.guided``), elsewhere by linear interpolation.
        The reported probability map is the one after the side check, the largest piece
        and the guided filter (the completion changes the mask, not the map); the scalar
        uncertainty is the two passes' own."""
        start = time.perf_counter()
        if not prompts:
            return []
        p1, p2 = self.probabilities(encoded, prompts)
        results = self.results(encoded, prompts, p1, p2, probabilities=probabilities, uncertainty_maps=uncertainty_maps)
        per_prompt = (time.perf_counter() - start) / len(prompts)  # clean-up included
        for r in results:
            r.seconds = per_prompt
        return results

    def thresholds(self, prompts: list[str]) -> list[float]:
        """The mask threshold of each prompt: its label's calibrated one, else the model's."""
        return [self._threshold_of(self.vocab.resolve(p)) for p in prompts]

    def _threshold_of(self, entry) -> float:
        return self.label_thresholds.get(entry.name, self.cfg.threshold) if entry else self.cfg.threshold

    def results(self, encoded: EncodedImage, prompts: list[str], p1: torch.Tensor, p2: torch.Tensor,
                thresholds: list[float] | None = None, probabilities: bool = False,
                uncertainty_maps: bool = False, complete: bool = True) -> list[PromptResult]:
        """The clean-up and answers of ``predict`` from both passes' (K, X, Y, Z) working-grid
        probabilities, at the given per-prompt mask ``thresholds`` (default ``thresholds``);
        ``complete=False`` leaves out the intensity completion; ``seconds`` is left 0."""
        vol, cfg = encoded.volume, self.cfg
        entries = [self.vocab.resolve(p) for p in prompts]
        ts = [self._threshold_of(e) for e in entries] if thresholds is None else list(thresholds)
        if len(ts) != len(prompts):
            raise ValueError(f"{len(ts)} thresholds for {len(prompts)} prompts")
        scalars = scalar_uncertainty(p1, p2, cfg.alpha, cfg.tau)
        umap = to_original_grid(uncertainty_map(p1, p2, cfg.alpha), vol) if uncertainty_maps else None
        p1_orig = to_original_grid(p1, vol) if uncertainty_maps else None
        stats_of = [self.label_stats.get(e.name) if e else None for e in entries]
        p2 = self._clean(encoded, prompts, p2, ts, stats_of)
        if cfg.exclusive_share > 0 and self.label_neighbours:
            p2 = self._exclusive(encoded, entries, p2, ts)
        p2_orig = to_original_grid(p2, vol)
        if encoded.guide is not None and vol.modality in cfg.guided_modalities:
            p2_orig = guided_upsample(p2, p2_orig, vol, encoded.guide, cfg.guided_radius, cfg.guided_eps)
        results = []
        for k, (prompt, entry, stats) in enumerate(zip(prompts, entries, stats_of)):
            mask = (p2_orig[k] >= ts[k]).numpy()
            volume = float(mask.sum()) * vol.voxel_volume_mm3
            present = (volume >= max(cfg.min_volume_mm3, 1e-9) and mask.any()
                       and not below_floor(mask, volume, stats, cfg.min_volume_fraction))
            extra = {}
            if entry is not None and entry.modality != vol.modality:
                present = False
                extra["absent_reason"] = (f"'{entry.name}' is known from {entry.modality} scans only and this "
                                          f"image looks like {vol.modality}")
            cut = self.label_max_uncertainty.get(entry.name) if entry is not None else None
            if present and cut is not None and scalars[k] > cut:
                present = False
                extra["absent_reason"] = (f"the two passes disagree (uncertainty {float(scalars[k]):.3f}, above the "
                                          f"presence cut {cut:.2f} calibrated for '{entry.name}')")
            if not present:
                mask[:] = False
            results.append(PromptResult(
                prompt=prompt, label=entry.name if entry else None, present=bool(present), mask=mask,
                uncertainty=float(scalars[k]), volume_mm3=volume if present else 0.0, seconds=0.0,
                probability=p2_orig[k].numpy() if probabilities else None,
                pass1_probability=p1_orig[k].numpy() if p1_orig is not None else None,
                uncertainty_map=umap[k].numpy() if umap is not None else None, extra=extra,
            ))
        if complete and self.label_growth and encoded.guide is not None:
            self._complete(encoded, results)
        return results

    def _complete(self, encoded: EncodedImage, results: list[PromptResult]) -> None:
        """The intensity completion, in place: each present result of a label with a
        calibrated ``label_growth`` and hosts gains the darker host voxels next to its mask
        (``grow_into_host`` on the input grid, the guide image as intensities). A host's mask
        is its served mask, taken from ``results`` when a prompt names it, else computed from
        the shared image encoding (paid only when such a mask is present)."""
        todo = [r for r in results if r.present and r.label in self.label_growth
                and self.label_neighbours.get(r.label) is not None and self.label_neighbours[r.label].hosts]
        if not todo:
            return
        masks = self.host_masks(encoded, results, [r.label for r in todo])
        spacing, image = encoded.input_spacing(), encoded.guide.numpy()
        for r in todo:
            r.mask = grow_into_host(r.mask, image, self.host_mask(r.label, masks), spacing, self.label_growth[r.label])
            r.volume_mm3 = float(r.mask.sum()) * encoded.volume.voxel_volume_mm3

    def _clean(self, encoded: EncodedImage, prompts: list[str], p2: torch.Tensor, thresholds: list[float],
               stats_of: list[LabelStats | None]) -> torch.Tensor:
        """The side check and the largest piece (as ``ModelConfig`` sets them):
        (K, X, Y, Z) -> same, a new tensor when anything changes."""
        if self.cfg.side_check:
            p2 = self._side_check(encoded, prompts, p2, thresholds)
        if self.cfg.largest_piece:
            p2 = torch.stack([drop_smaller_pieces(p, t) if is_one_piece(st) else p
                              for p, st, t in zip(p2, stats_of, thresholds)])
        return p2

    def _exclusive(self, encoded: EncodedImage, entries: list, p2: torch.Tensor,
                   thresholds: list[float]) -> torch.Tensor:
        """The exclusivity clean-up: for each prompt naming an enclosed label whose mask is
        not empty, drop the pieces of which at least ``exclusive_share`` lies in the union of
        its competitors' masks (``drop_claimed_pieces``). A competitor's mask is its cleaned
        mask at its own threshold, taken from this request when one of the prompts names it,
        else computed from the shared image encoding (extra prompts, paid only when a lesion
        mask is not empty). (K, X, Y, Z) -> same, a new tensor when anything changes."""
        modality = encoded.volume.modality
        todo = [k for k, e in enumerate(entries)
                if e is not None and e.name in self.label_neighbours and e.modality == modality
                and self.label_neighbours[e.name].competitors and bool((p2[k] >= thresholds[k]).any())]
        if not todo:
            return p2
        masks = {e.name: (p2[k] >= thresholds[k]).numpy() for k, e in enumerate(entries) if e is not None}
        wanted = sorted({c for k in todo for c in self.label_neighbours[entries[k].name].competitors} - set(masks))
        if wanted:
            own = [self.vocab.resolve(c) for c in wanted]
            ts = [self._threshold_of(e) for e in own]
            _, cp2 = self.probabilities(encoded, wanted)
            cp2 = self._clean(encoded, wanted, cp2, ts, [self.label_stats.get(c) for c in wanted])
            masks.update({c: (p >= t).numpy() for c, p, t in zip(wanted, cp2, ts)})
        out = list(p2)
        for k in todo:
            competitors = self.label_neighbours[entries[k].name].competitors
            claimed = np.logical_or.reduce([masks[c] for c in competitors])
            out[k] = drop_claimed_pieces(p2[k], thresholds[k], claimed, self.cfg.exclusive_share)
        return torch.stack(out)

    def host_masks(self, encoded: EncodedImage, results: list[PromptResult], labels: list[str]) -> dict[str, np.ndarray]:
        """Served (X0, Y0, Z0) masks by label name: those of ``results``, plus the hosts of
        ``labels`` (labels with neighbours) that ``results`` lacks, predicted from the
        encoding without the completion."""
        masks = {r.label: r.mask for r in results if r.label is not None}
        wanted = sorted({h for label in labels for h in self.label_neighbours[label].hosts} - set(masks))
        if wanted:
            hp1, hp2 = self.probabilities(encoded, wanted)
            masks.update({r.label: r.mask for r in self.results(encoded, wanted, hp1, hp2, complete=False)})
        return masks

    def host_mask(self, label: str, masks: dict[str, np.ndarray]) -> np.ndarray:
        """The union of ``label``'s hosts' (X0, Y0, Z0) masks, from ``masks`` (label -> mask),
        which must hold every host. Raises KeyError for a label without hosts."""
        return np.logical_or.reduce([masks[h] for h in self.label_neighbours[label].hosts])

    def _side_check(self, encoded: EncodedImage, prompts: list[str], p2: torch.Tensor,
                    thresholds: list[float]) -> torch.Tensor:
        """Drop wrong-side pieces for prompts naming one side: (K, X, Y, Z) -> same."""
        sides = [prompt_side(p) for p in prompts]
        if not any(sides):
            return p2
        midline = body_midline(encoded.volume.image[0])
        return torch.stack([drop_wrong_side(p, side, midline, t) if side else p
                            for p, side, t in zip(p2, sides, thresholds)])

    @torch.no_grad()
    def probabilities(self, encoded: EncodedImage, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Both passes on the working grid: (p1, p2), each (K, X, Y, Z) float32 for K
        prompts; pass 2 runs only inside pass 1's candidate box, elsewhere p2 == p1."""
        enc = encoded.encoding
        emb = self.net.head.embed_prompts(self.text.encode(prompts))
        logits2 = self.net.pass1(enc, emb)["logits2"]  # (K, x2, y2, z2)
        X, Y, Z = encoded.shape
        p1_all, p2_all = [], []
        for k in range(len(prompts)):
            logit1 = self.net.full_logits(enc, logits2[k : k + 1], emb[k : k + 1])  # (1, X, Y, Z)
            p1 = torch.sigmoid(logit1)
            logit2 = logit1.clone()
            box = self._candidate_box(p1[0])
            if box is not None:
                sl = (slice(None),) + box
                logit2[sl] = self.net.refiner(enc.g[(slice(None), slice(None)) + box], logit1[sl], emb[k : k + 1])
            p1_all.append(p1[0, :X, :Y, :Z])
            p2_all.append(torch.sigmoid(logit2[0, :X, :Y, :Z]))
        return torch.stack(p1_all), torch.stack(p2_all)

    def _candidate_box(self, p1: torch.Tensor) -> tuple[slice, slice, slice] | None:
        """Bounding box (on the padded working grid, multiples of 2) of pass 1's candidate
        region plus a margin; None when pass 1 finds nothing."""
        return bounding_box(candidate_region(p1, p1, self.cfg.tau).cpu().numpy(), self.cfg.crop_margin)

    def segment(self, image, prompts: list[str], **kwargs) -> tuple[EncodedImage, list[PromptResult]]:
        """Encode and predict in one call."""
        encoded = self.encode(image)
        return encoded, self.predict(encoded, prompts, **kwargs)
