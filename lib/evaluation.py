"""Evaluation: per-prompt Dice and NSD (MONAI metrics, 2 mm tolerance) on the input grid,
absent-structure false positives, and held-out paraphrases against canonical names."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_dice, compute_surface_dice
from tqdm import tqdm

from .data.boxes import bounding_box
from .data.preprocess import load_volume, volume_fingerprint
from .data.studies_index import labelled_pairs
from .data.vocab import Vocabulary
from .inference.predictor import Predictor
from .lesion_detection import case_lesion_rows, detection_markdown, detection_summary

logger = logging.getLogger(__name__)

NSD_TOLERANCE_MM = 2.0
LESION_LABELS = ("liver lesion", "kidney cyst")


def dice_nsd(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float],
             tolerance: float = NSD_TOLERANCE_MM) -> tuple[float, float]:
    """Dice and normalised surface Dice of two boolean volumes, computed by MONAI on the
    bounding box of their union (identical result, much faster). Empty-vs-empty gives 1."""
    if not pred.any() and not truth.any():
        return 1.0, 1.0
    if not pred.any() or not truth.any():
        return 0.0, 0.0
    box = bounding_box(pred | truth, 3)
    p = torch.as_tensor(pred[box])[None, None].float()
    t = torch.as_tensor(truth[box])[None, None].float()
    p2, t2 = torch.cat([1 - p, p], 1), torch.cat([1 - t, t], 1)
    dice = float(compute_dice(p2, t2, include_background=False)[0, 0])
    nsd = float(compute_surface_dice(p2, t2, class_thresholds=[tolerance], include_background=False,
                                     spacing=list(spacing))[0, 0])
    return dice, nsd


def evaluate_pairs(predictor: Predictor, pairs: list[tuple[str, str, str]], vocab: Vocabulary,
                   progress: bool = True, keep_masks: int = 0, paraphrases: bool = True) -> dict:
    """Evaluate labelled volumes.

    For each volume, every label of its modality is prompted by its canonical name; a
    present label also by each held-out paraphrase (``eval_synonyms``), an absent one
    counts as a false positive when the model reports it present. ``paraphrases=False``
    prompts canonical names only.

    Returns a dict with ``rows`` (one per case and prompt), ``lesions`` (the canonical
    prompts of ``LESION_LABELS`` scored lesion by lesion: ``lesion_detection.lesion_rows``'
    rows with case and label, and one row per case and label with its stray pieces),
    ``summary`` (with ``lesion_detection``, the lesions pooled by label and size band) and
    ``cases`` (the first ``keep_masks`` cases' image/label/predictions, for overlays).
    """
    rows, kept, lesions = [], [], []
    for case_id, image_path, label_path in tqdm(pairs, desc="evaluate", disable=not progress):
        img = load_volume(image_path)
        lab = load_volume(label_path, label=True)[0].numpy().round().astype(np.int32)
        spacing = tuple(float(s) for s in np.sqrt((np.asarray(img.affine)[:3, :3] ** 2).sum(0)))
        encoded = predictor.encode(img)
        entries = [e for e in vocab if e.modality == encoded.volume.modality]
        prompts, meta = [], []
        for e in entries:
            present = bool(e.mask(lab).any())
            extra = [(s, "paraphrase") for s in e.eval_synonyms] if present and paraphrases else []
            for p, kind in [(e.name, "canonical")] + extra:
                prompts.append(p)
                meta.append((e, present, kind))
        results = predictor.predict(encoded, prompts)
        for r, (e, present, kind) in zip(results, meta):
            row = {"case": case_id, "label": e.name, "prompt": r.prompt, "kind": kind, "present": present,
                   "predicted_present": r.present, "uncertainty": r.uncertainty, "composite": e.composite}
            lesion = kind == "canonical" and e.name in LESION_LABELS
            truth = e.mask(lab) if present or lesion else None  # one full-size mask at a time
            if present:
                row["dice"], row["nsd"] = dice_nsd(r.mask, truth, spacing)
            rows.append(row)
            if lesion:
                lesions += case_lesion_rows(case_id, e.name, r.mask, truth, spacing)
        if len(kept) < keep_masks:
            kept.append({"case": case_id, "image": img[0].numpy(), "label": lab, "vocab": vocab,
                         "pred": {r.prompt: r.mask for r, (e, _, k) in zip(results, meta) if k == "canonical" and r.present}})
    return {"rows": rows, "lesions": lesions, "summary": summarize(rows, lesions), "cases": kept}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarize(rows: list[dict], lesion_rows: list[dict] | None = None) -> dict:
    """Aggregate evaluation rows: per-prompt means, organ/lesion means, absent FP rate (and
    which absent prompts got a mask, with their scalar uncertainty where the rows have one),
    paraphrase-versus-canonical Dice; with ``lesion_rows`` (``case_lesion_rows``), also their
    ``detection_summary`` under "lesion_detection"."""
    canon = [r for r in rows if r["kind"] == "canonical" and r["present"]]
    per_prompt = {}
    for name in sorted({r["label"] for r in canon}):
        sel = [r for r in canon if r["label"] == name]
        per_prompt[name] = {"dice": _mean(r["dice"] for r in sel), "nsd": _mean(r["nsd"] for r in sel), "n": len(sel)}
    single = {k: v for k, v in per_prompt.items() if not any(r["composite"] for r in canon if r["label"] == k)}
    organs = {k: v for k, v in single.items() if k not in LESION_LABELS}
    lesions = {k: v for k, v in single.items() if k in LESION_LABELS}
    absent = [r for r in rows if not r["present"]]
    para = [r for r in rows if r["kind"] == "paraphrase"]
    canon_by_case = {(r["case"], r["label"]): r["dice"] for r in canon}
    gaps = [canon_by_case[(r["case"], r["label"])] - r["dice"] for r in para]
    summary = {
        "mean_dice": _mean(v["dice"] for v in organs.values()),
        "mean_nsd": _mean(v["nsd"] for v in organs.values()),
        "lesion_dice": _mean(v["dice"] for v in lesions.values()),
        "lesion_nsd": _mean(v["nsd"] for v in lesions.values()),
        "absent_prompts": len(absent),
        "absent_fp_rate": (sum(r["predicted_present"] for r in absent) / len(absent)) if absent else None,
        "absent_firings": [{"case": r["case"], "prompt": r["prompt"], "uncertainty": r.get("uncertainty")}
                           for r in absent if r["predicted_present"]],
        "paraphrase_dice": _mean(r["dice"] for r in para),
        "canonical_dice_same_cases": _mean(canon_by_case[(r["case"], r["label"])] for r in para),
        "paraphrase_gap": _mean(gaps),
        "per_prompt": per_prompt,
        "n_cases": len({r["case"] for r in rows}),
    }
    if lesion_rows is not None:
        summary["lesion_detection"] = detection_summary(lesion_rows)
    return summary


def markdown_table(summary: dict) -> str:
    lines = ["| structure | Dice | NSD (2 mm) | n |", "|---|---|---|---|"]
    for name, v in summary["per_prompt"].items():
        lines.append(f"| {name} | {v['dice']:.3f} | {v['nsd']:.3f} | {v['n']} |")
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    lines += ["", f"- mean organ Dice {fmt(summary['mean_dice'])}, NSD {fmt(summary['mean_nsd'])}",
              f"- lesion Dice {fmt(summary['lesion_dice'])}, NSD {fmt(summary['lesion_nsd'])}",
              f"- absent-prompt false-positive rate {fmt(summary['absent_fp_rate'])} over {summary['absent_prompts']} prompts",
              f"- held-out paraphrases: Dice {fmt(summary['paraphrase_dice'])} vs canonical "
              f"{fmt(summary['canonical_dice_same_cases'])} on the same cases (gap {fmt(summary['paraphrase_gap'])})"]
    return "\n".join(lines) + "\n" + detection_markdown(summary.get("lesion_detection") or {})


def trained_cases(meta: dict, pairs: list[tuple[str, str, str]]) -> list[str]:
    """Ids of the (id, image, label) ``pairs`` whose image the checkpoint (its ``meta``) was
    trained on. By content (``train_fingerprints``) when the checkpoint lists them: files
    of different phantom pools share names. Otherwise by id, as older checkpoints allow."""
    fingerprints = set(meta.get("train_fingerprints") or [])
    if fingerprints:
        return sorted(cid for cid, image, _ in pairs if volume_fingerprint(load_volume(image)) in fingerprints)
    logger.info("checkpoint lists no training fingerprints: matching training cases by id")
    return sorted(set(meta.get("train_cases", [])).intersection(p[0] for p in pairs))


def calibration_cases(meta: dict, pairs: list[tuple[str, str, str]]) -> list[str]:
    """Ids of the ``pairs`` whose image chose the checkpoint's label thresholds (by content,
    ``meta["calibration"]["fingerprints"]``, see ``lib.inference.calibration``) when it chose
    any threshold or presence cut."""
    fingerprints = set((meta.get("calibration") or {}).get("fingerprints") or [])
    if not fingerprints or not (meta.get("label_thresholds") or meta.get("label_max_uncertainty")
                                or meta.get("label_growth")):
        return []
    return sorted(cid for cid, image, _ in pairs if volume_fingerprint(load_volume(image)) in fingerprints)


def evaluate_studies(model: str | Path, studies: str | Path, out: Path, ids: list[str] | None = None,
                     overlays: bool = True, cleanup: bool = True, guided: bool = True,
                     exclusive: float | None = None, growth: bool = True) -> dict:
    """The ``evaluate`` CLI verb: writes ``out`` (JSON), ``out.md`` and overlay PNGs.
    ``cleanup=False`` scores the raw two-pass masks (no side check, largest piece or
    volume floor), to measure what the clean-up adds; ``guided=False`` interpolates the
    probabilities onto the input grid without the guided filter, to measure what it adds;
    ``exclusive`` sets ``ModelConfig.exclusive_share`` (the exclusivity clean-up; 0: off),
    else the checkpoint's own is kept; ``growth=False`` leaves out the calibrated intensity
    completion (as does ``cleanup=False``)."""
    from dataclasses import replace

    from .data.overlay import render_prediction_overlay
    from .inference.postprocess import CLEANUP_OFF
    from .inference.service import load_predictor, set_exclusive

    predictor, meta = load_predictor(model)
    if not cleanup:
        predictor.cfg = replace(predictor.cfg, **CLEANUP_OFF)
    if not cleanup or not growth:
        predictor.label_growth = {}
    if not guided:
        predictor.cfg = replace(predictor.cfg, guided_modalities=())
    if exclusive is not None:
        set_exclusive(predictor, exclusive, model)
    pairs = [p for p in labelled_pairs(studies) if not ids or p[0] in ids]
    if not pairs:
        raise ValueError(f"no labelled images to evaluate in {studies}")
    overlap = trained_cases(meta, pairs)
    if overlap:
        logger.warning("%d evaluated cases were used for training (%s...): not a test score", len(overlap), overlap[:3])
    calibrated_on = calibration_cases(meta, pairs)
    if calibrated_on:
        logger.warning("%d evaluated cases chose the model's calibration (%s...): not a test score",
                       len(calibrated_on), calibrated_on[:3])
    vocab = Vocabulary.merge([predictor.vocab, Vocabulary.load(studies)]) if (Path(studies) / "labels.json").exists() else predictor.vocab
    result = evaluate_pairs(predictor, pairs, vocab, keep_masks=3 if overlays else 0)
    report = {"model": str(model), "studies": str(studies), "cleanup": cleanup,
              "exclusive_share": predictor.cfg.exclusive_share,
              "guided_modalities": list(predictor.cfg.guided_modalities), "trained_on_evaluated_cases": overlap,
              "calibrated_on_evaluated_cases": calibrated_on, "label_thresholds": predictor.label_thresholds,
              "label_max_uncertainty": predictor.label_max_uncertainty,
              "label_growth": {k: v.to_json() for k, v in predictor.label_growth.items()},
              "summary": result["summary"], "rows": result["rows"], "lesions": result["lesions"]}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown_table(result["summary"]))
    for case in result["cases"]:
        render_prediction_overlay(case, out.parent / f"{out.stem}_{case['case']}.png")
    return report
