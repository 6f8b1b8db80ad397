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


def calibrated_scores(per_prompt: dict[str, dict[str, float]]) -> dict[str, float]:
    """Image score from per-prompt uncertainties made comparable across prompts: each
    prompt's values are replaced by their rank fraction (0..1] among the images where the
    model considered that structure (value > 0), then averaged per image. A prompt that is
    uncertain everywhere (a small, hard structure) then no longer decides alone."""
    by_prompt: dict[str, list[tuple[float, str]]] = {}
    for image_id, values in per_prompt.items():
        for prompt, v in values.items():
            if v > 0:
                by_prompt.setdefault(prompt, []).append((v, image_id))
    ranks: dict[str, list[float]] = {i: [] for i in per_prompt}
    for items in by_prompt.values():
        items.sort()
        for r, (_, image_id) in enumerate(items, start=1):
            ranks[image_id].append(r / len(items))
    return {i: (sum(r) / len(r) if r else 0.0) for i, r in ranks.items()}


def density(descriptors: dict[str, tuple[float, ...]]) -> dict[str, float]:
    """Representativeness of each image in [0, 1]: the mean cosine similarity of its
    standardised descriptor to every other image's, mapped from [-1, 1]."""
    ids = [i for i, d in descriptors.items() if d]
    if len(ids) < 2:
        return {i: 1.0 for i in descriptors}
    dim = len(descriptors[ids[0]])
    mean = [sum(descriptors[i][k] for i in ids) / len(ids) for k in range(dim)]
    sd = [math.sqrt(sum((descriptors[i][k] - mean[k]) ** 2 for i in ids) / len(ids)) or 1.0 for k in range(dim)]
    z = {i: [(descriptors[i][k] - mean[k]) / sd[k] for k in range(dim)] for i in ids}
    out = {i: 1.0 for i in descriptors}
    for i in ids:
        sims = [cosine(z[i], z[j]) for j in ids if j != i]
        out[i] = (1 + sum(sims) / len(sims)) / 2
    return out
