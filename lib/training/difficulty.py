"""Running per-label difficulty, for hard-label focus sampling (``focus_sampling: adaptive``).

A label the network gets wrong is centred (and so prompted as present) more often. This
also guards against a collapsed prompt: a small structure that is prompted as absent far
more often than as present can be pushed to "never present" (its sigmoid saturates, the
Dice gradient vanishes and its few foreground voxels weigh little in the BCE); its loss
then rises to 1 and the sampler centres it more often, until it is found again.
"""

from __future__ import annotations

import math

import torch


class LabelDifficulty:
    """Exponential moving average, per label name, of the soft-Dice loss of the prompts
    for which the label is present in the patch.

    Args:
        decay: weight of the old value at each observation of a label.
        start: the value of a label not yet observed (1: as hard as it gets).
        floor: smallest value used for a weight, so an easy label is still drawn.

    The values live in memory only: a resumed run starts again from ``start`` (every label
    equally hard) and relearns them within a few dozen observations of each label.
    """

    def __init__(self, decay: float = 0.9, start: float = 1.0, floor: float = 0.02,
                 absent_floor: float = 0.1) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        if not 0.0 < absent_floor <= 1.0:
            raise ValueError(f"absent_floor must be in (0, 1], got {absent_floor!r}")
        self.decay, self.start, self.floor, self.absent_floor = decay, start, floor, absent_floor
        self.values: dict[str, float] = {}

    def value(self, name: str) -> float:
        return self.values.get(name, self.start)

    def weight(self, name: str) -> float:
        """Sampling weight: the square root of the running loss (tempered, so the hardest
        label is not drawn to the exclusion of the rest), at least ``sqrt(floor)``."""
        return math.sqrt(max(self.value(name), self.floor))

    def absent_weight(self, name: str) -> float:
        """Weight of drawing ``name`` as an absent-structure prompt: one minus its running
        loss (how well it is found when present), at least ``absent_floor``. A label the
        model finds is prompted absent as often as any; one it has not learnt yet (or has
        lost) is prompted absent about ``absent_floor`` as often, so absent prompts do
        not push it to "never present" while it is rarely seen present; as it is learnt,
        its absent prompts return."""
        return max(1.0 - self.value(name), self.absent_floor)

    @torch.no_grad()
    def update(self, names: list[str], losses: torch.Tensor, targets: torch.Tensor) -> None:
        """Record one step.

        Args:
            names: the label name of each of the N prompts.
            losses: (N,) soft-Dice loss of each prompt in the step (the training loss's own,
                ``TextSegLoss.prompt_dice``).
            targets: (N, X, Y, Z) in [0, 1]; prompts without a voxel at or above 0.5 (absent:
                soft targets may hold a neighbour's edge) are skipped.
        """
        if not len(names) == losses.numel() == targets.shape[0]:
            raise ValueError(f"{len(names)} names, losses {tuple(losses.shape)}, targets {tuple(targets.shape)}")
        present = (targets.flatten(1) >= 0.5).any(1)
        for name, loss, here in zip(names, losses.float().flatten().tolist(), present.tolist()):
            if here:
                self.values[name] = self.decay * self.value(name) + (1 - self.decay) * loss
