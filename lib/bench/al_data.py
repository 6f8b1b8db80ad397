"""Phantom pool and test set for the active-learning benchmark, resampled to a coarse grid
so that dozens of annotate-train-evaluate rounds fit on 2 CPU cores."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
from monai.transforms import Spacing
from tqdm import tqdm

from ..data.phantoms import LABELS_FILE, PHANTOMS_FILE, write_phantoms
from ..data.preprocess import load_volume
from ..inference.service import save_like

logger = logging.getLogger(__name__)

MARKER = ".textseg-al-data.json"
POOL_SEED, TEST_SEED = 3000, 4000  # disjoint from bench-accuracy's 1000 / 2000


def resample_datastore(src: Path, dst: Path, spacing: float, progress: bool = True) -> list[str]:
    """Copy a phantom datastore to ``dst`` on an isotropic ``spacing`` grid (image linear,
    labels nearest). Returns the ids written."""
    (dst / "labels" / "final").mkdir(parents=True, exist_ok=True)
    image_tf = Spacing(pixdim=(spacing,) * 3, mode="bilinear")
    label_tf = Spacing(pixdim=(spacing,) * 3, mode="nearest")
    ids = sorted(p.name[: -len(".nii.gz")] for p in src.glob("*.nii.gz"))
    for pid in tqdm(ids, desc=f"resample to {spacing} mm", disable=not progress):
        img = image_tf(load_volume(str(src / f"{pid}.nii.gz")))
        lab = label_tf(load_volume(str(src / "labels" / "final" / f"{pid}.nii.gz"), label=True))
        affine = np.asarray(img.affine, dtype=np.float64)
        save_like(np.rint(img[0].numpy()).astype(np.int16), affine, dst / f"{pid}.nii.gz")
        save_like(np.rint(lab[0].numpy()).astype(np.uint8), affine, dst / "labels" / "final" / f"{pid}.nii.gz")
    for name in (LABELS_FILE, PHANTOMS_FILE):
        shutil.copy(src / name, dst / name)
    return ids


def build_al_data(root: Path, pool: int, test: int, spacing: float, progress: bool = True) -> tuple[Path, Path]:
    """``root/pool`` and ``root/test`` (each a datastore with final labels); reused when a
    previous call made them with the same parameters. Returns (pool dir, test dir)."""
    root = Path(root)
    params = {"pool": pool, "test": test, "spacing": spacing, "pool_seed": POOL_SEED, "test_seed": TEST_SEED}
    marker = root / MARKER
    if marker.exists() and json.loads(marker.read_text()) == params:
        logger.info("reusing active-learning data in %s", root)
        return root / "pool", root / "test"
    for name, count, seed in (("pool", pool, POOL_SEED), ("test", test, TEST_SEED)):
        raw, out = root / f"raw_{name}", root / name
        for d in (raw, out):
            shutil.rmtree(d, ignore_errors=True)
        write_phantoms(raw, count, seed=seed, progress=progress)
        resample_datastore(raw, out, spacing, progress=progress)
        shutil.rmtree(raw)
    marker.write_text(json.dumps(params))
    return root / "pool", root / "test"
