"""End to end: a real `monailabel start_server` process on 127.0.0.1 driven by MONAI Label's
Python client (the client the 3D Slicer plugin builds on), with the bundled default model."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
import requests

from conftest import REPO, copy_studies

pytestmark = pytest.mark.slow
DEFAULT_MODEL = REPO / "models" / "textseg_default.pt"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path, phantom_studies):
    studies = copy_studies(phantom_studies, tmp_path / "studies", keep_labels=2)
    app_dir = tmp_path / "app"
    shutil.copytree(REPO / "apps" / "textseg", app_dir, ignore=shutil.ignore_patterns("model", "logs", "__pycache__"))
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
           "MONAI_LABEL_TRACKING_ENABLED": "false", "MONAI_LABEL_SESSIONS": "false", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app_dir), "--studies", str(studies),
           "--conf", "default_model", str(DEFAULT_MODEL), "--conf", "train_steps", "6", "--conf", "val_percent", "0",
           "--host", "127.0.0.1", "--port", str(port)]
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if requests.get(f"{url}/info/", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None:
                raise RuntimeError((tmp_path / "server.log").read_text()[-3000:])
            time.sleep(1)
        else:
            raise RuntimeError("server did not start in 120 s")
        yield url, studies, app_dir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))


def test_annotation_loop_with_the_real_client(server, tmp_path):
    from monailabel.client import MONAILabelClient

    url, studies, app_dir = server
    client = MONAILabelClient(url, tmpdir=str(tmp_path))
    info = client.info()
    assert "textseg" in info["models"] and "textseg" in info["trainers"]

    # 1. infer "liver" on a labelled phantom: the default model finds the liver
    label_file, params = client.infer("textseg", "phantom_0000", {"prompt": "liver"})
    pred = np.asarray(nib.load(label_file).dataobj)
    truth = np.asarray(nib.load(studies / "labels" / "final" / "phantom_0000.nii.gz").dataobj)
    assert pred.shape == truth.shape
    dice = _dice(pred == params["prompts"][0]["index"], truth == 1)
    assert dice > 0.5, (dice, params)  # chance level for the liver is about 0.1
    version_before = params["model_version"]

    # concurrent requests from several viewers all complete, with the same answer
    from concurrent.futures import ThreadPoolExecutor

    def ask(prompt):
        r = requests.post(f"{url}/infer/textseg?image=phantom_0001&output=json",
                          files={"params": (None, json.dumps({"prompt": prompt}))}, timeout=300)
        return r.status_code, r.json()

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(ask, ["liver", "liver", "spleen; aorta"]))
    assert [code for code, _ in answers] == [200, 200, 200]
    assert answers[0][1]["prompts"][0]["voxels"] == answers[1][1]["prompts"][0]["voxels"]

    # 2. an annotator corrects phantom_0002 and saves it as final (segment names as Slicer sends them)
    label_file, params = client.infer("textseg", "phantom_0002", {"prompt": "liver; spleen"})
    names = [{"name": p["label"] or p["prompt"], "idx": p["index"]} for p in params["prompts"]]
    saved = client.save_label("phantom_0002", label_file, tag="final", params={"label_info": names})
    assert saved["image"] == "phantom_0002"

    # 3. a short training run, then 4. the next sample by two-pass uncertainty
    client.train_start("textseg", {"max_steps": 6})
    for _ in range(300):
        status = client.train_status()
        if status.get("status") not in ("SUBMITTED", "RUNNING"):
            break
        time.sleep(2)
    assert status.get("status") == "DONE", status
    run = json.loads((app_dir / "model" / "train_state.json").read_text())["runs"][-1]
    assert "phantom_0002" in run["train_ids"]
    r = requests.post(f"{url}/scoring/textseg_uncertainty?run_sync=true", timeout=300)
    assert r.status_code == 200, r.text
    nxt = client.next_sample("textseg_uncertainty", {})
    assert nxt["id"] == "phantom_0003"  # the only unlabelled image left

    # 5. infer again: served by the published model if training published one
    _, params = client.infer("textseg", "phantom_0003", {"prompt": "liver"})
    assert (params["model_version"] != version_before) == run["published"]
    assert requests.get(f"{url}/info/", timeout=10).status_code == 200
