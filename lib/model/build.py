"""The one factory for networks: named sizes differ only in arguments."""

from __future__ import annotations

from dataclasses import replace

from ..config import ModelConfig
from .textseg import TextSegNet

SIZES: dict[str, dict] = {
    "tiny": {"channels": (4, 8, 16, 24), "embed_dim": 16},
    "small": {"channels": (8, 16, 32, 64), "embed_dim": 32},
    "base": {"channels": (16, 32, 64, 128), "embed_dim": 48},
}


def sized_config(size: str, **overrides) -> ModelConfig:
    """ModelConfig for a named size, with further overrides."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    return ModelConfig(size=size, **{**SIZES[size], **overrides})


def build_network(cfg: ModelConfig) -> TextSegNet:
    """Build the network a config describes (sizes resolved through ``SIZES``)."""
    if cfg.size in SIZES:
        expected = SIZES[cfg.size]
        if cfg.channels != expected["channels"] or cfg.embed_dim != expected["embed_dim"]:
            cfg = replace(cfg, **expected)
    return TextSegNet(cfg)


def count_parameters(net) -> int:
    return sum(p.numel() for p in net.parameters())
