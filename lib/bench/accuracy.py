"""bench-accuracy: textseg against a closed-set SegResNet on held-out phantoms, same data
and time budget for both."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from ..config import Config
from ..data.phantoms import write_phantoms
from ..data.studies_index import labelled_pairs
from ..data.vocab import Vocabulary
from ..evaluation import evaluate_pairs, markdown_table, trained_cases
from ..host import host_info
from ..inference.service import load_predictor
from ..training.data import load_cases
from ..training.run import train_from_studies
from .segresnet import evaluate_segresnet, train_segresnet

logger = logging.getLogger(__name__)

TRAIN_SEED, TEST_SEED = 1000, 2000
ISSUE_BUDGET_MINUTES = 45  # the training budget the accuracy targets are stated for


def ensure_phantoms(folder: Path, count: int, seed: int) -> None:
    """Write the pool unless a complete one is there (same seed, same bytes)."""
    if len(labelled_pairs(folder) if folder.exists() else []) >= count:
        return
    folder.mkdir(parents=True, exist_ok=True)
    write_phantoms(folder, count, seed)


def run_bench_accuracy(out: Path, work: Path, n_train: int, n_test: int, minutes: float, cfg: Config,
                       baseline_minutes: float | None = None, threads: int = 2,
                       textseg_model: Path | None = None) -> dict:
    """Train textseg and SegResNet for ``minutes`` each on ``n_train`` phantoms; evaluate both
    on ``n_test`` held-out phantoms (different pool seed); write JSON + Markdown.

    With ``textseg_model``, that checkpoint is evaluated instead of training a new one; its
    metadata must show it was trained only on this training pool (plus, optionally, the
    MRI sample), and SegResNet then gets the same wall-clock budget and training precision
    it used."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    train_dir, test_dir = work / "train", work / "test"
    ensure_phantoms(train_dir, n_train, TRAIN_SEED)
    ensure_phantoms(test_dir, n_test, TEST_SEED)
    test_pairs = labelled_pairs(test_dir)[:n_test]
    vocab = Vocabulary.load(train_dir)

    pool = {p[0] for p in labelled_pairs(train_dir)[:n_train]}
    if textseg_model is not None:
        ckpt = Path(textseg_model)
        predictor, meta = load_predictor(ckpt)
        foreign = set(meta.get("train_cases", [])) - pool - {"mni152_t1"}
        if foreign or not meta.get("train_cases"):
            raise ValueError(f"{ckpt} was not trained on this pool only (other cases: {sorted(foreign)[:5]})")
        # by content (both pools name their files phantom_0000...), for checkpoints that can tell
        seen = trained_cases(meta, test_pairs) if meta.get("train_fingerprints") else []
        if seen:
            raise ValueError(f"{ckpt} was trained on test phantoms {seen[:5]}")
        train_summary = meta
        minutes = round(meta["seconds"] / 60, 1)
        if minutes > ISSUE_BUDGET_MINUTES:
            logger.warning("%s trained for %.1f min, beyond the benchmark's %d-minute budget: SegResNet gets "
                           "the same time, and the figures do not count against the budgeted targets",
                           ckpt, minutes, ISSUE_BUDGET_MINUTES)
        precision = meta.get("precision", "fp32")  # checkpoints before the setting trained in float32
    else:
        ckpt = work / "textseg.pt"
        cfg = cfg.override(max_minutes=minutes)
        train_summary = train_from_studies([train_dir], ckpt, cfg, val_percent=0.0, resume=False, include=pool)
        precision = train_summary["precision"]
        predictor, _ = load_predictor(ckpt)
    ts = evaluate_pairs(predictor, test_pairs, vocab)

    cases = load_cases(labelled_pairs(train_dir)[:n_train], cfg.model.working_spacing)
    net, indices, seg_info = train_segresnet(cases, vocab, cfg.train.patch_size, cfg.model.working_spacing,
                                             baseline_minutes if baseline_minutes is not None else minutes,
                                             precision=precision)
    del cases
    mc = predictor.cfg  # SegResNet's probabilities also get textseg's guided filter, scored apart
    sr = evaluate_segresnet(net, indices, test_pairs, vocab, cfg.model.working_spacing, cfg.train.patch_size,
                            guided=(mc.guided_radius, mc.guided_eps) if "CT" in mc.guided_modalities else None)

    def block(summary: dict) -> dict:
        return {"mean_dice": summary["mean_dice"], "mean_nsd": summary["mean_nsd"],
                "lesion_dice": summary["lesion_dice"], "lesion_nsd": summary["lesion_nsd"],
                "absent_fp_rate": summary["absent_fp_rate"], "per_prompt": summary["per_prompt"]}

    report = {
        "textseg_checkpoint": str(ckpt),
        "textseg_train_cases": len(train_summary.get("train_cases", [])),
        "train_phantoms": n_train, "test_phantoms": n_test, "train_seed": TRAIN_SEED, "test_seed": TEST_SEED,
        "budget_minutes_each": minutes,
        "within_budget": minutes <= ISSUE_BUDGET_MINUTES,
        "textseg": {**block(ts["summary"]), "paraphrase_dice": ts["summary"]["paraphrase_dice"],
                    "canonical_dice_same_cases": ts["summary"]["canonical_dice_same_cases"],
                    "paraphrase_gap": ts["summary"]["paraphrase_gap"],
                    "training": {k: train_summary.get(k) for k in ("steps", "seconds", "stopped_early", "schedule_steps", "host")}},
        "segresnet": {**block(sr["summary"]), "training": seg_info},
        "segresnet_guided": block(sr["guided_summary"]) if "guided_summary" in sr else None,
        "textseg_guided_modalities": list(predictor.cfg.guided_modalities),
        "targets": {"mean_dice": 0.93, "mean_nsd": 0.90, "lesion_dice": 0.70, "absent_fp_rate": 0.02,
                    "paraphrase_gap": 0.02},
        "wall_minutes": round((time.perf_counter() - start) / 60, 1),
        "host": host_info(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text("## textseg\n\n" + markdown_table(ts["summary"]) +
                                      "\n## SegResNet (closed set)\n\n" + markdown_table(sr["summary"]) +
                                      ("\n## SegResNet with the guided filter\n\n" + markdown_table(sr["guided_summary"])
                                       if "guided_summary" in sr else ""))
    return report
