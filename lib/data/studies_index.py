"""Finding images and final labels in a studies folder (MONAI Label's local datastore
layout), and the stable train/validation split."""

from __future__ import annotations

import hashlib
from pathlib import Path

IMAGE_SUFFIXES = (".nii.gz", ".nii")


def image_id(path: str | Path) -> str:
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def list_images(studies: str | Path) -> dict[str, Path]:
    """id -> image path for the NIfTI images at the top of a studies folder."""
    studies = Path(studies)
    if not studies.is_dir():
        raise FileNotFoundError(f"studies folder not found: {studies}")
    return {image_id(p): p for p in sorted(studies.iterdir()) if p.is_file() and p.name.endswith(IMAGE_SUFFIXES)}


def labelled_pairs(studies: str | Path, tag: str = "final") -> list[tuple[str, str, str]]:
    """(id, image path, label path) for every image with a label under ``labels/<tag>``."""
    studies = Path(studies)
    labels = {image_id(p): p for p in (studies / "labels" / tag).glob("*.nii*")} if (studies / "labels" / tag).is_dir() else {}
    return [(i, str(p), str(labels[i])) for i, p in list_images(studies).items() if i in labels]


def in_validation(case_id: str, val_percent: float) -> bool:
    """Stable split: a case belongs to validation iff a hash of its id falls below
    ``val_percent``. It never changes pool when other cases are added or retrains run."""
    if not 0 <= val_percent < 100:
        raise ValueError(f"val_percent must be in [0, 100), got {val_percent!r}")
    h = int(hashlib.sha256(case_id.encode()).hexdigest()[:8], 16) % 10_000
    return h < val_percent * 100


def split(ids: list[str], val_percent: float, min_train: int = 1) -> tuple[list[str], list[str]]:
    """Split ids into (train, val) with ``in_validation``; validation is emptied when it
    would leave fewer than ``min_train`` training cases."""
    val = [i for i in ids if in_validation(i, val_percent)]
    train = [i for i in ids if i not in val]
    if len(train) < min_train:
        return list(ids), []
    return train, val
