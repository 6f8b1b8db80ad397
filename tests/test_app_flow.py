"""The app in process (real MONAI Label FastAPI app, TestClient): infer with prompts,
save labels, train, score, pick the next sample, and refuse bad input without losing data."""

import json

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _infer(client, image, prompt, **extra):
    params = {"prompt": prompt, **extra}
    return client.post(f"/infer/textseg?image={image}&output=json", data={"params": json.dumps(params)})


def test_info_lists_all_tasks(app_client):
    info = app_client.get("/info/").json()
    assert "textseg" in info["trainers"]
    assert "textseg_uncertainty" in info["scoring"]
    assert {"textseg_uncertainty", "random", "first"} <= set(info["strategies"])
    assert info["train_stats"]["textseg"]["untrained_labels"] == 2


def test_infer_with_prompts(app_client):
    r = _infer(app_client, "phantom_0002", "liver; the left kidney; a dragon")
    assert r.status_code == 200, r.text
    res = r.json()
    prompts = res["prompts"]
    assert [p["prompt"] for p in prompts] == ["liver", "the left kidney", "a dragon"]
    assert [p["label"] for p in prompts] == ["liver", "left kidney", None]
    assert [p["index"] for p in prompts][:2] == [1, 3] and prompts[2]["index"] > 14
    for p in prompts:
        assert set(p) >= {"present", "voxels", "uncertainty", "seconds"}
    assert res["encoding_cached"] is False
    again = _infer(app_client, "phantom_0002", "spleen").json()
    assert again["encoding_cached"] is True and again["latencies"]["encode"] == 0.0
    img = app_client.post("/infer/textseg?image=phantom_0002&output=image", data={"params": json.dumps({"prompt": "liver"})})
    assert img.status_code == 200 and len(img.content) > 100


def test_bad_input_is_refused_and_server_keeps_serving(app_client):
    for prompt in ["x" * 500, "!!! ###"]:
        r = _infer(app_client, "phantom_0002", prompt)
        assert r.status_code == 400, r.text
    r = _infer(app_client, "no_such_image", "liver")
    assert r.status_code == 404 and "not found" in r.text
    # a label whose shape does not match its image must not replace the saved one
    studies = app_client.studies
    final = studies / "labels" / "final" / "phantom_0000.nii.gz"
    before = final.read_bytes()
    bad = studies.parent / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.uint8), np.eye(4)), bad)
    with open(bad, "rb") as f:
        r = app_client.put("/datastore/label?image=phantom_0000&tag=final", files={"label": ("bad.nii.gz", f)},
                           data={"params": "{}"})
    assert r.status_code == 422 and "shape" in r.text
    assert final.read_bytes() == before
    # values not named in label_info are refused too
    ref = nib.load(final)
    with open(final, "rb") as f:
        r = app_client.put("/datastore/label?image=phantom_0000&tag=final", files={"label": ("l.nii.gz", f)},
                           data={"params": json.dumps({"label_info": [{"name": "liver", "idx": 1}]})})
    assert r.status_code == 422 and "label_info" in r.text
    assert final.read_bytes() == before and ref.shape
    # a prompt in another script is run, with a warning in the result
    r = _infer(app_client, "phantom_0002", "肝臓")
    assert r.status_code == 200 and "warning" in r.json()["prompts"][0]
    # a corrupt image file gives a clear 422
    (studies / "phantom_0003.nii.gz").write_bytes(b"\x1f\x8b not really a volume")
    r = _infer(app_client, "phantom_0003", "liver")
    assert r.status_code == 422 and "cannot read" in r.text
    assert app_client.get("/info/").status_code == 200


def test_save_train_score_and_next_sample(app_client):
    studies = app_client.studies
    # an annotator saves a corrected label for phantom_0002 with Slicer-style segment names
    image = nib.load(studies / "phantom_0002.nii.gz")
    lab = np.zeros(image.shape, np.uint8)
    lab[10:40, 10:40, 5:20] = 1
    lab[50:60, 50:60, 5:10] = 2
    path = studies.parent / "corrected.nii.gz"
    nib.save(nib.Nifti1Image(lab, image.affine), path)
    info = [{"name": "Liver", "idx": 1}, {"name": "portal vein", "idx": 2}]
    with open(path, "rb") as f:
        r = app_client.put("/datastore/label?image=phantom_0002&tag=final", files={"label": ("c.nii.gz", f)},
                           data={"params": json.dumps({"label_info": info})})
    assert r.status_code == 200, r.text
    assert r.json()["untrained_labels"] == 3
    # train synchronously (4 steps): the new name becomes a prompt
    r = app_client.post("/train/textseg?run_sync=true", json={})
    assert r.status_code == 200, r.text
    state = json.loads((app_client.app_dir / "model" / "train_state.json").read_text())
    run = state["runs"][-1]
    assert "portal vein" in run["new_labels"] and "phantom_0002" in run["train_ids"]
    # the published checkpoint lists the content fingerprints of the scans it learnt from
    from lib.app_wiring import PUBLISHED_NAME
    from lib.data.preprocess import load_volume, volume_fingerprint
    from lib.model.checkpoint import load_checkpoint

    meta = load_checkpoint(app_client.app_dir / "model" / PUBLISHED_NAME)[2]
    assert volume_fingerprint(load_volume(str(studies / "phantom_0002.nii.gz"))) in meta["train_fingerprints"]
    assert len(meta["train_fingerprints"]) == len(set(run["train_ids"]))
    assert app_client.get("/info/").json()["train_stats"]["textseg"]["untrained_labels"] == 0
    # score the unlabelled image(s) and ask for the next sample
    r = app_client.post("/scoring/textseg_uncertainty?run_sync=true")
    assert r.status_code == 200, r.text
    ds = json.loads((studies / "datastore_v2.json").read_text())
    scores = {k: v["image"]["info"].get("textseg_uncertainty") for k, v in ds["objects"].items()
              if "final" not in v.get("labels", {})}
    assert scores and all(s is not None for s in scores.values())
    r = app_client.post("/activelearning/textseg_uncertainty", json={})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == max(scores, key=scores.get)
    # a second request (another annotator) gets a different scan when there is one
    r2 = app_client.post("/activelearning/textseg_uncertainty", json={}).json()
    if len(scores) > 1:
        assert r2["id"] != r.json()["id"]
