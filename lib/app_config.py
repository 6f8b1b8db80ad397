"""The MONAI Label app's settings, parsed once from ``--conf key value`` strings."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO_ROOT / "models" / "textseg_default.pt"


def _bool(name: str, value: str) -> bool:
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"--conf {name}: expected true/false, got {value!r}")


@dataclass(frozen=True)
class AppSettings:
    """Settings of the textseg MONAI Label app.

    Attributes:
        default_model: checkpoint served until training publishes one in the app's model dir.
        cache_mb: memory for cached image encodings (oldest evicted first).
        retrain_every: start a training run after this many newly saved final labels (0: off).
        train_steps: optimiser steps of one online training run.
        train_minutes: wall-clock budget of one online training run.
        train_lr: peak learning rate of online training runs.
        val_percent: stable validation share of labelled volumes.
        max_prompts: scoring uses at most this many vocabulary prompts per modality.
        al_calibrate: the uncertainty strategy ranks each prompt's uncertainty across the
            pool before averaging (see ``lib.strategies.ranking.calibrated_scores``).
        al_density: weight of representativeness in the uncertainty strategy (0: off).
        al_random: share of the uncertainty strategy's picks made at random.
        background_nice: the tasks MONAI Label runs in their own processes (scoring,
            training, batch inference) lower their CPU priority by this much so that prompts stay fast while
            they run (``lib.background``; 0: off).
        exclusive_share: the served model's exclusivity clean-up (``ModelConfig.exclusive_share``:
            a lesion or cyst mask piece of which this share lies in a neighbouring organ's mask
            is dropped; 0: off, the default). Needs a checkpoint with label neighbours (written
            by ``train``; ``label-stats`` adds them to older ones).
    """

    default_model: str = str(DEFAULT_CHECKPOINT)
    cache_mb: int = 1024
    retrain_every: int = 0
    train_steps: int = 300
    train_minutes: float = 10.0
    train_lr: float = 1e-3
    val_percent: float = 20.0
    max_prompts: int = 16
    al_calibrate: bool = True
    al_density: float = 1.0
    al_random: float = 0.0
    background_nice: int = 10
    exclusive_share: float = 0.0

    @classmethod
    def from_conf(cls, conf: Mapping[str, str] | None) -> "AppSettings":
        conf = dict(conf or {})
        kwargs = {}
        for f in fields(cls):
            if f.name not in conf:
                continue
            raw = conf[f.name]
            try:
                parse = {"int": int, "float": float, "bool": lambda v, n=f.name: _bool(n, v)}.get(f.type, str)
                kwargs[f.name] = parse(raw)
            except ValueError as e:
                raise ValueError(f"--conf {f.name}: cannot parse {raw!r} ({e})") from e
        s = cls(**kwargs)
        if s.cache_mb < 0 or s.retrain_every < 0 or s.train_steps < 1 or s.max_prompts < 1:
            raise ValueError(f"invalid app settings: {s}")
        if not s.train_lr > 0:
            raise ValueError(f"--conf train_lr must be > 0, got {s.train_lr}")
        if s.al_density < 0 or not 0 <= s.al_random <= 1:
            raise ValueError(f"--conf al_density must be >= 0 and al_random in [0, 1]: {s}")
        if not 0 <= s.background_nice <= 19:
            raise ValueError(f"--conf background_nice must be in [0, 19], got {s.background_nice}")
        if not 0 <= s.exclusive_share <= 1:
            raise ValueError(f"--conf exclusive_share must be in [0, 1], got {s.exclusive_share}")
        if not 0 <= s.val_percent < 100:
            raise ValueError(f"--conf val_percent must be in [0, 100), got {s.val_percent}")
        return s
