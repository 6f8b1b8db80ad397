"""Trainer helpers: stable split, label-name remapping, label validation, time budget."""

import nibabel as nib
import numpy as np
import pytest
import torch

from lib.data.studies_index import in_validation, split
from lib.data.vocab import LabelEntry, Vocabulary
from lib.datastore import LabelError, check_label_file, label_indices
from lib.trainers.textseg import apply_mapping, remap_names
from lib.training.loop import fit_steps, recent_pace


def test_split_is_stable_when_cases_are_added():
    ids = [f"case_{i:03d}" for i in range(200)]
    train, val = split(ids, 20)
    assert 20 <= len(val) <= 60
    train2, val2 = split(ids + [f"new_{i}" for i in range(50)], 20)
    assert set(val) <= set(val2) and set(train) <= set(train2)
    assert in_validation("case_001", 20) == in_validation("case_001", 20)
    assert split(["only"], 99.9) == (["only"], [])
    with pytest.raises(ValueError):
        in_validation("x", 100)


def test_remap_segment_names_to_the_vocabulary():
    vocab = Vocabulary({"liver": LabelEntry("liver", (1,), "CT", ("hepar",)),
                        "kidneys": LabelEntry("kidneys", (3, 4), "CT", composite=True)})
    mapping, new = remap_names({1: "Hepar", 2: "Portal Vein"}, vocab, "CT")
    assert mapping == {1: 1, 2: 5} and [e.name for e in new] == ["portal vein"]
    assert vocab.resolve("portal vein").indices == (5,) and vocab["portal vein"].modality == "CT"
    with pytest.raises(ValueError, match="union"):
        remap_names({1: "kidneys"}, vocab, "CT")
    assert remap_names(None, vocab, "CT") == ({}, [])
    with pytest.raises(ValueError):
        remap_names({1: "###"}, vocab, "CT")
    lab = torch.tensor([[0, 1], [2, 7]], dtype=torch.int16)
    assert apply_mapping(lab, {1: 1, 2: 9}).tolist() == [[0, 1], [9, 0]]
    assert torch.equal(apply_mapping(lab, {}), lab)


def test_check_label_file(tmp_path):
    aff = np.diag([0.8, 0.8, 2.0, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), aff), tmp_path / "img.nii.gz")
    lab = np.zeros((8, 8, 8), np.uint8)
    lab[1:3, 1:3, 1:3] = 2
    nib.save(nib.Nifti1Image(lab, aff), tmp_path / "ok.nii.gz")
    img = str(tmp_path / "img.nii.gz")
    assert check_label_file(str(tmp_path / "ok.nii.gz"), img, None).tolist() == [2]
    assert check_label_file(str(tmp_path / "ok.nii.gz"), img, {"label_info": [{"name": "x", "idx": 2}]}).tolist() == [2]
    with pytest.raises(LabelError, match="label_info"):
        check_label_file(str(tmp_path / "ok.nii.gz"), img, {"label_info": [{"name": "x", "idx": 1}]})
    nib.save(nib.Nifti1Image(lab[:4], aff), tmp_path / "small.nii.gz")
    with pytest.raises(LabelError, match="shape"):
        check_label_file(str(tmp_path / "small.nii.gz"), img, None)
    nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / "moved.nii.gz")
    with pytest.raises(LabelError, match="affine"):
        check_label_file(str(tmp_path / "moved.nii.gz"), img, None)
    (tmp_path / "junk.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(LabelError, match="cannot read"):
        check_label_file(str(tmp_path / "junk.nii.gz"), img, None)
    nib.save(nib.Nifti1Image(lab.astype(np.float32) * 0.3, aff), tmp_path / "frac.nii.gz")
    with pytest.raises(LabelError, match="whole"):
        check_label_file(str(tmp_path / "frac.nii.gz"), img, None)
    with pytest.raises(LabelError, match="idx"):
        label_indices({"label_info": [{"name": "x"}]})


def test_fit_steps_exact():
    # at 0.5 s a step, 90 s left -> 0.97 * 90 / 0.5 more steps, capped by the configured limit
    assert fit_steps(20, 0.5, 90.0, 10_000) == 20 + int(0.97 * 90 / 0.5)
    assert fit_steps(20, 0.5, 90.0, 100) == 100
    assert fit_steps(20, 0.5, 0.1, 10_000) == 21
    assert fit_steps(20, 0.5, -3.0, 10_000) == 21


def test_recent_pace_follows_the_last_steps():
    # 1 s a step for the first 100 steps, then 0.5 s a step: the recent pace is 0.5
    marks = [(s, float(s)) for s in range(0, 101, 20)] + [(100 + s, 100 + 0.5 * s) for s in range(20, 401, 20)]
    assert recent_pace(marks, window=200) == pytest.approx(0.5)
    assert recent_pace(marks[:3], window=200) == pytest.approx(1.0)
    assert recent_pace(marks[:1], window=200) == pytest.approx(0.0)




def test_the_trainer_offers_a_device_and_rejects_an_unknown_one_before_loading_anything(tmp_path, monkeypatch):
    from lib.config import TrainConfig
    from lib.trainers.textseg import TextSegTrainer

    def served():
        raise AssertionError("the served model must not be read for a bad request")

    trainer = TextSegTrainer(served, tmp_path / "model.pt", tmp_path, TrainConfig(steps=5))
    assert trainer.config()["device"] == "auto"
    with pytest.raises(ValueError, match="device"):
        trainer({"device": "tpu"}, datastore=None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        trainer({"device": "cuda"}, datastore=None)
