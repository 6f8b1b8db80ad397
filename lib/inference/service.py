"""Loading a servable model and writing predictions to NIfTI files."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np

from ..data.label_neighbours import neighbours_from_json
from ..data.label_stats import stats_from_json
from ..data.preprocess import load_volume
from ..model.checkpoint import load_checkpoint
from ..model.text_encoder import shared_text_encoder
from .completion import growth_from_json
from .predictor import Predictor, clean_prompt

logger = logging.getLogger(__name__)


def load_predictor(checkpoint: str | Path) -> tuple[Predictor, dict]:
    """Checkpoint -> (Predictor, checkpoint metadata). The text encoder is shared per process."""
    net, vocab, meta = load_checkpoint(checkpoint)
    stats = stats_from_json(meta.get("label_stats"))
    return Predictor(net, shared_text_encoder(net.cfg.text_encoder), vocab, label_stats=stats,
                     label_thresholds=meta.get("label_thresholds"),
                     label_max_uncertainty=meta.get("label_max_uncertainty"),
                     label_neighbours=neighbours_from_json(meta.get("label_neighbours")),
                     label_growth=growth_from_json(meta.get("label_growth"))), meta


def set_exclusive(predictor: Predictor, share: float, source: str | Path) -> None:
    """Set the predictor's exclusivity clean-up (``ModelConfig.exclusive_share``; 0: off),
    warning when the checkpoint ``source`` lacks the label neighbours it needs."""
    predictor.cfg = replace(predictor.cfg, exclusive_share=share)
    if share > 0 and not predictor.label_neighbours:
        logger.warning("%s has no label neighbours (run label-stats): the exclusivity clean-up does nothing", source)


def slug(text: str) -> str:
    """File-name-safe form of a prompt."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "prompt"


def save_like(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write an array as NIfTI with the input's affine (sform and qform)."""
    img = nib.Nifti1Image(array, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, str(path))


def predict_to_files(model: str | Path, image: str | Path, prompts: list[str], out: Path,
                     probabilities: bool = False, uncertainty: bool = False) -> dict:
    """Segment ``prompts`` in ``image`` and write ``<out>/<prompt>_mask.nii.gz`` (uint8) per
    prompt, plus ``_prob`` / ``_uncertainty`` maps on request, all on the input's grid.
    Returns the per-prompt summaries."""
    predictor, _ = load_predictor(model)
    cleaned = [clean_prompt(p) for p in prompts]
    img = load_volume(str(image))
    affine = np.asarray(img.affine, dtype=np.float64)
    encoded, results = predictor.segment(img, cleaned, probabilities=probabilities, uncertainty_maps=uncertainty)
    out.mkdir(parents=True, exist_ok=True)
    summaries = []
    for r in results:
        name = slug(r.prompt)
        save_like(r.mask.astype(np.uint8), affine, out / f"{name}_mask.nii.gz")
        if probabilities and r.probability is not None:
            save_like(r.probability.astype(np.float32), affine, out / f"{name}_prob.nii.gz")
        if uncertainty and r.uncertainty_map is not None:
            save_like(r.uncertainty_map.astype(np.float32), affine, out / f"{name}_uncertainty.nii.gz")
        summaries.append(r.summary())
    return {"image": str(image), "encode_seconds": round(encoded.seconds, 3), "prompts": summaries}
