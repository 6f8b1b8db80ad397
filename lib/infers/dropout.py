"""The served model with its dropout layers on: the infer task that MONAI Label's
``EpistemicScoring`` samples (MC dropout) to score unlabelled images."""

from __future__ import annotations

import copy
import logging
import threading

import torch
from monai.data import MetaTensor

from ..data.preprocess import load_volume
from ..inference.predictor import Predictor
from .model_store import ModelStore

logger = logging.getLogger(__name__)


def scoring_prompts(predictor: Predictor, modality: str, max_prompts: int) -> list[str]:
    """The prompts an image is scored with: the vocabulary's single labels of its modality."""
    return predictor.vocab.names(modality=modality, composite=False)[:max_prompts]


class DropoutSamplingInfer:
    """One stochastic forward pass per call (dropout active), for ``EpistemicScoring``.

    Each call loads the image, encodes it with dropout on and returns the refined
    probabilities of the scoring prompts on the working grid as ``data["pred"]``:
    (K, X, Y, Z) float32 MetaTensor. A private copy of the network is used, so requests served
    by the infer tasks at the same time never see dropout.
    """

    dimension = 3
    output_label_key = "pred"
    description = "MC-dropout samples of the text-prompted model"

    def __init__(self, store: ModelStore, max_prompts: int = 16) -> None:
        self.store, self.max_prompts = store, max_prompts
        self._lock = threading.Lock()
        self._sampler: tuple[str, Predictor] | None = None

    def get_path(self) -> str:
        return str(self.store.path())

    def clear_cache(self) -> None:
        with self._lock:
            self._sampler = None

    def sampler(self) -> Predictor:
        """A Predictor over a copy of the served network with its dropout layers in training mode."""
        predictor, version = self.store.predictor()
        with self._lock:
            if self._sampler is None or self._sampler[0] != version:
                net = copy.deepcopy(predictor.net)
                mc = Predictor(net, predictor.text, predictor.vocab, label_stats=predictor.label_stats,
                               label_thresholds=predictor.label_thresholds,
                               label_max_uncertainty=predictor.label_max_uncertainty,
                               label_neighbours=predictor.label_neighbours, label_growth=predictor.label_growth)
                layers = net.dropout_modules()
                if not layers:
                    raise ValueError("the served model has no dropout (ModelConfig.dropout = 0): MC dropout is undefined")
                for m in layers:
                    m.train()
                self._sampler = (version, mc)
            return self._sampler[1]

    @torch.no_grad()
    def __call__(self, request: dict) -> tuple[None, dict]:
        mc = self.sampler()
        encoded = mc.encode(load_volume(request["image"]))
        prompts = scoring_prompts(mc, encoded.volume.modality, self.max_prompts)
        _, p2 = mc.probabilities(encoded, prompts)
        # a MetaTensor, as MONAI Label's infer tasks return (EpistemicScoring calls np.sum on it)
        return None, {self.output_label_key: MetaTensor(p2)}
