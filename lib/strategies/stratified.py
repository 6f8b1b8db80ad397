"""Oracle-free stratified baseline: a random image from the stratum (by how many structures
the model predicts present) that is least represented among the labelled images."""

from __future__ import annotations

import logging
import random
import threading

from monailabel.interfaces.tasks.strategy import Strategy

from .uncertainty import KEY

logger = logging.getLogger(__name__)

PRESENT = f"{KEY}_present"


def strata(counts: dict[str, int], bins: int = 3) -> dict[str, int]:
    """Stratum per image: the rank bin (0 .. bins-1) of its predicted-present count, bins
    of about equal size over every image given (ties stay in one bin)."""
    ordered = sorted(set(counts.values()))
    if not ordered:
        return {}
    values = sorted(counts.values())
    edges = [values[min(len(values) - 1, (len(values) * b) // bins)] for b in range(1, bins)]
    return {i: sum(c >= e for e in edges if e > ordered[0]) for i, c in counts.items()}


def pick_stratified(unlabelled: dict[str, int], labelled: dict[str, int], rng: random.Random) -> str | None:
    """Choose an unlabelled image: first the stratum whose labelled share falls furthest
    below its share of the pool, then uniformly at random inside it.

    Args:
        unlabelled: {image id: stratum} of the candidates.
        labelled: {image id: stratum} of labelled images whose stratum is known.
    """
    if not unlabelled:
        return None
    pool = {**labelled, **unlabelled}
    keys = sorted(set(unlabelled.values()))
    n_lab = max(1, len(labelled))

    def deficit(k: int) -> float:
        share = sum(v == k for v in pool.values()) / len(pool)
        return sum(v == k for v in labelled.values()) / n_lab - share

    best = min(keys, key=lambda k: (deficit(k), k))
    return rng.choice(sorted(i for i, v in unlabelled.items() if v == best))


class StratifiedRandomStrategy(Strategy):
    """Random within strata of predicted structure presence (from the ``textseg_uncertainty``
    scoring's stored predictions, any model version); unscored images form their own
    stratum. Uses no uncertainty, only what the model predicts is in each scan."""

    def __init__(self, seed: int | None = None, bins: int = 3) -> None:
        super().__init__("Random, stratified by the number of structures predicted present")
        self.rng, self.bins = random.Random(seed), bins
        self._lock = threading.Lock()

    def reseed(self, seed: int) -> None:
        with self._lock:
            self.rng.seed(seed)

    def __call__(self, request, datastore):
        counts, unscored = {}, []
        labelled = set(datastore.get_labeled_images())
        for image_id in sorted(set(datastore.get_unlabeled_images()) | labelled):
            present = datastore.get_image_info(image_id).get(PRESENT)
            if present is None:
                if image_id not in labelled:
                    unscored.append(image_id)
            else:
                counts[image_id] = len(present)
        groups = strata(counts, self.bins)
        unl = {i: s for i, s in groups.items() if i not in labelled}
        unl.update({i: -1 for i in unscored})
        lab = {i: s for i, s in groups.items() if i in labelled}
        with self._lock:
            choice = pick_stratified(unl, lab, self.rng)
        if choice is None:
            return None
        return {"id": choice, "stratum": unl[choice]}
