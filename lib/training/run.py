"""Training from studies folders: list labelled volumes, split them stably, load them on
the working grid and run the loop. Used by the CLI, the benchmarks and the MONAI Label
trainer."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import Config
from ..data.studies_index import labelled_pairs, split
from ..data.vocab import Vocabulary
from ..model.checkpoint import load_checkpoint
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
    cases = load_cases([by_id[i] for i in train_ids], cfg.model.working_spacing, progress=progress)
    val_cases = load_cases([by_id[i] for i in val_ids], cfg.model.working_spacing, progress=progress) if val_ids else None
    text = shared_text_encoder(cfg.model.text_encoder)
    return train(cfg, cases, vocab, text, out, val_cases=val_cases, init=net, resume=resume, progress=progress)
