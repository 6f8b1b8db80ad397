"""Builds the app's tasks from its settings (kept out of apps/textseg/main.py)."""

from __future__ import annotations

import logging
import os

from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

from .infers.model_store import ModelStore
from .infers.textseg import TextSegInfer

logger = logging.getLogger(__name__)

PUBLISHED_NAME = "textseg.pt"


def model_store(app) -> ModelStore:
    if not hasattr(app, "_textseg_store"):
        app._textseg_store = ModelStore(os.path.join(app.model_dir, PUBLISHED_NAME), app.settings.default_model,
                                        cache_mb=app.settings.cache_mb)
    return app._textseg_store


def build_infers(app) -> dict:
    store = model_store(app)
    tasks = {"textseg": TextSegInfer(store, "Free-text prompts (';' between several); empty: every known structure")}
    if store.is_valid():
        _, vocab, _ = _vocab(store)
        for modality, title in (("CT", "abdominal CT structures"), ("MR", "brain MRI structures")):
            names = vocab.names(modality=modality, composite=False)
            if names:
                index = {n: i for i, n in vocab.index_to_name().items()}
                tasks[f"textseg_{modality.lower()}"] = TextSegInfer(
                    store, f"Auto segmentation of all {title}", default_prompts=names,
                    labels={n: index[n] for n in names})
    else:
        logger.warning("no model checkpoint at %s: inference will fail until one is trained", store.path())
    return tasks


def _vocab(store: ModelStore):
    predictor, version = store.predictor()
    return predictor, predictor.vocab, version


def build_trainers(app) -> dict:
    return {}


def build_strategies(app) -> dict:
    return {"random": Random(), "first": First()}


def build_scoring(app) -> dict:
    return {}


def on_label_saved(app, image_id: str, label_id: str) -> None:
    """Hook for online retraining (see the trainer)."""
