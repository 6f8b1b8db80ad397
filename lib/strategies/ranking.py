"""Pure functions that turn per-prompt uncertainties into an image score and choose the
next image with diversity."""

from __future__ import annotations

import math
from dataclasses import dataclass


def aggregate_uncertainty(per_prompt: dict[str, float]) -> float:
    """Image score: mean uncertainty over the prompts whose structure the model considered
    (non-zero uncertainty); 0 when every prompt is confidently absent."""
    values = [v for v in per_prompt.values() if v > 0]
    return float(sum(values) / len(values)) if values else 0.0


def cosine(a: list[float], b: list[float]) -> float:
    num = sum(x * y for x, y in zip(a, b))
    den = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return num / den if den > 0 else 0.0


@dataclass(frozen=True)
class Candidate:
    id: str
    score: float
    descriptor: tuple[float, ...] = ()


def pick_next(candidates: list[Candidate], recent: list[Candidate], duplicate_cosine: float = 0.995) -> Candidate | None:
    """Highest score among candidates that were not handed out recently and are not a
    near-duplicate (descriptor cosine >= ``duplicate_cosine``) of one that was. Falls back
    to the best recently unseen candidate when every one is a near-duplicate."""
    recent_ids = {r.id for r in recent}
    fresh = [c for c in candidates if c.id not in recent_ids]
    if not fresh:
        return None
    ranked = sorted(fresh, key=lambda c: (-c.score, c.id))
    for c in ranked:
        if not any(c.descriptor and r.descriptor and cosine(c.descriptor, r.descriptor) >= duplicate_cosine
                   for r in recent):
            return c
    return ranked[0]
