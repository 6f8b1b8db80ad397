"""Two-pass uncertainty for active learning: a scoring method that stores each unlabelled
image's uncertainty (with the model version that produced it) and a strategy that picks
the most uncertain image with diversity across annotators."""

from __future__ import annotations

import logging
import os
import random
import threading
import time

import torch
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy

from ..data.preprocess import load_volume
from ..infers.dropout import scoring_prompts
from ..infers.model_store import ModelStore
from .ranking import Candidate, aggregate_uncertainty, calibrated_scores, density, pick_next

logger = logging.getLogger(__name__)

KEY = "textseg_uncertainty"


def image_stamp(path: str, version: str) -> str:
    st = os.stat(path)
    return f"{version}|{st.st_mtime_ns}|{st.st_size}"


class TextSegUncertaintyScoring(ScoringMethod):
    """For every unlabelled image: both passes over the vocabulary's prompts of its
    modality; stores the aggregated scalar uncertainty, the per-prompt values, the prompts
    predicted present and a small image descriptor. Unchanged images scored by the same
    model version are skipped."""

    def __init__(self, store: ModelStore, max_prompts: int = 16) -> None:
        super().__init__("Two-pass (coarse vs refined) uncertainty over the vocabulary's prompts")
        self.store, self.max_prompts = store, max_prompts

    @torch.no_grad()
    def score_image(self, path: str) -> dict:
        predictor, _ = self.store.predictor()
        encoded = predictor.encode(load_volume(path))
        names = scoring_prompts(predictor, encoded.volume.modality, self.max_prompts)
        results = predictor.predict(encoded, names)
        per = {r.prompt: round(r.uncertainty, 6) for r in results}
        ctx = encoded.encoding.context.mean(dim=(2, 3, 4))[0]
        return {KEY: aggregate_uncertainty(per), f"{KEY}_per_prompt": per,
                f"{KEY}_present": [r.prompt for r in results if r.present],
                "textseg_descriptor": [round(float(v), 5) for v in ctx]}

    def __call__(self, request, datastore) -> dict:
        _, version = self.store.predictor()
        scored, skipped, start = [], 0, time.perf_counter()
        for image_id in sorted(datastore.get_unlabeled_images()):
            path = datastore.get_image_uri(image_id)
            stamp = image_stamp(path, version)
            if datastore.get_image_info(image_id).get(f"{KEY}_version") == stamp:
                skipped += 1
                continue
            try:
                info = self.score_image(path)
            except Exception as e:  # noqa: BLE001 - one bad image must not stop scoring
                logger.warning("cannot score %s: %s", image_id, e)
                continue
            info[f"{KEY}_version"] = stamp
            datastore.update_image_info(image_id, info)
            scored.append(image_id)
        seconds = time.perf_counter() - start
        logger.info("scored %d images (%d unchanged) in %.1f s", len(scored), skipped, seconds)
        return {"scored": scored, "skipped": skipped, "seconds": round(seconds, 2), "model_version": version}


class TextSegUncertaintyStrategy(Strategy):
    """Next image = highest stored uncertainty (current model version only), skipping images
    handed out in the last ``hold_minutes`` and their near-duplicates, so that annotators
    asking at the same time get different scans. Unscored images fall back to the
    first unlabelled one.

    Args:
        calibrate: rank each prompt's uncertainty across the pool before averaging
            (``calibrated_scores``) instead of averaging raw values.
        density_weight: multiply the score by density ** weight (representativeness of the
            image among the candidates; 0: off).
        random_fraction: share of picks made uniformly at random among the candidates.
        seed: seed of those random picks.
    """

    def __init__(self, store: ModelStore, hold_minutes: float = 30.0, calibrate: bool = False,
                 density_weight: float = 0.0, random_fraction: float = 0.0, seed: int | None = None) -> None:
        super().__init__("Most uncertain unlabelled image (two-pass disagreement), with diversity")
        self.store, self.hold = store, hold_minutes * 60
        self.calibrate, self.density_weight, self.random_fraction = calibrate, density_weight, random_fraction
        self.rng = random.Random(seed)
        self._recent: list[tuple[float, Candidate]] = []
        self._lock = threading.Lock()

    def reseed(self, seed: int) -> None:
        with self._lock:
            self.rng.seed(seed)

    def scores(self, infos: dict[str, dict]) -> dict[str, float]:
        """Image scores from the stored scoring results of the candidates."""
        if self.calibrate:
            base = calibrated_scores({i: info.get(f"{KEY}_per_prompt", {}) for i, info in infos.items()})
        else:
            base = {i: float(info[KEY]) for i, info in infos.items()}
        if self.density_weight > 0:
            dens = density({i: tuple(info.get("textseg_descriptor", ())) for i, info in infos.items()})
            base = {i: v * dens[i] ** self.density_weight for i, v in base.items()}
        return base

    def __call__(self, request, datastore):
        _, version = self.store.predictor()
        infos, unscored = {}, []
        for image_id in datastore.get_unlabeled_images():
            info = datastore.get_image_info(image_id)
            if str(info.get(f"{KEY}_version", "")).startswith(version + "|"):
                infos[image_id] = info
            else:
                unscored.append(image_id)
        scores = self.scores(infos)
        candidates = [Candidate(i, scores[i], tuple(info.get("textseg_descriptor", ()))) for i, info in infos.items()]
        with self._lock:
            now = time.time()
            self._recent = [(t, c) for t, c in self._recent if now - t < self.hold]
            recent = [c for _, c in self._recent]
            recent_ids = {r.id for r in recent}
            fresh = sorted((c for c in candidates if c.id not in recent_ids), key=lambda c: c.id)
            if fresh and self.random_fraction > 0 and self.rng.random() < self.random_fraction:
                choice = self.rng.choice(fresh)
            else:
                choice = pick_next(candidates, recent)
            if choice is None and unscored:
                logger.info("no scored candidates: handing out an unscored image")
                choice = Candidate(sorted(unscored)[0], 0.0)
            if choice is None:
                return None
            self._recent.append((now, choice))
        return {"id": choice.id, KEY: choice.score}
