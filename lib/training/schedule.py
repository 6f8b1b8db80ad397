"""Training schedules as pure functions of the step."""

from __future__ import annotations

import math

from ..config import TrainConfig


def stage2_start(cfg: TrainConfig) -> int:
    """The first step of stage 2."""
    return round(cfg.stage1_fraction * cfg.steps)


def stage_at(step: int, cfg: TrainConfig) -> int:
    """1 (positive-only prompts) for the first ``stage1_fraction`` of steps, then 2 (balanced)."""
    return 1 if step < stage2_start(cfg) else 2


def absent_fraction_at(step: int, cfg: TrainConfig) -> float:
    """Share of absent-structure prompts: 0 in stage 1, ``absent_fraction`` in stage 2,
    reached linearly over the first ``absent_ramp`` share of stage 2's steps."""
    if stage_at(step, cfg) == 1:
        return 0.0
    start = stage2_start(cfg)
    ramp = round(cfg.absent_ramp * (cfg.steps - start))
    return cfg.absent_fraction * min(1.0, (step - start + 1) / ramp) if ramp > 0 else cfg.absent_fraction


def loss_weights_at(step: int, cfg: TrainConfig) -> dict[str, float]:
    """Phase-scheduled loss weights: alignment, heatmap and pass 1 from the start; the
    refiner's (pass 2) loss only after the first ``align_fraction`` of steps."""
    refine = step >= round(cfg.align_fraction * cfg.steps)
    return {
        "align": cfg.w_align,
        "heatmap": cfg.w_heatmap,
        "pass1": cfg.w_pass1,
        "pass2": cfg.w_pass2 if refine else 0.0,
        "fg": cfg.w_fg,
        "blob": cfg.w_blob,
    }


def lr_at(step: int, cfg: TrainConfig, floor: float = 0.05) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``floor * lr`` at the last step."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
