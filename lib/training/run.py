"""Training from studies folders: list labelled volumes, split them stably, load them on
the working grid and run the loop. Used by the CLI, the benchmarks and the MONAI Label
trainer."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import Config
from ..data.studies_index import labelled_pairs, split
from ..data.vocab import Vocabulary
from ..data.label_neighbours import label_neighbours, neighbours_to_json
from ..data.label_stats import label_stats, stats_to_json
from ..model.checkpoint import load_checkpoint, save_checkpoint
from ..model.text_encoder import shared_text_encoder
from .data import load_cases
from .loop import train

logger = logging.getLogger(__name__)


def vocabulary_of(studies: list[str | Path], base: Vocabulary | None = None) -> Vocabulary:
    """Union of the studies folders' labels.json files (and ``base``)."""
    vocabs = [base] if base is not None else []
    for s in studies:
        if (Path(s) / "labels.json").exists():
            vocabs.append(Vocabulary.load(s))
    if not vocabs:
        raise FileNotFoundError(f"no labels.json in {[str(s) for s in studies]}")
    return Vocabulary.merge(vocabs)


def train_from_studies(studies: list[str | Path], out: str | Path, cfg: Config, val_percent: float = 15.0,
                       init: str | Path | None = None, include: set[str] | None = None,
                       progress: bool = True, resume: bool = True) -> dict:
    """Train on the final labels of one or more studies folders.

    Args:
        studies: folders in MONAI Label's local layout with labels.json.
        out: checkpoint to write.
        cfg: configuration (the model part is ignored when ``init`` is given).
        val_percent: share of cases held out for validation by the stable hash split.
        init: checkpoint to fine-tune from instead of training from scratch.
        include: restrict to these image ids.
    """
    pairs = [p for s in studies for p in labelled_pairs(s) if include is None or p[0] in include]
    if not pairs:
        raise ValueError(f"no labelled images found in {[str(s) for s in studies]}")
    ids = [p[0] for p in pairs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"image ids appear in more than one studies folder: {dup[:5]}")
    net = None
    vocab = vocabulary_of(studies)
    if init is not None:
        net, init_vocab, _ = load_checkpoint(init)
        vocab = Vocabulary.merge([init_vocab, vocab])
        cfg = Config(model=net.cfg, train=cfg.train)
    train_ids, val_ids = split([p[0] for p in pairs], val_percent)
    logger.info("training on %d cases, validating on %d", len(train_ids), len(val_ids))
    by_id = {p[0]: p for p in pairs}
    cases = load_cases([by_id[i] for i in train_ids], cfg.model.working_spacing, progress=progress,
                       soft=cfg.train.soft_targets)
    val_cases = load_cases([by_id[i] for i in val_ids], cfg.model.working_spacing, progress=progress) if val_ids else None
    text = shared_text_encoder(cfg.model.text_encoder)
    return train(cfg, cases, vocab, text, out, val_cases=val_cases, init=net, resume=resume, progress=progress)


def refresh_label_stats(checkpoint: str | Path, studies: list[str | Path], progress: bool = True) -> dict:
    """Recompute a checkpoint's label statistics and neighbours (``meta["label_stats"]``,
    ``meta["label_neighbours"]``, used by the predictor's clean-up) and its training volumes' content fingerprints
    (``meta["train_fingerprints"]``, by which ``evaluate`` recognises them) from its own
    training cases, as listed in its metadata, found in ``studies``; rewrite the
    checkpoint (weights unchanged). For checkpoints trained before ``train`` stored them.
    Returns both as JSON (``label_stats``, ``label_neighbours``). Raises ValueError when a training case
    is missing."""
    net, vocab, meta = load_checkpoint(checkpoint)
    ids = set(meta.get("train_cases", []))
    if not ids:
        raise ValueError(f"{checkpoint} does not list its training cases")
    pairs = [p for s in studies for p in labelled_pairs(s) if p[0] in ids]
    missing = ids - {p[0] for p in pairs}
    if missing:
        raise ValueError(f"training cases of {checkpoint} not found in {[str(s) for s in studies]}: {sorted(missing)[:5]}")
    cases = load_cases(pairs, net.cfg.working_spacing, progress=progress)
    stats = label_stats((c.label.numpy() for c in cases), vocab, net.cfg.working_spacing ** 3)
    neighbours = neighbours_to_json(label_neighbours((c.label.numpy() for c in cases), vocab, stats))
    fingerprints = sorted({c.fingerprint for c in cases})
    save_checkpoint(checkpoint, net, vocab, meta={**meta, "label_stats": stats_to_json(stats),
                                                  "label_neighbours": neighbours, "train_fingerprints": fingerprints})
    logger.info("label statistics of %d labels (%d enclosed) from %d cases written to %s", len(stats),
                len(neighbours), len(cases), checkpoint)
    return {"label_stats": stats_to_json(stats), "label_neighbours": neighbours}
