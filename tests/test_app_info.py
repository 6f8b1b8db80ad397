"""apps/textseg/main.py loads as a MONAI Label app and describes itself."""


def test_info_lists_the_prompt_task(app_client):
    r = app_client.get("/info/")
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["name"] == "textseg"
    models = info["models"]
    assert "textseg" in models
    assert models["textseg"]["config"]["prompt"] == ""
    assert models["textseg"]["dimension"] == 3
    # one auto-segmentation task per modality of the model's vocabulary, with its labels
    assert "liver" in models["textseg_ct"]["labels"]
    assert {"random", "first", "stratified", "textseg_uncertainty"} <= set(info["strategies"])
    # MC-dropout scoring only for a model built with dropout (the tiny test model has none)
    assert "epistemic" not in info["scoring"] and "epistemic" not in info["strategies"]
    ds = app_client.get("/datastore/?output=stats").json()
    assert ds["total"] == 4 and ds["completed"] == 2
