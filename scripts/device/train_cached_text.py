"""``python -m lib.cli train ...`` with the text features of ``.gpu/text_cache.pt``
(``make_text_cache.py``) in place of the text encoder, for a machine without its weights.
A prompt missing from the cache raises KeyError.

    PYTHONPATH=. python scripts/device/train_cached_text.py train --studies ... --out ...
"""
import sys
from pathlib import Path

import torch

import lib.training.run as run
from lib.cli import main

CACHE = Path(__file__).resolve().parents[2] / ".gpu" / "text_cache.pt"


class CachedText:
    """The part of ``TextEncoder`` that training uses: ``encode`` (N prompts -> (N, H))."""

    def __init__(self, path: Path) -> None:
        d = torch.load(path, map_location="cpu")
        self.table = dict(zip(d["prompts"], d["features"]))
        self.dim, self.name, self.calls = d["dim"], "default", 0

    def encode(self, prompts: list[str]) -> torch.Tensor:
        return torch.stack([self.table[p] for p in prompts])


if __name__ == "__main__":
    cache = CachedText(CACHE)
    run.shared_text_encoder = lambda name="default": cache
    sys.exit(main(sys.argv[1:]))
