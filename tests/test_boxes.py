"""lib.data.boxes.bounding_box: the box of the True voxels, grown by a margin (one or per
axis) and clipped to the array; None for an empty mask; bad margins refused."""

import numpy as np
import pytest

from lib.data.boxes import bounding_box


def test_box_margin_and_clipping():
    mask = np.zeros((10, 8, 6), dtype=bool)
    mask[2:4, 5, 0:2] = True
    assert bounding_box(mask) == (slice(2, 4), slice(5, 6), slice(0, 2))
    assert bounding_box(mask, 1) == (slice(1, 5), slice(4, 7), slice(0, 3))
    assert bounding_box(mask, (3, 0, 10)) == (slice(0, 7), slice(5, 6), slice(0, 6))
    assert bounding_box(mask, np.array([0, 2, 0])) == (slice(2, 4), slice(3, 8), slice(0, 2))
    # the box holds every True voxel and nothing outside it is True
    box = bounding_box(mask, 1)
    assert mask[box].sum() == mask.sum()


def test_empty_mask_and_bad_margins():
    assert bounding_box(np.zeros((4, 4, 4), dtype=bool), 2) is None
    mask = np.ones((4, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match="margin"):
        bounding_box(mask, -1)
    with pytest.raises(ValueError, match="margin"):
        bounding_box(mask, (1, 1))
