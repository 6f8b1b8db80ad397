"""The served model: reload when the checkpoint changes, bounded encoding cache."""

import os
import shutil

from lib.infers.model_store import ModelStore


def test_published_model_is_picked_up_and_cache_is_bounded(tmp_path, tiny_checkpoint, phantom_studies):
    published = tmp_path / "model" / "textseg.pt"
    store = ModelStore(published, tiny_checkpoint, cache_mb=0)
    assert store.path() == tiny_checkpoint and store.is_valid()
    p1, v1 = store.predictor()
    image = str(phantom_studies / "phantom_0001.nii.gz")
    enc, hit = store.encoded(image)
    assert hit is False and store.cached_images() == 0  # 0 MB budget: nothing is kept
    store.cache_bytes = 10 * 2**30
    store.encoded(image)
    assert store.encoded(image)[1] is True and store.cached_images() == 1
    # training publishes a new checkpoint: served from now on, cache invalidated
    published.parent.mkdir()
    shutil.copy(tiny_checkpoint, published)
    os.utime(published, ns=(1, 10**18))
    p2, v2 = store.predictor()
    assert store.path() == published and v2 != v1 and p2 is not p1
    assert store.cached_images() == 0
