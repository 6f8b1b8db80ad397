"""Per-label mask thresholds chosen on a labelled validation pool (the ``calibrate`` verb).

A small structure the model finds with low confidence (a liver lesion whose probability
peaks at 0.3) is reported absent at the model's threshold of 0.5, although its voxels are
the most probable ones in the scan. Per label, the threshold that gives the best mean Dice
over the pool's scans that hold it is kept, provided it makes no more of the pool's
absent-structure prompts fire than the model's threshold does and gains at least
``min_gain`` Dice; otherwise the model's threshold stays. The thresholds are stored in the
checkpoint's metadata (``label_thresholds``) with the pool's fingerprints, so that
``evaluate`` flags a score computed on the calibration scans.

At the kept threshold, each label may also get a **presence cut** on the scalar uncertainty
(the two passes' disagreement, ``lib.model.uncertainty``): a mask whose uncertainty is above
the cut is reported absent. A false lesion mask is usually one the two passes disagree on. The
cut is chosen to maximise the label's mean per-scan score over the pool (Dice where the scan
holds it; 1 for staying empty, 0 for firing where it does not), and kept only if it adds at
least ``min_gain`` to that score over no cut (``label_max_uncertainty`` in the metadata).

Last, on request (``growth``; off by default: on held-out scans it fell just short of the bar
set for it, docs/benchmarks.md), at its kept threshold and cut, each label with hosts (a
lesion, a cyst) may get an **intensity completion** (``lib.inference.completion``): every
setting of a small grid is scored on the pool's scans that hold the label, and the best is
kept only if it adds at least ``min_gain`` to the mean Dice (``label_growth`` in the
metadata). It changes no presence, so it is scored on Dice alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.preprocess import load_volume, volume_fingerprint
from ..data.studies_index import labelled_pairs
from ..data.vocab import Vocabulary
from .completion import K_GRID, RADIUS_GRID_MM, Growth, choose_growth, grow, growth_to_json, host_view
from .predictor import Predictor

logger = logging.getLogger(__name__)

THRESHOLD_GRID = (0.1, 0.2, 0.3, 0.4, 0.5)  # above 0.5 organ Dice moved by 0.004 at most (docs/method.md)
MIN_CASES = 3  # a label held by fewer of the pool's scans keeps the model's threshold
MIN_GAIN = 0.01  # mean Dice a new threshold must add over the model's
CUT_GRID = tuple(round(0.1 + 0.05 * i, 2) for i in range(11))  # 0.10 ... 0.60: the scalar uncertainty's range


Answer = tuple[bool, bool, float, float | None]  # (present, predicted_present, dice, uncertainty)


@dataclass
class LabelCurve:
    """One label's results over a pool at each threshold of a grid.

    Attributes:
        answers: threshold -> each scan's ``(present, predicted_present, dice, uncertainty)``
            (``dice`` 0 where the scan lacks the label, ``uncertainty`` None where the mask is
            empty); ``dice``, ``false_positives`` and ``absent`` are views of it.
    """

    answers: dict[float, list[Answer]] = field(default_factory=dict)

    def add(self, threshold: float, present: bool, predicted_present: bool, dice: float | None = None,
            uncertainty: float | None = None) -> None:
        """One scan's answer at ``threshold``; ``dice`` is required when ``present``, and
        ``uncertainty`` (the scalar one) is kept for the presence cut."""
        if present and dice is None:
            raise ValueError("a scan that holds the label needs its Dice")
        self.answers.setdefault(threshold, []).append(
            (present, predicted_present, float(dice or 0.0), None if uncertainty is None else float(uncertainty)))

    @property
    def dice(self) -> dict[float, list[float]]:
        """threshold -> the Dice of each scan that holds the label (0 when reported absent)."""
        return {t: [a[2] for a in rows if a[0]] for t, rows in self.answers.items()}

    @property
    def false_positives(self) -> dict[float, int]:
        """threshold -> how many scans without the label report it present."""
        return {t: sum(not a[0] and a[1] for a in rows) for t, rows in self.answers.items()}

    @property
    def absent(self) -> dict[float, int]:
        """threshold -> how many scans lack the label."""
        return {t: sum(not a[0] for a in rows) for t, rows in self.answers.items()}

    def mean_dice(self, threshold: float) -> float | None:
        values = self.dice.get(threshold) or []
        return float(np.mean(values)) if values else None


def choose_threshold(curve: LabelCurve, base: float, min_cases: int = MIN_CASES,
                     min_gain: float = MIN_GAIN) -> float:
    """The threshold to keep for one label (pure): the grid value with the best mean Dice
    among those with no more false positives than ``base``, if it beats ``base`` by at least
    ``min_gain`` and the label is held by at least ``min_cases`` scans; else ``base``. Ties
    go to the value nearest ``base``. Raises ValueError when ``base`` is not in the curve."""
    if base not in curve.dice:
        raise ValueError(f"the model's threshold {base} is not among the calibration grid {sorted(curve.dice)}")
    base_dice = curve.mean_dice(base)
    if base_dice is None or len(curve.dice[base]) < min_cases:
        return base
    fps = curve.false_positives
    allowed = [t for t in fps if fps[t] <= fps[base]]
    best = max(sorted(allowed, key=lambda t: abs(t - base)), key=lambda t: curve.mean_dice(t))
    return best if curve.mean_dice(best) >= base_dice + min_gain else base


def cut_score(answers: list[Answer], cut: float | None) -> float:
    """Mean per-scan score of one label's ``LabelCurve.answers`` at one threshold when masks
    with scalar uncertainty above ``cut`` (None: no cut) are reported absent: a scan holding
    the label scores its Dice (0 once cut), one lacking it 1 if the answer is empty, else 0.
    Raises ValueError for an empty list or a predicted mask without its uncertainty."""
    if not answers:
        raise ValueError("no answers to score")
    total = 0.0
    for present, predicted, dice, uncertainty in answers:
        if predicted and cut is not None:
            if uncertainty is None:
                raise ValueError("a predicted mask without its uncertainty cannot be cut")
            predicted = uncertainty <= cut
        total += (dice if predicted else 0.0) if present else float(not predicted)
    return total / len(answers)


def choose_cut(curve: LabelCurve, threshold: float, grid: tuple[float, ...] = CUT_GRID,
               min_cases: int = MIN_CASES, min_gain: float = MIN_GAIN) -> float | None:
    """The presence cut to keep for one label at its mask ``threshold`` (pure): the value of
    ``grid`` with the best ``cut_score``, ties to the larger (fewer masks dropped), if it
    beats no cut by at least ``min_gain`` and the pool holds the label in at least
    ``min_cases`` scans and lacks it in as many; else None (no cut)."""
    answers = curve.answers.get(threshold) or []
    held = sum(a[0] for a in answers)
    if not grid or held < min_cases or len(answers) - held < min_cases:
        return None
    best = max(sorted(grid, reverse=True), key=lambda c: cut_score(answers, c))
    return best if cut_score(answers, best) >= cut_score(answers, None) + min_gain else None


def dice_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean volumes, as ``evaluate`` scores it (1 when both are empty, 0 when
    one is); plain counting, since the surface distance ``evaluate`` adds is not needed."""
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else float(2 * int(np.logical_and(pred, truth).sum()) / total)


def threshold_curves(predictor: Predictor, pairs: list[tuple[str, str, str]], vocab: Vocabulary,
                     grid: tuple[float, ...] = THRESHOLD_GRID, progress: bool = True) -> dict[str, LabelCurve]:
    """Each label's ``LabelCurve`` over labelled ``(id, image, label)`` pairs: every label of a
    scan's modality prompted by its canonical name, both passes run once per scan and the
    clean-up repeated at each threshold of ``grid``."""
    curves: dict[str, LabelCurve] = {}
    for _, image_path, label_path in tqdm(pairs, desc="calibrate", disable=not progress):
        img = load_volume(image_path)
        lab = load_volume(label_path, label=True)[0].numpy().round().astype(np.int32)
        encoded = predictor.encode(img)
        entries = [e for e in vocab if e.modality == encoded.volume.modality]
        prompts = [e.name for e in entries]
        truths = [e.mask(lab) for e in entries]
        p1, p2 = predictor.probabilities(encoded, prompts)
        peaks = p2.flatten(1).max(1).values  # (K,)
        for t in grid:
            # a prompt whose probability stays below t everywhere is absent at t: no clean-up to run
            run = [k for k in range(len(prompts)) if peaks[k] >= t]
            answers = dict(zip(run, predictor.results(encoded, [prompts[k] for k in run], p1[run], p2[run],
                                                      thresholds=[t] * len(run)) if run else []))
            for k, (e, truth) in enumerate(zip(entries, truths)):
                present, r = bool(truth.any()), answers.get(k)
                found = r is not None and r.present
                curves.setdefault(e.name, LabelCurve()).add(
                    t, present, found, (dice_score(r.mask, truth) if r is not None else 0.0) if present else None,
                    uncertainty=r.uncertainty if found else None)
    return curves


def growth_curves(predictor: Predictor, pairs: list[tuple[str, str, str]], vocab: Vocabulary,
                  settings: list[Growth], progress: bool = True) -> dict[str, tuple[list[float], dict[Growth, list[float]]]]:
    """For each label with hosts, over the labelled ``(id, image, label)`` pairs that hold
    it: the Dice of its served mask (the predictor's thresholds and cuts, no completion) and
    the Dice after the completion at each of ``settings``, scan by scan. Only scans whose
    encoding keeps the input-grid image (``EncodedImage.guide``: a modality with the guided
    filter) count, as the completion needs it."""
    out: dict[str, tuple[list[float], dict[Growth, list[float]]]] = {}
    saved, predictor.label_growth = predictor.label_growth, {}
    try:
        for _, image_path, label_path in tqdm(pairs, desc="completion", disable=not progress):
            img = load_volume(image_path)
            lab = load_volume(label_path, label=True)[0].numpy().round().astype(np.int32)
            encoded = predictor.encode(img)
            modality = encoded.volume.modality
            if encoded.guide is None:
                continue
            entries = [e for e in vocab if e.modality == modality and e.name in predictor.label_neighbours
                       and predictor.label_neighbours[e.name].hosts]
            truths = [e.mask(lab) for e in entries]
            entries = [e for e, t in zip(entries, truths) if t.any()]
            truths = [t for t in truths if t.any()]
            if not entries:
                continue
            results = predictor.predict(encoded, [e.name for e in entries])
            masks = predictor.host_masks(encoded, results, [e.name for e in entries])
            spacing, image = encoded.input_spacing(), encoded.guide.numpy()
            for e, r, truth in zip(entries, results, truths):
                base, scores = out.setdefault(e.name, ([], {g: [] for g in settings}))
                base.append(dice_score(r.mask, truth))
                # the host's statistics once per scan, each setting's growth from them
                view = host_view(r.mask, image, predictor.host_mask(e.name, masks), spacing) if r.present else None
                for g in settings:
                    scores[g].append(dice_score(grow(view, g), truth) if view is not None else base[-1])
    finally:
        predictor.label_growth = saved
    return out


def calibrate_checkpoint(model: str | Path, studies: str | Path, out: str | Path,
                         grid: tuple[float, ...] = THRESHOLD_GRID, min_cases: int = MIN_CASES,
                         min_gain: float = MIN_GAIN, cut_grid: tuple[float, ...] = CUT_GRID,
                         growth: bool = False, progress: bool = True) -> dict:
    """The ``calibrate`` verb: choose each label's mask threshold (and presence cut, from
    ``cut_grid``; an empty grid chooses none; and, with ``growth``, its intensity completion)
    on the labelled scans of
    ``studies`` (a validation pool: never the training or the test scans) and write the
    checkpoint ``model`` with them to ``out`` (weights unchanged; ``out`` may be ``model``).
    Returns the record stored in the metadata under ``calibration``. Raises ValueError when
    the pool holds no labelled scan or one the model was trained on, or a cut is outside (0, 1]."""
    from ..evaluation import trained_cases
    from ..model.checkpoint import save_checkpoint
    from .service import load_predictor

    if any(not 0.0 < c <= 1.0 for c in cut_grid):
        raise ValueError(f"presence cuts must be in (0, 1], got {list(cut_grid)}")
    started = time.perf_counter()
    predictor, meta = load_predictor(model)
    base = predictor.cfg.threshold
    if base not in grid:
        grid = tuple(sorted({*grid, base}))
    pairs = labelled_pairs(studies)
    if not pairs:
        raise ValueError(f"no labelled images to calibrate on in {studies}")
    overlap = trained_cases(meta, pairs)
    if overlap:
        raise ValueError(f"{len(overlap)} scans of {studies} were used to train {model} ({overlap[:3]}...): "
                         "calibrate on a validation pool")
    predictor.label_thresholds, predictor.label_max_uncertainty = {}, {}  # a recalibration starts afresh
    predictor.label_growth = {}
    curves = threshold_curves(predictor, pairs, predictor.vocab, grid, progress=progress)
    per_label, thresholds, cuts = {}, {}, {}
    for name, curve in sorted(curves.items()):
        t = choose_threshold(curve, base, min_cases, min_gain)
        cut = choose_cut(curve, t, cut_grid, min_cases, min_gain)
        answers = curve.answers[t]
        per_label[name] = {"threshold": t, "cases": len(curve.dice[base]), "absent_cases": curve.absent[base],
                           "dice_at_model_threshold": curve.mean_dice(base), "dice": curve.mean_dice(t),
                           "false_positives_at_model_threshold": curve.false_positives[base],
                           "false_positives": curve.false_positives[t],
                           "curve": {str(g): {"dice": curve.mean_dice(g), "false_positives": curve.false_positives[g]}
                                     for g in grid},
                           "max_uncertainty": cut, "score_without_cut": cut_score(answers, None),
                           "score_with_cut": cut_score(answers, cut),
                           "found_uncertainty": sorted(round(u, 4) for p, f, _, u in answers if p and f),
                           "false_positive_uncertainty": sorted(round(u, 4) for p, f, _, u in answers if f and not p)}
        if t != base:
            thresholds[name] = t
            logger.info("%s: threshold %.2f -> %.2f (mean Dice %.3f -> %.3f over %d scans, false positives %d/%d)",
                        name, base, t, curve.mean_dice(base), curve.mean_dice(t), len(curve.dice[base]),
                        curve.false_positives[t], curve.absent[base])
        if cut is not None:
            cuts[name] = cut
            logger.info("%s: presence cut at uncertainty %.2f (score %.3f -> %.3f over %d scans)", name, cut,
                        cut_score(answers, None), cut_score(answers, cut), len(answers))
    growths: dict[str, Growth] = {}
    if growth and predictor.label_neighbours:
        predictor.label_thresholds, predictor.label_max_uncertainty = thresholds, cuts
        settings = [Growth(k, r) for r in RADIUS_GRID_MM for k in K_GRID]
        for name, (base_dice, scores) in sorted(growth_curves(predictor, pairs, predictor.vocab, settings,
                                                              progress).items()):
            chosen = choose_growth(base_dice, scores, min_cases, min_gain)
            per_label.setdefault(name, {})["growth"] = {
                "chosen": chosen.to_json() if chosen else None, "cases": len(base_dice),
                "dice_without": float(np.mean(base_dice)),
                "curve": [{**g.to_json(), "dice": float(np.mean(v))} for g, v in scores.items()]}
            if chosen is not None:
                growths[name] = chosen
                logger.info("%s: completion k %.1f within %.0f mm (mean Dice %.3f -> %.3f over %d scans)", name,
                            chosen.k, chosen.radius_mm, np.mean(base_dice), np.mean(scores[chosen]), len(base_dice))
    elif growth:
        logger.warning("%s has no label neighbours (run label-stats): no intensity completion calibrated", model)
    record = {"studies": str(studies), "cases": [p[0] for p in pairs],
              "fingerprints": sorted({volume_fingerprint(load_volume(p[1])) for p in pairs}),
              "grid": list(grid), "cut_grid": list(cut_grid), "model_threshold": base, "min_cases": min_cases,
              "min_gain": min_gain, "per_label": per_label, "seconds": round(time.perf_counter() - started, 1)}
    save_checkpoint(out, predictor.net, predictor.vocab,
                    meta={**meta, "label_thresholds": thresholds, "label_max_uncertainty": cuts,
                          "label_growth": growth_to_json(growths), "calibration": record})
    logger.info("%d of %d labels given their own threshold, %d a presence cut, %d a completion; wrote %s",
                len(thresholds), len(per_label), len(cuts), len(growths), out)
    return record


def inherit_thresholds(checkpoint: str | Path, source_meta: dict) -> bool:
    """Give a checkpoint fine-tuned from a calibrated model that model's label thresholds,
    presence cuts and completions (``source_meta``: its metadata), marked ``calibration["inherited"]``: the
    online trainer starts from the served weights, so their calibration stays a better guess
    than none until the new weights are calibrated themselves. Returns whether there was any."""
    from ..model.checkpoint import load_checkpoint, save_checkpoint

    thresholds = source_meta.get("label_thresholds") or {}
    cuts = source_meta.get("label_max_uncertainty") or {}
    growths = source_meta.get("label_growth") or {}
    if not thresholds and not cuts and not growths:
        return False
    net, vocab, meta = load_checkpoint(checkpoint)
    record = {**(source_meta.get("calibration") or {}), "inherited": True}
    save_checkpoint(checkpoint, net, vocab, meta={**meta, "label_thresholds": dict(thresholds),
                                                  "label_max_uncertainty": dict(cuts), "label_growth": dict(growths),
                                                  "calibration": record})
    return True
