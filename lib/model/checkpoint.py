"""Saving and loading models: weights (without the frozen text encoder), the config, the
vocabulary the model was trained on, and training metadata. Writes are atomic."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig
from ..data.vocab import Vocabulary
from .build import build_network
from .textseg import TextSegNet

FORMAT = "textseg-1"


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(path: str | Path, net: TextSegNet, vocab: Vocabulary, meta: dict | None = None) -> None:
    """Write a servable checkpoint (weights in float32, config, vocabulary, metadata)."""
    atomic_torch_save({
        "format": FORMAT,
        "model_config": asdict(net.cfg),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "vocabulary": vocab.to_json(),
        "meta": dict(meta or {}),
    }, path)


def load_checkpoint(path: str | Path) -> tuple[TextSegNet, Vocabulary, dict]:
    """Read a checkpoint into an eval-mode network. Raises FileNotFoundError / ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint not found: {path}")
    data = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a textseg checkpoint (format {FORMAT})")
    # checkpoints written before the adapter option had the embedding-offset adapter
    cfg = ModelConfig(**{"adapter": "offset", **data["model_config"]})
    net = build_network(cfg)
    net.load_state_dict(data["state_dict"])
    net.eval()
    return net, Vocabulary.from_json(data["vocabulary"]), dict(data.get("meta", {}))
