"""MONAI Label trainer: online two-stage fine-tuning of the served model on the
datastore's final labels, with a stable split and publish-if-not-worse."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from monailabel.interfaces.tasks.train import TrainTask

from ..config import Config, TrainConfig
from ..datastore import label_indices
from ..data.label_neighbours import neighbours_from_json
from ..data.label_stats import stats_from_json
from ..data.studies_index import in_validation
from ..data.vocab import LabelEntry, Vocabulary, normalize_prompt
from ..inference.calibration import inherit_thresholds
from ..model.checkpoint import load_checkpoint
from ..model.text_encoder import shared_text_encoder
from ..training.data import Case, load_case
from ..training.loop import train
from ..training.precision import resolve_device
from ..training.validate import validate

logger = logging.getLogger(__name__)

STATE_FILE = "train_state.json"
PATCH_MM = (160.0, 160.0, 128.0)


def physical_patch(patch_mm: tuple[float, float, float], spacing: float) -> tuple[int, int, int]:
    """Training patch in voxels covering ``patch_mm`` at ``spacing`` (multiples of 8, >= 16)."""
    return tuple(max(16, int(round(mm / spacing / 8)) * 8) for mm in patch_mm)


def remap_names(named: dict[int, str] | None, vocab: Vocabulary, modality: str) -> tuple[dict[int, int], list[LabelEntry]]:
    """Map a saved label's segment values to the vocabulary's indices by name.

    A name the vocabulary resolves (name or synonym of a single-index label) maps to that
    label's index; an unknown name becomes a new label (next free index, the case's modality).
    Without ``label_info`` the values are taken to be vocabulary indices already. A name of
    a composite label (e.g. "kidneys") is refused: one voxel value cannot stand for a union.

    Returns ({local value: vocabulary index}, new entries).
    """
    if named is None:
        return {}, []
    mapping, new = {}, []
    next_free = max([i for e in vocab for i in e.indices] + [0]) + 1
    for value, name in sorted(named.items()):
        entry = vocab.resolve(name)
        if entry is not None and entry.composite:
            raise ValueError(f"segment {name!r} names a union of labels ({entry.name}); save its parts separately")
        if entry is None:
            canonical = normalize_prompt(name)
            if not canonical or not any(c.isalpha() for c in canonical):
                raise ValueError(f"segment name {name!r} cannot be used as a prompt")
            entry = LabelEntry(name=canonical, indices=(next_free,), modality=modality)
            vocab.add(entry)
            new.append(entry)
            next_free += 1
        mapping[value] = entry.indices[0]
    return mapping, new


def apply_mapping(label: torch.Tensor, mapping: dict[int, int]) -> torch.Tensor:
    """Relabel a label map; values without a mapping become 0 (unless the mapping is empty)."""
    if not mapping:
        return label
    lut = torch.zeros(int(label.max()) + 1 if label.numel() else 1, dtype=torch.int16)
    for src, dst in mapping.items():
        if src < len(lut):
            lut[src] = dst
    return lut[label.long()]


def map_shares(shares: dict[int, torch.Tensor], mapping: dict[int, int]) -> dict[int, torch.Tensor]:
    """Relabel soft targets like ``apply_mapping``: values without a mapping are dropped,
    values mapped together add up (uint8 shares, saturating at 255)."""
    out: dict[int, torch.Tensor] = {}
    for src, share in shares.items():
        if src in mapping:
            dst = mapping[src]
            out[dst] = share if dst not in out else (out[dst].int() + share.int()).clamp(max=255).to(torch.uint8)
    return out


def datastore_cases(datastore, vocab: Vocabulary, spacing: float,
                    soft: bool = False) -> tuple[list[Case], list[LabelEntry]]:
    """Every image with a final label, on the working grid, relabelled to ``vocab`` (which
    gains entries for segment names it did not know); ``soft``: with soft targets."""
    cases, new = [], []
    for image_id in sorted(datastore.get_labeled_images()):
        label_id = datastore.get_label_by_image_id(image_id, "final")
        image_path = datastore.get_image_uri(image_id)
        label_path = datastore.get_label_uri(label_id, "final")
        try:
            case = load_case(image_path, label_path, spacing, case_id=image_id, soft=soft)
            named = label_indices(datastore.get_label_info(label_id, "final"))
            mapping, added = remap_names(named, vocab, case.modality)
        except ValueError as e:
            logger.warning("skipping %s: %s", image_id, e)
            continue
        case.label = apply_mapping(case.label, mapping)
        if case.soft is not None and mapping:
            case.soft = map_shares(case.soft, mapping)
        cases.append(case)
        new += added
    return cases, new


class TextSegTrainer(TrainTask):
    """Fine-tunes the served model on the annotators' final labels.

    Args:
        served: callable returning the checkpoint being served now.
        publish_path: where a better (not worse) model is published for the infer task.
        state_dir: keeps ``train_state.json`` (which volumes were trained on, run history).
        train_config: schedule of one online run.
        val_percent: stable validation share.
        base_vocab: labels.json of the studies folder, if any.
        labelled_ids: callable listing the images with final labels (for ``stats``).
        patch_mm: physical size of the training patch; its voxel size follows the served
            model's working spacing (None: ``train_config.patch_size`` as given).
    """

    def __init__(self, served, publish_path: str | Path, state_dir: str | Path, train_config: TrainConfig,
                 val_percent: float = 20.0, base_vocab: Vocabulary | None = None, labelled_ids=None,
                 patch_mm: tuple[float, float, float] | None = PATCH_MM) -> None:
        super().__init__("Online two-stage fine-tuning of the text-prompted model on final labels")
        self.served, self.publish_path, self.state_dir = served, Path(publish_path), Path(state_dir)
        self.train_config, self.val_percent, self.base_vocab = train_config, val_percent, base_vocab
        self.labelled_ids = labelled_ids  # callable -> ids with final labels (for stats)
        self.patch_mm = patch_mm

    def config(self) -> dict[str, Any]:
        return {"max_steps": self.train_config.steps, "max_minutes": self.train_config.max_minutes,
                "val_percent": self.val_percent, "device": self.train_config.device}

    def state(self) -> dict:
        path = self.state_dir / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else {"trained_ids": [], "runs": []}

    def stats(self) -> dict:
        s = self.state()
        out = {"runs": len(s["runs"]), "last": s["runs"][-1] if s["runs"] else None}
        if self.labelled_ids is not None:
            used = set(s["trained_ids"]) | {i for r in s["runs"] for i in r["val_ids"]}
            out["untrained_labels"] = len(set(self.labelled_ids()) - used)
        return out

    def __call__(self, request: dict, datastore) -> dict:
        start = time.perf_counter()
        tc = replace(self.train_config, steps=int(request.get("max_steps", self.train_config.steps)),
                     max_minutes=float(request.get("max_minutes", self.train_config.max_minutes)),
                     device=str(request.get("device", self.train_config.device)))
        resolve_device(tc.device)  # a GPU asked for where there is none fails here, before any loading
        val_percent = float(request.get("val_percent", self.val_percent))
        served_path = Path(self.served())
        net, vocab, meta = load_checkpoint(served_path)
        if self.patch_mm is not None:
            tc = replace(tc, patch_size=physical_patch(self.patch_mm, net.cfg.working_spacing))
        if self.base_vocab is not None:
            vocab = Vocabulary.merge([vocab, self.base_vocab])
        cases, new_labels = datastore_cases(datastore, vocab, net.cfg.working_spacing, soft=tc.soft_targets)
        if not cases:
            raise ValueError("no final labels to train on")
        train_cases = [c for c in cases if not in_validation(c.id, val_percent)]
        val_cases = [c for c in cases if in_validation(c.id, val_percent)]
        if not train_cases:  # too few volumes for a split: train on all, no validation
            train_cases, val_cases = cases, []
        state = self.state()
        seen = set(state["trained_ids"])
        fresh = [c for c in train_cases if c.id not in seen]
        # new volumes are about half of what is sampled; the rest replays earlier ones
        mix = train_cases + fresh * max(1, (len(train_cases) - len(fresh)) // max(1, len(fresh))) if fresh else train_cases
        text = shared_text_encoder(net.cfg.text_encoder)
        served_score = validate(net, text, val_cases, vocab) if val_cases else None
        cfg = Config(model=net.cfg, train=tc)
        candidate = self.publish_path.with_name(self.publish_path.stem + ".candidate.pt")
        summary = train(cfg, mix, vocab, text, candidate, val_cases=val_cases or None, init=net, resume=False,
                        progress=False, base_stats=stats_from_json(meta.get("label_stats")),
                        base_fingerprints=meta.get("train_fingerprints"),
                        base_neighbours=neighbours_from_json(meta.get("label_neighbours")))
        if inherit_thresholds(candidate, meta):
            logger.info("the new weights keep the served model's label thresholds %s until recalibrated",
                        meta["label_thresholds"])
        new_score = summary["validation"] or None
        better = served_score is None or new_score["mean_dice"] >= served_score["mean_dice"]
        if better:
            os.replace(candidate, self.publish_path)  # atomic: the infer task reloads on mtime change
        else:
            candidate.unlink(missing_ok=True)
        run = {"time": int(time.time()), "published": better, "served_before": str(served_path),
               "served_score": served_score, "new_score": new_score, "train_ids": [c.id for c in train_cases],
               "val_ids": [c.id for c in val_cases], "new_ids": [c.id for c in fresh],
               "new_labels": [e.name for e in new_labels], "steps": summary["steps"],
               "seconds": round(time.perf_counter() - start, 1)}
        state["trained_ids"] = sorted(seen | {c.id for c in train_cases})
        state["runs"].append(run)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.state_dir / STATE_FILE)
        logger.info("training run: published=%s served=%s new=%s", better, served_score, new_score)
        return run


