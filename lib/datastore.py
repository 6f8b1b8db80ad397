"""A local datastore that validates a label before it can replace a saved one."""

from __future__ import annotations

import logging
from typing import Any

import nibabel as nib
import numpy as np
from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore

logger = logging.getLogger(__name__)


class LabelError(ValueError):
    """A label file that does not fit its image."""


def label_indices(label_info: dict[str, Any] | None) -> dict[int, str] | None:
    """{voxel value: segment name} from a saved label's ``label_info`` list
    (``[{"name": ..., "idx": ...}]``), or None when the label has none."""
    items = (label_info or {}).get("label_info")
    if not items:
        return None
    out = {}
    for item in items:
        try:
            out[int(item["idx"])] = str(item["name"])
        except (KeyError, TypeError, ValueError) as e:
            raise LabelError(f"label_info entries need 'name' and integer 'idx', got {item!r}") from e
    return out


def check_label_file(label_path: str, image_path: str, label_info: dict[str, Any] | None) -> np.ndarray:
    """Validate a label map against its image: readable 3D NIfTI, same grid, whole
    non-negative values, every value named in ``label_info`` (when given).
    Returns the sorted non-zero values. Raises LabelError."""
    try:
        lab = nib.load(label_path)
        data = np.asanyarray(lab.dataobj)
    except Exception as e:  # noqa: BLE001 - nibabel raises many types for bad files
        raise LabelError(f"cannot read the label file: {e}") from e
    img = nib.load(image_path)
    shape = tuple(int(s) for s in np.squeeze(data).shape)
    if len(shape) != 3:
        raise LabelError(f"label must be a 3D volume, got shape {data.shape}")
    if shape != tuple(img.shape[:3]):
        raise LabelError(f"label shape {shape} does not match the image shape {tuple(img.shape[:3])}")
    if not np.allclose(lab.affine, img.affine, atol=1e-2):
        raise LabelError("label affine (orientation/spacing/origin) does not match the image")
    if not np.all(np.isfinite(data)) or np.any(data < 0) or np.any(np.mod(data, 1) != 0):
        raise LabelError("label values must be whole non-negative numbers")
    values = sorted(int(v) for v in np.unique(data) if v != 0)
    named = label_indices(label_info)
    if named is not None:
        unknown = [v for v in values if v not in named]
        if unknown:
            raise LabelError(f"label values {unknown} are not in its label_info {named}")
    return np.asarray(values)


class ValidatingDatastore(LocalDatastore):
    """LocalDatastore whose ``save_label`` refuses (HTTP 422) a label that does not fit its
    image, before anything is written, so a bad upload never replaces a saved label."""

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        image_path = self.get_image_uri(image_id)
        if not image_path:
            raise HTTPException(status_code=404, detail=f"unknown image id {image_id!r}")
        try:
            check_label_file(label_filename, image_path, label_info)
        except LabelError as e:
            logger.warning("refused label for %s: %s", image_id, e)
            raise HTTPException(status_code=422, detail=f"label for {image_id!r} refused: {e}") from e
        return super().save_label(image_id, label_filename, label_tag, label_info)
