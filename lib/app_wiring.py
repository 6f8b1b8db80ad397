"""Builds the app's tasks from its settings (kept out of apps/textseg/main.py)."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from monailabel.config import settings as ml_settings
from monailabel.tasks.activelearning.epistemic import Epistemic
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.tasks.scoring.epistemic_v2 import EpistemicScoring

from .config import TrainConfig
from .data.vocab import Vocabulary
from .datastore import ValidatingDatastore
from .infers.dropout import DropoutSamplingInfer
from .infers.model_store import ModelStore
from .infers.textseg import TextSegInfer
from .strategies.stratified import StratifiedRandomStrategy
from .strategies.uncertainty import TextSegUncertaintyScoring, TextSegUncertaintyStrategy
from .trainers.textseg import TextSegTrainer

logger = logging.getLogger(__name__)

PUBLISHED_NAME = "textseg.pt"
TRAINER = "textseg"


def model_store(app) -> ModelStore:
    if not hasattr(app, "_textseg_store"):
        app._textseg_store = ModelStore(os.path.join(app.model_dir, PUBLISHED_NAME), app.settings.default_model,
                                        cache_mb=app.settings.cache_mb, exclusive_share=app.settings.exclusive_share)
    return app._textseg_store


def build_datastore(app):
    """Local studies get a datastore that validates labels before saving them."""
    return ValidatingDatastore(app.studies, extensions=ml_settings.MONAI_LABEL_DATASTORE_FILE_EXT,
                               auto_reload=ml_settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                               read_only=ml_settings.MONAI_LABEL_DATASTORE_READ_ONLY)


def build_infers(app) -> dict:
    store = model_store(app)
    tasks = {"textseg": TextSegInfer(store, "Free-text prompts (';' between several); empty: every known structure")}
    if not store.is_valid():
        logger.warning("no model checkpoint at %s: inference will fail until one is trained", store.path())
        return tasks
    predictor, _ = store.predictor()
    vocab = predictor.vocab
    index = {n: i for i, n in vocab.index_to_name().items()}
    for modality, title in (("CT", "abdominal CT structures"), ("MR", "brain MRI structures")):
        names = vocab.names(modality=modality, composite=False)
        if names:
            tasks[f"textseg_{modality.lower()}"] = TextSegInfer(
                store, f"Auto segmentation of all {title}", default_prompts=names, labels={n: index[n] for n in names})
    return tasks


def studies_vocabulary(app) -> Vocabulary | None:
    path = Path(app.studies) / "labels.json"
    return Vocabulary.load(path) if path.is_file() else None


def build_trainers(app) -> dict:
    s = app.settings
    tc = replace(TrainConfig(), steps=s.train_steps, max_minutes=s.train_minutes, lr=s.train_lr, warmup_steps=10,
                 stage1_fraction=0.3, align_fraction=0.0)
    store = model_store(app)
    return {TRAINER: TextSegTrainer(store.path, store.published, app.model_dir, tc, val_percent=s.val_percent,
                                    base_vocab=studies_vocabulary(app),
                                    labelled_ids=lambda: app.datastore().get_labeled_images())}


def has_dropout(app) -> bool:
    """Whether the served model has dropout layers (needed for MC-dropout scoring)."""
    store = model_store(app)
    return store.is_valid() and store.predictor()[0].cfg.dropout > 0


def build_strategies(app) -> dict:
    s = app.settings
    uncertainty = TextSegUncertaintyStrategy(model_store(app), calibrate=s.al_calibrate, density_weight=s.al_density,
                                             random_fraction=s.al_random)
    tasks = {"textseg_uncertainty": uncertainty,
             "stratified": StratifiedRandomStrategy(), "random": Random(), "first": First()}
    if has_dropout(app):
        tasks["epistemic"] = Epistemic()
    return tasks


def build_scoring(app) -> dict:
    """Two-pass uncertainty always; MC-dropout (MONAI Label's EpistemicScoring, 5 samples)
    when the served model was built with dropout."""
    store = model_store(app)
    methods = {"textseg_uncertainty": TextSegUncertaintyScoring(store, max_prompts=app.settings.max_prompts)}
    if has_dropout(app):
        methods["epistemic"] = EpistemicScoring(DropoutSamplingInfer(store, max_prompts=app.settings.max_prompts))
    return methods


def untrained_labels(app) -> int:
    """Images with final labels that no training run has used yet."""
    trainer = app._trainers.get(TRAINER)
    return trainer.stats().get("untrained_labels", 0) if trainer else 0


def on_label_saved(app, image_id: str, label_id: str) -> dict:
    """After a final label is saved: report the count of labels not yet trained on and,
    when ``retrain_every`` of them have accumulated, start a training run."""
    pending = untrained_labels(app)
    result = {"untrained_labels": pending, "training_started": False}
    every = app.settings.retrain_every
    if every and pending >= every:
        from monailabel.utils.async_tasks.task import AsyncTask

        res, detail = AsyncTask.run("train", request={"model": TRAINER}, enqueue=False)
        result["training_started"] = res is not None
        logger.info("retrain_every=%d reached (%d new labels): %s", every, pending, detail or "started")
    return result
