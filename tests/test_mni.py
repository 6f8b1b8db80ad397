"""The real MRI sample: MNI152 T1 template + AAL3-derived labels (lib.data.mni)."""

from __future__ import annotations

import socket

import nibabel as nib
import numpy as np
import pytest

from lib.data.mni import FIRST_INDEX, mni_vocabulary, write_mni_sample
from lib.data.vocab import Vocabulary


def _no_network(*args, **kwargs):
    raise AssertionError("the MNI sample must not touch the network")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("mni")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "getaddrinfo", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        image_id = write_mni_sample(out)
    img = nib.load(out / f"{image_id}.nii.gz")
    lab = nib.load(out / "labels" / "final" / f"{image_id}.nii.gz")
    return out, image_id, img, lab, np.asarray(lab.dataobj)


def test_label_map_on_image_grid(built):
    out, image_id, img, lab, labels = built
    assert image_id == "mni152_t1"
    assert img.shape == (197, 233, 189) == lab.shape
    np.testing.assert_allclose(img.affine, lab.affine)
    np.testing.assert_allclose(img.header.get_zooms()[:3], (1.0, 1.0, 1.0))
    assert np.issubdtype(labels.dtype, np.integer)
    data = np.asarray(img.dataobj)
    assert data.max() > 100 and data.min() >= 0  # a real image, not empty


def test_every_index_is_a_single_label(built):
    out, _, _, _, labels = built
    vocab = Vocabulary.load(out / "labels.json")
    single = vocab.index_to_name()
    present = set(np.unique(labels).tolist()) - {0}
    assert present <= set(single), present - set(single)
    assert min(present) >= FIRST_INDEX
    # every single-index MR label actually occurs
    mr = {e.indices[0] for e in vocab if e.modality == "MR" and not e.composite}
    assert mr == present
    for e in vocab:
        assert e.modality == "MR"
        assert set(e.indices) <= set(single)
        assert 5 <= len(e.synonyms) <= 8, e.name
        assert len(e.eval_synonyms) == 2, e.name
        assert not set(e.eval_synonyms) & set(e.synonyms), e.name
        assert e.name not in e.synonyms
    assert vocab["brain"].indices == tuple(sorted(present))
    assert vocab.resolve("L hippocampus").name == "left hippocampus"
    assert vocab.resolve("right caudate nucleus").name == "right caudate"


def test_left_is_negative_x(built):
    _, _, _, lab, labels = built
    vocab = mni_vocabulary()
    sided = [e for e in vocab if not e.composite and e.name.split()[0] in ("left", "right")]
    assert len(sided) >= 16
    for e in sided:
        ijk = np.argwhere(labels == e.indices[0])
        xyz = nib.affines.apply_affine(lab.affine, ijk)
        mean_x = xyz[:, 0].mean()
        if e.name.startswith("left "):
            assert mean_x < -5, (e.name, mean_x)
            assert (xyz[:, 0] < 0).mean() > 0.95, e.name
        else:
            assert mean_x > 5, (e.name, mean_x)
            assert (xyz[:, 0] > 0).mean() > 0.95, e.name


def test_sizes_plausible(built):
    _, _, _, _, labels = built
    vocab = mni_vocabulary()
    counts = np.bincount(labels.ravel())

    def n(name):
        return int(sum(counts[i] for i in vocab[name].indices if i < len(counts)))

    for side in ("left", "right"):
        assert 3000 < n(f"{side} hippocampus") < 12000
        assert 1000 < n(f"{side} amygdala") < 4000
        assert 5000 < n(f"{side} thalamus") < 15000
        assert 50000 < n(f"{side} cerebellar hemisphere") < 150000
    assert 1.2e6 < n("brain") < 2.2e6  # about 1.2-1.6 l brain + csf, 1 mm voxels
    assert n("white matter") > 3e5 and n("cerebral cortex") > 5e5


def test_labels_json_merges(built, tmp_path, monkeypatch):
    from lib.data import mni
    from lib.data.vocab import LabelEntry

    out, *_ = built
    vocab = Vocabulary.load(out / "labels.json")
    assert set(vocab.names()) == set(mni_vocabulary().names())
    # merging into an existing vocabulary keeps its labels (volume work skipped here)
    Vocabulary({"liver": LabelEntry("liver", (1,), "CT", ("the liver",), ("hepar",))}).save(tmp_path / "labels.json")
    tiny = (np.zeros((2, 2, 2), np.int16), np.zeros((2, 2, 2), np.uint8), np.eye(4))
    monkeypatch.setattr(mni, "build_mni_arrays", lambda: tiny)
    write_mni_sample(tmp_path)
    merged = Vocabulary.load(tmp_path / "labels.json")
    assert "liver" in merged.names() and "left hippocampus" in merged.names()


def test_deterministic_bytes(built, tmp_path):
    out, image_id, *_ = built
    write_mni_sample(tmp_path, image_id)
    for rel in (f"{image_id}.nii.gz", f"labels/final/{image_id}.nii.gz", "labels.json"):
        assert (out / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_resampling_matches_scipy():
    """The integer-shift fast path equals scipy's nearest-neighbour affine resampling."""
    from scipy import ndimage

    from lib.data.mni import _aal3_paths, _resample_nearest

    aal = nib.load(_aal3_paths()[0])
    data = np.asarray(aal.dataobj).astype(np.int32)
    dst = np.array([[1.0, 0, 0, -98], [0, 1, 0, -134], [0, 0, 1, -72], [0, 0, 0, 1]])
    shape = (197, 233, 189)
    fast = _resample_nearest(data, aal.affine, dst, shape)
    m = np.linalg.inv(aal.affine) @ dst
    ref = ndimage.affine_transform(data, m[:3, :3], m[:3, 3], output_shape=shape, order=0)
    np.testing.assert_array_equal(fast, ref)
    # a non-trivial grid takes the general path
    dst2 = dst.copy()
    dst2[:3, :3] *= 2.0
    coarse = _resample_nearest(data, aal.affine, dst2, (99, 117, 95))
    assert set(np.unique(coarse)) <= set(np.unique(data))
