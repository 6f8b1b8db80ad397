"""The served model: the newest published checkpoint (or the bundled default), reloaded
when the file changes, plus a bounded cache of image encodings."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

from ..data.preprocess import load_volume
from ..inference.predictor import EncodedImage, Predictor
from ..inference.service import load_predictor, set_exclusive

logger = logging.getLogger(__name__)


class ModelStore:
    """Thread-safe access to the current Predictor and cached image encodings.

    Args:
        published: checkpoint written by training (preferred when it exists).
        default: bundled checkpoint used until a model is published.
        cache_mb: memory budget for cached encodings; least recently used are evicted.
        exclusive_share: ``ModelConfig.exclusive_share`` for every model served (the
            exclusivity clean-up; 0: off); None keeps each checkpoint's own.
    """

    def __init__(self, published: str | Path, default: str | Path, cache_mb: int = 1024,
                 exclusive_share: float | None = None) -> None:
        self.published, self.default = Path(published), Path(default)
        self.exclusive_share = exclusive_share
        self.cache_bytes = cache_mb * 2**20
        self._lock = threading.RLock()
        self._predictor: Predictor | None = None
        self._meta: dict = {}
        self._key: tuple | None = None
        self._cache: OrderedDict[tuple, EncodedImage] = OrderedDict()
        self._image_locks: dict[tuple, threading.Lock] = {}

    def path(self) -> Path:
        return self.published if self.published.is_file() else self.default

    def is_valid(self) -> bool:
        return self.path().is_file()

    def version(self) -> str:
        """Identifies the served weights: file name and modification time."""
        p = self.path()
        return f"{p.name}@{int(p.stat().st_mtime_ns)}" if p.is_file() else "none"

    def predictor(self) -> tuple[Predictor, str]:
        """The current Predictor (reloaded if the checkpoint changed) and its version."""
        with self._lock:
            path = self.path()
            key = (str(path), path.stat().st_mtime_ns if path.is_file() else None)
            if self._predictor is None or key != self._key:
                logger.info("loading model %s", path)
                self._predictor, self._meta = load_predictor(path)
                if self.exclusive_share is not None:
                    set_exclusive(self._predictor, self.exclusive_share, path)
                self._key = key
                self._cache.clear()
            return self._predictor, self.version()

    def encoded(self, image_path: str) -> tuple[EncodedImage, bool]:
        """Encoding of an image file, from the cache when the file and model are unchanged.
        Returns (encoding, cache_hit). Concurrent requests for one image encode it once."""
        predictor, version = self.predictor()
        st = os.stat(image_path)
        key = (image_path, st.st_mtime_ns, st.st_size, version)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key], True
            image_lock = self._image_locks.setdefault(key, threading.Lock())
        with image_lock:
            with self._lock:
                if key in self._cache:
                    return self._cache[key], True
            try:
                enc = predictor.encode(load_volume(image_path))
            finally:
                with self._lock:
                    self._image_locks.pop(key, None)
            with self._lock:
                self._cache[key] = enc
                self._evict()
        return enc, False

    def _evict(self) -> None:
        total = sum(e.nbytes() for e in self._cache.values())
        while self._cache and total > self.cache_bytes:
            _, old = self._cache.popitem(last=False)
            total -= old.nbytes()

    def cached_images(self) -> int:
        with self._lock:
            return len(self._cache)
