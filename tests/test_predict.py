"""Prediction: masks on the input's grid (affine, spacing), prompt validation, CLI."""

import nibabel as nib
import numpy as np
import pytest

from lib.cli import main
from lib.inference.predictor import PromptError, clean_prompt, script_warning, split_prompts


def test_prompt_validation():
    assert clean_prompt("  Left Kidney. ") == "left kidney"
    for bad, match in [("", "empty"), ("   ", "empty"), ("x" * 300, "at most"), ("!!! 123", "no letters")]:
        with pytest.raises(PromptError, match=match):
            clean_prompt(bad)
    assert split_prompts("liver; spleen ;;") == ["liver", "spleen"]
    with pytest.raises(PromptError, match="at most"):
        split_prompts(";".join(["liver"] * 65))
    with pytest.raises(PromptError, match="vocabulary"):
        split_prompts("")
    assert clean_prompt("肝臓") == "肝臓"  # other scripts are valid text, with a warning
    assert script_warning("肝臓") and script_warning("liver") is None and script_warning("leber (de)") is None


def test_predict_writes_masks_on_the_input_grid(tmp_path, phantom_studies, tiny_checkpoint):
    image = phantom_studies / "phantom_0000.nii.gz"
    out = tmp_path / "pred"
    rc = main(["predict", "--model", str(tiny_checkpoint), "--image", str(image), "--prompt", "liver",
               "--prompt", "tumour in the liver", "--out", str(out), "--probabilities", "--uncertainty"])
    assert rc == 0
    ref = nib.load(image)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["liver_mask.nii.gz", "liver_prob.nii.gz", "liver_uncertainty.nii.gz",
                     "tumour_in_the_liver_mask.nii.gz", "tumour_in_the_liver_prob.nii.gz",
                     "tumour_in_the_liver_uncertainty.nii.gz"]
    for name in files:
        img = nib.load(out / name)
        assert img.shape == ref.shape
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-4)
        np.testing.assert_allclose(img.header.get_zooms(), ref.header.get_zooms(), atol=1e-5)
    prob = np.asarray(nib.load(out / "liver_prob.nii.gz").dataobj)
    assert 0.0 <= prob.min() and prob.max() <= 1.0


def test_predict_reports_bad_input_clearly(tmp_path, tiny_checkpoint, caplog):
    bad = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((32, 32), np.float32), np.eye(4)), bad)
    rc = main(["predict", "--model", str(tiny_checkpoint), "--image", str(bad), "--prompt", "liver", "--out", str(tmp_path)])
    assert rc == 2 and "3D" in caplog.text
    rc = main(["predict", "--model", str(tmp_path / "missing.pt"), "--image", str(bad), "--prompt", "liver",
               "--out", str(tmp_path)])
    assert rc == 2 and "not found" in caplog.text


def test_a_label_of_the_other_modality_is_reported_absent(phantom_studies, tiny_checkpoint):
    """A CT label prompted in an image that looks like MR gets an empty mask and a reason;
    in the CT image itself the same prompt is answered by the network (no reason given)."""
    from monai.transforms import LoadImage

    from lib.inference.service import load_predictor

    predictor, _ = load_predictor(tiny_checkpoint)
    ct = LoadImage(image_only=True, ensure_channel_first=True)(str(phantom_studies / "phantom_0000.nii.gz"))
    mr_like = ct - ct.min() + 10.0  # no air near -1000 HU: guessed MR
    (ct_result,) = predictor.segment(ct, ["liver"])[1]
    encoded, (mr_result,) = predictor.segment(mr_like, ["liver"])
    assert encoded.volume.modality == "MR"
    assert "absent_reason" not in ct_result.summary()
    assert not mr_result.present and not mr_result.mask.any() and mr_result.volume_mm3 == 0.0
    assert "CT scans only" in mr_result.summary()["absent_reason"]
    (free_text,) = predictor.predict(encoded, ["something new"])  # not a vocabulary label: no gate
    assert "absent_reason" not in free_text.summary()
