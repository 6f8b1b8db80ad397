"""The real pretrained text encoder loads offline and caches prompts."""

import torch

from lib.model.text_encoder import TextEncoder, shared_text_encoder


def test_real_encoder_loads_offline_and_caches(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = TextEncoder("default")
    assert enc.dim == 384
    a = enc.encode(["spleen", "left kidney", "spleen"])
    assert a.shape == (3, 384) and torch.allclose(a.norm(dim=1), torch.ones(3), atol=1e-5)
    assert enc.calls == 2  # the repeated prompt was encoded once
    b = enc.encode(["left kidney", "liver"])
    assert enc.calls == 3 and torch.equal(a[1], b[0])
    # real weights: a paraphrase is closer than an unrelated word
    s = enc.encode(["spleen", "splenic parenchyma", "hippocampus"])
    assert float(s[0] @ s[1]) > float(s[0] @ s[2])


def test_cache_is_bounded_and_shared():
    enc = TextEncoder("random-tiny", cache_size=2)
    enc.encode(["a b", "c d", "e f"])
    assert len(enc._cache) == 2
    assert shared_text_encoder("random-tiny") is shared_text_encoder("random-tiny")


def test_missing_local_folder_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="text encoder folder"):
        TextEncoder(str(tmp_path / "nope"))
