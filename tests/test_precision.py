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


def test_device_auto_follows_cuda_and_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert prec.resolve_device("auto") == torch.device("cpu")
    assert prec.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        prec.resolve_device("cuda")
    with pytest.raises(ValueError, match="device"):
        prec.resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert prec.resolve_device("auto") == torch.device("cuda")
    assert prec.resolve_device("cpu") == torch.device("cpu")


def test_bf16_on_cuda_asks_the_gpu_not_the_cpu(monkeypatch, caplog):
    monkeypatch.setattr(prec, "bf16_supported", lambda: False)  # the CPU has none
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert prec.resolve_precision("bf16", "cuda") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with caplog.at_level(logging.WARNING):
        assert prec.resolve_precision("bf16", torch.device("cuda")) == "fp32"
    assert "GPU" in caplog.text


def test_train_config_rejects_an_unknown_device():
    from lib.config import Config

    assert Config.from_dict({"train": {"device": "cpu"}}).train.device == "cpu"
    with pytest.raises(ValueError, match="device"):
        Config.from_dict({"train": {"device": "cuda:0"}})
