"""Training precision: bf16 autocast where the CPU has it, float32 otherwise."""

import logging

import pytest
import torch

from lib.training import precision as prec


def test_resolve_keeps_fp32_and_rejects_unknown():
    assert prec.resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        prec.resolve_precision("fp16")


def test_bf16_falls_back_to_fp32_without_native_support(monkeypatch, caplog):
    monkeypatch.setattr(prec, "bf16_supported", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert prec.resolve_precision("bf16") == "fp32"
    assert "bfloat16" in caplog.text
    monkeypatch.setattr(prec, "bf16_supported", lambda: True)
    assert prec.resolve_precision("bf16") == "bf16"


def test_autocast_runs_convolutions_in_bf16_and_outputs_come_back_float32():
    conv = torch.nn.Conv3d(2, 3, 3, padding=1)
    x = torch.randn(1, 2, 8, 8, 8)
    with prec.autocast("bf16"):
        y = conv(x)
    assert y.dtype == torch.bfloat16
    with prec.autocast("fp32"):
        assert conv(x).dtype == torch.float32
    out = prec.as_float32({"a": y})
    assert out["a"].dtype == torch.float32 and torch.allclose(out["a"], conv(x), atol=0.1)
