"""MONAI Label infer task: free-text prompts -> a labelled 3D mask plus per-prompt JSON."""

from __future__ import annotations

import logging
import tempfile
import time
from typing import Any

import numpy as np
import os

from fastapi import HTTPException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from ..data.preprocess import ImageError
from ..inference.predictor import PromptError, split_prompts
from ..inference.service import save_like
from .model_store import ModelStore

logger = logging.getLogger(__name__)


def assign_indices(prompts: list[str], resolved: list[str | None], vocab_index: dict[str, int]) -> dict[str, int]:
    """Label value for each prompt: the vocabulary index of the label it names, else a new
    value above every vocabulary index (in prompt order). Returns {prompt: value}."""
    next_free = max(vocab_index.values(), default=0) + 1
    out: dict[str, int] = {}
    used: set[int] = set()
    for prompt, label in zip(prompts, resolved):
        value = vocab_index.get(label) if label else None
        if value is None or value in used:
            value = next_free
            next_free += 1
        out[prompt] = value
        used.add(value)
    return out


class TextSegInfer(InferTask):
    """Segments whatever the ``prompt`` option names (several separated by ';'; empty: every
    label of the model's vocabulary, or of ``default_prompts`` when given).

    Request options (also in 3D Slicer's options table): ``prompt`` (text),
    ``probability_map`` and ``uncertainty_map`` (write those maps beside the label, their
    paths in the JSON result).
    """

    def __init__(self, store: ModelStore, description: str, default_prompts: list[str] | None = None,
                 labels: dict[str, int] | None = None) -> None:
        super().__init__(type=InferType.SEGMENTATION, labels=labels or {}, dimension=3, description=description,
                         config={"prompt": "", "probability_map": False, "uncertainty_map": False})
        self.store = store
        self.default_prompts = default_prompts

    def is_valid(self) -> bool:
        return self.store.is_valid()

    def __call__(self, request: dict[str, Any]):
        start = time.perf_counter()
        req = {**self.config(), **request}
        image = req.get("image")
        if not isinstance(image, str) or not image or not os.path.isfile(image):
            raise HTTPException(status_code=404, detail=f"image not found: {request.get('image')!r}")
        try:
            predictor, version = self.store.predictor()
            text = str(req.get("prompt") or "")
            if text.strip():
                prompts = split_prompts(text)
            else:  # "auto segmentation": the task's labels, else the model's whole vocabulary
                prompts = list(self.default_prompts or split_prompts("", predictor.vocab))
            encoded, hit = self.store.encoded(image)
            results = predictor.predict(encoded, prompts, probabilities=_flag(req.get("probability_map")),
                                        uncertainty_maps=_flag(req.get("uncertainty_map")))
        except PromptError as e:
            raise HTTPException(status_code=400, detail=f"bad prompt: {e}") from e
        except ImageError as e:
            raise HTTPException(status_code=422, detail=str(e)) from e
        vocab_index = predictor.vocab.index_to_name()
        name_to_index = {n: i for i, n in vocab_index.items()}
        values = assign_indices([r.prompt for r in results], [r.label for r in results], name_to_index)
        label = np.zeros(results[0].mask.shape if results else (1, 1, 1), np.uint8 if max(values.values(), default=0) < 256 else np.uint16)
        for r in results:  # first prompt wins where masks overlap
            label[(label == 0) & r.mask] = values[r.prompt]
        affine = np.asarray(encoded.volume.original_affine, dtype=np.float64)
        out = tempfile.NamedTemporaryFile(suffix=".nii.gz", delete=False).name
        save_like(label, affine, out)
        extra = {}
        for r in results:
            for kind, arr in (("probability", r.probability), ("uncertainty", r.uncertainty_map)):
                if arr is not None:
                    path = tempfile.NamedTemporaryFile(suffix=f"_{kind}.nii.gz", delete=False).name
                    save_like(arr.astype(np.float32), affine, path)
                    extra.setdefault(r.prompt, {})[f"{kind}_map"] = path
        label_names = {}
        for r in results:
            if r.present:
                label_names[r.label or r.prompt] = values[r.prompt]
        prompts_json = [{**r.summary(), "index": values[r.prompt], **extra.get(r.prompt, {})} for r in results]
        return out, {
            "label_names": label_names,
            "prompts": prompts_json,
            "model_version": version,
            "encoding_cached": hit,
            "latencies": {"encode": 0.0 if hit else round(encoded.seconds, 3),
                          "prompts": round(sum(r.seconds for r in results), 3),
                          "total": round(time.perf_counter() - start, 3)},
        }


def _flag(v: Any) -> bool:
    return v is True or str(v).strip().lower() in ("1", "true", "yes", "on")
