"""Mapping working-grid maps back to the input grid: the separable path must agree with
MONAI's SpatialResample (the reference) wherever it is used."""

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import SpatialResample

from lib.data.preprocess import axis_aligned_map, prepare, to_original_grid


def _volume(shape, affine):
    g = torch.Generator().manual_seed(0)
    img = MetaTensor(torch.rand(1, *shape, generator=g) * 1000 - 500, affine=torch.as_tensor(affine, dtype=torch.float64))
    return prepare(img, 2.0, "CT")


def _reference(values, vol):
    src = MetaTensor(values.float(), affine=vol.affine)
    out = SpatialResample(mode="bilinear", padding_mode="border", dtype=torch.float32)(
        src, dst_affine=vol.original_affine, spatial_size=vol.original_shape)
    return out.as_tensor()


AFFINES = {
    "anisotropic CT (0.7 x 0.7 x 3.1 mm)": (np.diag([0.7, 0.7, 3.1, 1.0]), (40, 36, 9)),
    "LAS MRI with offsets": (np.array([[-1.0, 0, 0, 90], [0, 1.0, 0, -126], [0, 0, 1.0, -72], [0, 0, 0, 1]]), (30, 34, 28)),
    "axes permuted and flipped (sagittal)": (np.array([[0, 0, -1.2, 10], [-0.9, 0, 0, 5], [0, 1.5, 0, -3], [0, 0, 0, 1]]),
                                             (20, 24, 18)),
}


@pytest.mark.parametrize("name", list(AFFINES))
def test_separable_path_matches_monai(name):
    affine, shape = AFFINES[name]
    vol = _volume(shape, affine)
    assert axis_aligned_map(vol.affine, vol.original_affine, vol.original_shape) is not None
    values = torch.rand(3, *vol.image.shape[1:], generator=torch.Generator().manual_seed(1))
    out = to_original_grid(values, vol)
    assert out.shape == (3, *shape) and out.dtype == torch.float32
    assert torch.allclose(out, _reference(values, vol), atol=1e-5)


def test_oblique_input_keeps_its_directions_on_the_working_grid():
    """MONAI's Spacing keeps an oblique input's directions, so its working grid is still
    parallel to it and the separable path applies."""
    c, s = math.cos(0.3), math.sin(0.3)
    vol = _volume((24, 24, 10), np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]]))
    values = torch.rand(2, *vol.image.shape[1:], generator=torch.Generator().manual_seed(2))
    assert torch.allclose(to_original_grid(values, vol), _reference(values, vol), atol=1e-5)


def test_grids_at_an_angle_are_not_axis_aligned():
    c, s = math.cos(0.3), math.sin(0.3)
    rotated = torch.tensor([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]], dtype=torch.float64)
    assert axis_aligned_map(torch.eye(4, dtype=torch.float64), rotated, (4, 4, 4)) is None
    mapped = axis_aligned_map(2 * torch.eye(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64), (3, 4, 5))
    assert [w for w, _ in mapped] == [0, 1, 2] and mapped[2][1].tolist() == pytest.approx([0, 0.5, 1.0, 1.5, 2.0])
