"""Separable trilinear upsampling: equal to F.interpolate in values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from lib.model.upsample import upsample_trilinear


def _reference(x, size):
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


@pytest.mark.parametrize("shape,size", [
    ((2, 3, 4, 5, 3), (8, 10, 6)),      # x2 on every axis
    ((3, 1, 2, 3, 2), (8, 12, 8)),      # x4 (the adapter's stride 8 -> 2)
    ((1, 2, 1, 4, 3), (2, 8, 3)),       # a one-voxel axis, and one left as it is
])
def test_values_and_gradients_match_interpolate(shape, size):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    ours = upsample_trilinear(x, size)
    ref = _reference(x, size)
    assert ours.shape == ref.shape == (*shape[:2], *size)
    torch.testing.assert_close(ours, ref)
    g = torch.randn_like(ref)
    (gx_ours,) = torch.autograd.grad(ours, x, g)
    (gx_ref,) = torch.autograd.grad(ref, x, g)
    torch.testing.assert_close(gx_ours, gx_ref)


def test_other_sizes_fall_back_and_dtype_is_kept():
    x = torch.randn(1, 2, 3, 4, 5)
    torch.testing.assert_close(upsample_trilinear(x, (5, 6, 7)), _reference(x, (5, 6, 7)))
    assert upsample_trilinear(x.bfloat16(), (6, 8, 10)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="expected"):
        upsample_trilinear(torch.randn(2, 3, 4), (8,))
