"""The server's default studies folder (lib.data.studies)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lib.data.studies import MARKER, build_sample_studies
from lib.data.vocab import Vocabulary

N_PHANTOMS, N_LABELLED = 3, 1


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    out = tmp_path_factory.mktemp("studies")
    summary = build_sample_studies(out, n_phantoms=N_PHANTOMS, n_labelled=N_LABELLED, seed=0, progress=False)
    return out, summary


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_summary(studies):
    out, s = studies
    assert s["built"] is True
    assert len(s["images"]) == N_PHANTOMS + 1 and "mni152_t1" in s["images"]
    assert len(s["labelled"]) == N_LABELLED + 1 and "mni152_t1" in s["labelled"]
    assert set(s["unlabelled"]) == set(s["images"]) - set(s["labelled"])
    assert json.loads((out / MARKER).read_text())["images"] == s["images"]
    vocab = Vocabulary.load(out / "labels.json")
    assert vocab.names(modality="MR") and vocab.names(modality="CT")


def test_local_datastore_reads_it(studies, tmp_path):
    from monailabel.datastore.local import LocalDatastore

    out, s = studies
    before = _snapshot(out)
    ds = LocalDatastore(str(out), extensions=("*.nii.gz", "*.nii"), auto_reload=False)
    assert sorted(ds.list_images()) == sorted(s["images"])
    assert sorted(ds.get_labeled_images()) == sorted(s["labelled"])
    assert sorted(ds.get_unlabeled_images()) == sorted(s["unlabelled"])
    after = _snapshot(out)  # the datastore adds its own files (datastore_v2.json, .lock) only
    assert {k: v for k, v in after.items() if k in before} == before


def test_second_build_is_noop(studies):
    out, s = studies
    before = _snapshot(out)
    again = build_sample_studies(out, n_phantoms=N_PHANTOMS, n_labelled=N_LABELLED, seed=0, progress=False)
    assert again["built"] is False
    assert again["images"] == s["images"] and again["labelled"] == s["labelled"]
    assert _snapshot(out) == before


def test_partial_build_is_rebuilt(tmp_path):
    out = tmp_path / "studies"
    s = build_sample_studies(out, n_phantoms=2, n_labelled=1, seed=1, progress=False)
    victim = out / f"{s['unlabelled'][0]}.nii.gz"
    victim.unlink()
    again = build_sample_studies(out, n_phantoms=2, n_labelled=1, seed=1, progress=False)
    assert again["built"] is True and victim.is_file()
    # other parameters: rebuilt too, with no stale phantom left over
    third = build_sample_studies(out, n_phantoms=1, n_labelled=0, seed=1, progress=False)
    assert third["built"] is True and third["labelled"] == ["mni152_t1"]
    assert sorted(p.name for p in out.glob("phantom_*.nii.gz")) == [f"{third['images'][0]}.nii.gz"]
    assert sorted(p.name for p in (out / "labels" / "final").glob("*.nii.gz")) == ["mni152_t1.nii.gz"]


def test_nifti_round_trip(studies):
    from monai.transforms import LoadImage

    out, s = studies
    loader = LoadImage(image_only=True)
    for image_id in s["images"]:
        paths = [out / f"{image_id}.nii.gz"]
        if image_id in s["labelled"]:
            paths.append(out / "labels" / "final" / f"{image_id}.nii.gz")
        ref = nib.load(paths[0])
        for p in paths:
            img = nib.load(p)
            assert img.shape == ref.shape
            np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
            np.testing.assert_allclose(img.header.get_zooms()[:3], ref.header.get_zooms()[:3], atol=1e-6)
            t = loader(str(p))
            np.testing.assert_allclose(np.asarray(t.affine), img.affine, atol=1e-4)
            np.testing.assert_allclose(np.asarray(t.pixdim[:3]), img.header.get_zooms()[:3], atol=1e-5)
    lab = nib.load(out / "labels" / "final" / "mni152_t1.nii.gz")
    assert np.issubdtype(np.asarray(lab.dataobj).dtype, np.integer)
