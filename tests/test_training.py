"""A real learning test: a short training on tiny-resolution phantoms segments a held-out
phantom far better than chance, and says "absent" for structures that are not there."""

import json

import numpy as np
import pytest

from lib.cli import main
from lib.data.studies_index import labelled_pairs
from lib.data.vocab import Vocabulary

pytestmark = pytest.mark.slow

CONFIG = {
    "model": {"size": "tiny", "working_spacing": 5.0},
    "train": {"steps": 220, "patch_size": [48, 48, 32], "prompts_per_image": 6, "stage1_fraction": 0.4,
              "align_fraction": 0.1, "lr": 0.004, "warmup_steps": 20, "seed": 1},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, phantom_studies):
    """Train on 3 phantoms, keep phantom_0003 out; restrict to large structures."""
    work = tmp_path_factory.mktemp("train")
    vocab = Vocabulary.load(phantom_studies)
    keep = {"liver", "spleen", "left kidney", "right kidney", "left lung", "right lung", "vertebrae", "stomach"}
    small = Vocabulary({n: vocab[n] for n in vocab.names() if n in keep})
    studies = work / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for cid, img, lab in labelled_pairs(phantom_studies):
        if cid != "phantom_0003":
            (studies / f"{cid}.nii.gz").symlink_to(img)
            (studies / "labels" / "final" / f"{cid}.nii.gz").symlink_to(lab)
    small.save(studies)
    (work / "cfg.json").write_text(json.dumps(CONFIG))
    ckpt = work / "model.pt"
    assert main(["train", "--studies", str(studies), "--out", str(ckpt), "--config", str(work / "cfg.json"),
                 "--val-percent", "0"]) == 0
    return ckpt, small


def test_held_out_dice_far_above_chance(trained, phantom_studies, tmp_path):
    ckpt, vocab = trained
    held = {p[0]: p for p in labelled_pairs(phantom_studies)}["phantom_0003"]
    # restrict evaluation to the trained vocabulary
    ev = tmp_path / "ev"
    (ev / "labels" / "final").mkdir(parents=True)
    (ev / "phantom_0003.nii.gz").symlink_to(held[1])
    (ev / "labels" / "final" / "phantom_0003.nii.gz").symlink_to(held[2])
    vocab.save(ev)
    out = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(ckpt), "--studies", str(ev), "--out", str(out), "--no-overlays"]) == 0
    report = json.loads(out.read_text())
    per = report["summary"]["per_prompt"]
    # chance for a structure filling f of the volume is about 2f/(1+f) < 0.1 here
    assert per["liver"]["dice"] > 0.6, per
    assert np.mean([v["dice"] for v in per.values()]) > 0.4, per
    assert report["trained_on_evaluated_cases"] == []


@pytest.mark.xfail(strict=True, reason="known gap (issue 3 note): after short training, absent-structure prompts on "
                   "cropped fields of view still return small false-positive masks")
def test_absent_structure_gives_an_empty_mask(trained, phantom_studies, tmp_path):
    """The lower slices of a held-out phantom (kidney level) contain no lung: a lung prompt
    must come back absent with an empty mask, while the kidneys are still found."""
    import nibabel as nib

    from lib.data.preprocess import load_volume
    from lib.inference.service import load_predictor

    ckpt, _ = trained
    img = nib.load(phantom_studies / "phantom_0003.nii.gz")
    lab = np.asarray(nib.load(phantom_studies / "labels" / "final" / "phantom_0003.nii.gz").dataobj)
    lung_z = np.flatnonzero(np.isin(lab, [8, 9]).any((0, 1)))
    top = int(lung_z.min()) - 2  # every slice below the lungs
    assert top > 16
    crop = nib.Nifti1Image(np.asarray(img.dataobj)[:, :, :top], img.affine)
    path = tmp_path / "lower.nii.gz"
    nib.save(crop, path)
    predictor, _ = load_predictor(ckpt)
    results = predictor.segment(load_volume(str(path)), ["left lung", "right lung"])[1]
    assert [r.present for r in results] == [False, False]
    assert all(not r.mask.any() for r in results)
