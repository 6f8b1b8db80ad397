"""lib.model.upsample: the separable trilinear upsampling equals torch's (values and input
gradients, float64, to rounding) for whole factors per axis, including 1 and the clamped
edges, and hands everything else to F.interpolate unchanged."""

import pytest
import torch
import torch.nn.functional as F

from lib.model.upsample import upsample_axis, upsample_trilinear, whole_factors


def _torch(x, size):
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


@pytest.mark.parametrize("shape,size", [
    ((1, 3, 4, 5, 3), (8, 10, 6)),      # x2, as the decoder and pass 1 use it
    ((8, 1, 8, 8, 6), (32, 32, 24)),    # x4, the adapter's map
    ((2, 2, 3, 4, 5), (9, 4, 15)),      # mixed factors, one axis unchanged
    ((1, 1, 1, 2, 1), (3, 6, 2)),       # axes of one voxel: both neighbours are the edge
])
def test_values_and_gradients_match_torch(shape, size):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    ref = x.detach().clone().requires_grad_()
    grad = torch.randn((shape[0], shape[1], *size), dtype=torch.float64)
    out, expected = upsample_trilinear(x, size), _torch(ref, size)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-12)
    (out * grad).sum().backward()
    (expected * grad).sum().backward()
    assert torch.allclose(x.grad, ref.grad, atol=1e-12)


def test_float32_matches_to_rounding():
    torch.manual_seed(1)
    x = torch.randn(1, 4, 8, 8, 6)
    assert (upsample_trilinear(x, (16, 16, 12)) - _torch(x, (16, 16, 12))).abs().max() < 1e-5


def test_one_axis_by_hand():
    x = torch.tensor([0.0, 4.0, 8.0]).reshape(1, 1, 3, 1, 1)
    # phases at -0.25 and +0.25 of each source voxel, the ends clamped
    assert upsample_axis(x, 2, 2).flatten().tolist() == [0.0, 1.0, 3.0, 5.0, 7.0, 8.0]
    assert upsample_axis(x, 2, 1) is x


def test_whole_factors():
    assert whole_factors((4, 5, 3), (8, 10, 3)) == (2, 2, 1)
    assert whole_factors((4, 5, 3), (8, 11, 3)) is None  # not a multiple
    assert whole_factors((4, 5, 3), (2, 5, 3)) is None   # shrinking
    assert whole_factors((4, 5), (8, 10, 6)) is None


@pytest.mark.parametrize("x,size", [
    (torch.randn(1, 2, 4, 5, 3), (7, 10, 6)),                       # a size that is not a whole multiple
    (torch.randn(1, 2, 4, 5, 3).to(torch.bfloat16), (8, 10, 6)),    # bfloat16: torch's own kernel
])
def test_other_cases_are_torch_itself(x, size):
    assert torch.equal(upsample_trilinear(x, size), _torch(x, size))
