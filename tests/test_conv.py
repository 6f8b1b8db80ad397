"""lib.model.conv: the oneDNN route of float32 CPU convolutions gives torch's values and
gradients (against a float64 reference), is taken exactly where torch would use its
reference kernel, and keeps nn.Conv3d's parameters."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib.model.conv import Conv3d, routes_to_onednn

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch build")

CASES = [  # in, out, kernel, stride, padding, spatial, bias, channels-last input
    (16, 16, (3, 3, 1), 1, (1, 1, 0), (32, 32, 24), False, False),
    (16, 16, (1, 1, 3), 1, (0, 0, 1), (32, 32, 24), False, True),
    (16, 32, (3, 3, 3), 2, 1, (32, 32, 24), False, False),
    (16, 32, (3, 3, 3), 2, 1, (31, 33, 23), True, True),  # odd sizes: the forward's floor drops rows
    (32, 8, 1, 1, 0, (16, 16, 12), True, False),
]


def _reference(x, weight, bias, stride, padding, grad):
    """Output and gradients of torch's own float64 convolution."""
    x64 = x.detach().double().requires_grad_()
    w64 = weight.detach().double().requires_grad_()
    b64 = bias.detach().double().requires_grad_() if bias is not None else None
    y = F.conv3d(x64, w64, b64, stride, padding)
    (y * grad.double()).sum().backward()
    return y, x64.grad, w64.grad, b64.grad if b64 is not None else None


def _close(a, b):
    return float((a.detach().double() - b.detach()).abs().max() / b.detach().abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("cin,cout,k,stride,padding,spatial,bias,channels_last", CASES)
def test_values_and_gradients_match_torch(cin, cout, k, stride, padding, spatial, bias, channels_last):
    torch.manual_seed(0)
    conv = Conv3d(cin, cout, k, stride=stride, padding=padding, bias=bias)
    x = torch.randn(1, cin, *spatial)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    assert routes_to_onednn(x, conv.weight, conv.stride, conv.padding, conv.dilation, conv.groups)
    x.requires_grad_()
    y = conv(x)
    assert y.grad_fn is not None and "OneDnn" in type(y.grad_fn).__name__
    grad = torch.randn_like(y)
    (y * grad).sum().backward()
    ref_y, ref_gx, ref_gw, ref_gb = _reference(x, conv.weight, conv.bias, conv.stride, conv.padding, grad)
    assert y.shape == ref_y.shape and x.grad.shape == x.shape
    assert _close(y, ref_y) < 1e-5
    assert _close(x.grad, ref_gx) < 1e-5
    assert _close(conv.weight.grad, ref_gw) < 1e-5
    if bias:
        assert _close(conv.bias.grad, ref_gb) < 1e-5
    with torch.no_grad():  # inference: the forward alone, same values
        assert _close(conv(x), ref_y) < 1e-5


def test_route_only_where_torch_uses_its_reference_kernel():
    weight = torch.randn(8, 8, 3, 3, 1)
    small, large = torch.randn(1, 8, 16, 16, 12), torch.randn(1, 8, 64, 64, 48)
    args = ((1, 1, 1), (1, 1, 0), (1, 1, 1), 1)
    assert routes_to_onednn(small, weight, *args)
    assert not routes_to_onednn(large, weight, *args)  # torch already runs this on oneDNN
    assert not routes_to_onednn(small.double(), weight.double(), *args)
    assert not routes_to_onednn(small, weight, (1, 1, 1), (1, 1, 0), (2, 2, 1), 1)  # dilated
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: torch's path (it casts)
        assert not routes_to_onednn(small, weight, *args)


def test_other_convolutions_are_torch_and_state_dict_is_unchanged():
    torch.manual_seed(0)
    ours, theirs = Conv3d(4, 6, (3, 3, 1), padding=(1, 1, 0), grad_channels_last=True), nn.Conv3d(4, 6, (3, 3, 1))
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs = nn.Conv3d(4, 6, (3, 3, 1), padding=(1, 1, 0))
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 10, 12, 8, requires_grad=True)  # a batch of two: torch's own route
    assert not routes_to_onednn(x, ours.weight, ours.stride, ours.padding, ours.dilation, 1)
    y = ours(x)
    assert "OneDnn" not in type(y.grad_fn).__name__
    assert torch.allclose(y, theirs(x), atol=1e-6)
