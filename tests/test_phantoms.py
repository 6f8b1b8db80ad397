"""Tests of lib.data.phantoms (synthetic abdominal CT phantoms)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from lib.data.phantoms import (
    GALLBLADDER, KIDNEY_L, KIDNEY_R, LIVER, LIVER_LESION, SPLEEN, generate_phantom,
    phantom_seed, phantom_vocabulary, write_phantoms,
)
from lib.data.vocab import LabelEntry, Vocabulary

POOL = 12


@pytest.fixture(scope="module")
def pool() -> list:
    """A small pool of phantoms (raw seeds 0..11; contains hard and easy cases)."""
    return [generate_phantom(s) for s in range(POOL)]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store")
    write_phantoms(out, count=2, seed=3, progress=False)
    return out


def _world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    ijk = np.array(ndimage.center_of_mass(mask))
    return affine[:3, :3] @ ijk + affine[:3, 3]


def test_vocabulary():
    v = phantom_vocabulary()
    assert v.index_to_name()[1] == "liver" and v.index_to_name()[14] == "stomach"
    assert sorted(v.index_to_name()) == list(range(1, 15))
    assert v["kidneys"].indices == (3, 4) and v["lungs"].indices == (8, 9)
    prompts = set()
    for e in v:
        assert e.modality == "CT"
        assert 6 <= len(e.synonyms) <= 9 and len(e.eval_synonyms) == 2
        assert not set(e.eval_synonyms) & set(e.synonyms)
        for p in (e.name, *e.synonyms, *e.eval_synonyms):
            assert p.lower() not in prompts, p
            prompts.add(p.lower())
    assert v.resolve("tumor in the liver").name == "liver lesion"
    assert v.resolve("kidney (left)").name == "left kidney"


def test_write_layout_and_labels_json(store):
    ids = ["phantom_0000", "phantom_0001"]
    for pid in ids:
        assert (store / f"{pid}.nii.gz").is_file()
        assert (store / "labels" / "final" / f"{pid}.nii.gz").is_file()
    vocab = Vocabulary.load(store)
    single = vocab.index_to_name()
    meta = json.loads((store / "phantoms.json").read_text())
    assert sorted(meta) == ids
    for pid in ids:
        lab = nib.load(store / "labels" / "final" / f"{pid}.nii.gz")
        assert lab.get_data_dtype() == np.uint8
        values = set(np.unique(np.asarray(lab.dataobj)).tolist()) - {0}
        assert values <= set(single), values - set(single)
        img = nib.load(store / f"{pid}.nii.gz")
        # NIfTI round trip keeps spacing and affine
        assert np.allclose(img.header.get_zooms(), meta[pid]["spacing"], rtol=1e-6)
        assert np.allclose(lab.affine, img.affine)
        assert list(img.shape) == meta[pid]["shape"]
        ph = generate_phantom(phantom_seed(3, meta[pid]["index"]))
        assert np.allclose(img.affine, ph.affine, atol=1e-4)
        assert np.array_equal(np.asarray(img.dataobj), ph.image)
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")


def test_labels_json_merge_keeps_other_labels(tmp_path):
    other = Vocabulary({"brain": LabelEntry("brain", (50,), "MR", ("the brain",))})
    other.save(tmp_path)
    write_phantoms(tmp_path, count=1, seed=0, start=5, progress=False)
    v = Vocabulary.load(tmp_path)
    assert "brain" in v.names() and "liver" in v.names()
    assert (tmp_path / "phantom_0005.nii.gz").exists()


def test_determinism(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_phantoms(a, count=1, seed=11, progress=False)
    write_phantoms(b, count=1, seed=11, progress=False)
    write_phantoms(c, count=1, seed=12, progress=False)
    files = ["phantom_0000.nii.gz", "labels/final/phantom_0000.nii.gz", "labels.json", "phantoms.json"]
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / files[0]).read_bytes() != (c / files[0]).read_bytes()
    assert (a / files[1]).read_bytes() != (c / files[1]).read_bytes()


def test_left_is_left(pool):
    n = 0
    for ph in pool:
        lab, aff = ph.label, ph.affine
        assert np.all(np.diag(aff)[:3] > 0) and np.count_nonzero(aff[:3, :3] - np.diag(np.diag(aff[:3, :3]))) == 0
        if (lab == KIDNEY_L).any() and (lab == KIDNEY_R).any():
            assert _world_centroid(lab == KIDNEY_L, aff)[0] < _world_centroid(lab == KIDNEY_R, aff)[0]
            n += 1
        if (lab == LIVER).any() and (lab == SPLEEN).any():
            assert _world_centroid(lab == LIVER, aff)[0] > _world_centroid(lab == SPLEEN, aff)[0]
        body_x = _world_centroid(ph.image > -500, aff)[0]
        if (lab == LIVER).any():
            assert _world_centroid(lab == LIVER, aff)[0] > body_x
    assert n >= 6


def test_meta_ranges(pool):
    for ph in pool:
        m = ph.meta
        json.dumps(m)
        sp, shape = m["spacing"], m["shape"]
        assert ph.image.shape == tuple(shape) == ph.label.shape
        assert ph.image.dtype == np.int16 and ph.label.dtype == np.uint8
        assert 0.6 <= sp[0] == sp[1] <= 1.0 and 1.0 <= sp[2] <= 5.0
        assert np.allclose(np.diag(ph.affine)[:3], sp)
        assert all(48 <= n <= 384 for n in shape)
        assert m["phase"] in ("non-contrast", "arterial", "venous")
        assert m["difficulty"] in ("easy", "hard")
        assert (m["difficulty"] == "hard") == bool(m["reasons"])
        assert 0 <= m["n_lesions"] <= 4
        assert 4 <= m["noise_sd"] <= 50
        for organ in m["absent"]:
            idx = {"spleen": SPLEEN, "left kidney": KIDNEY_L, "right kidney": KIDNEY_R, "gallbladder": GALLBLADDER}[organ]
            assert not (ph.label == idx).any()


def test_lesions_inside_liver(pool):
    n = 0
    for ph in pool:
        les = ph.label == LIVER_LESION
        if not les.any():
            continue
        n += 1
        comps, k = ndimage.label(les)
        for c in range(1, k + 1):
            comp = comps == c
            if comp.sum() < 20:  # tiny fragments of a lesion cut by a vessel or the liver edge
                continue
            ring = ndimage.binary_dilation(comp) & ~comp
            # each lesion lies in the liver: its surroundings are mostly liver (or lesion)
            assert np.isin(ph.label[ring], [LIVER, LIVER_LESION]).mean() > 0.5
        # hypodense relative to the liver
        assert np.median(ph.image[les]) < np.median(ph.image[ph.label == LIVER])
    assert n >= 1


def test_pool_heterogeneity(pool):
    metas = [p.meta for p in pool]
    assert any(m["absent"] for m in metas)
    assert any(m["n_lesions"] > 0 for m in metas)
    assert any(m["cropped_organs"] for m in metas)
    hard = sum(m["difficulty"] == "hard" for m in metas)
    assert 2 <= hard <= POOL - 2
    # hard fraction is configurable
    assert all(generate_phantom(s, hard_fraction=0.0).meta["difficulty"] == "easy" for s in range(3))


def test_intensities_plausible(pool):
    for ph in pool:
        img, lab, m = ph.image, ph.label, ph.meta
        assert np.median(img[:4, -4:, :]) < -900  # air anterior to the body
        if (lab == 8).any() or (lab == 9).any():
            assert np.median(img[(lab == 8) | (lab == 9)]) < -600
        assert np.median(img[lab == 7]) > 150
        aorta = np.median(img[lab == 5])
        if m["phase"] == "arterial":
            assert aorta > 200
        elif m["phase"] == "non-contrast":
            assert aorta < 80
        if m["phase"] == "venous" and m["noise_sd"] < 20:
            assert 80 < np.median(img[lab == LIVER]) < 150
