"""Shared fixtures: tiny real phantoms, a small studies folder, a tiny checkpoint, and an
in-process MONAI Label app."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def phantom_studies(tmp_path_factory) -> Path:
    """Four real phantoms with final labels (shared, read-only by convention)."""
    from lib.data.phantoms import write_phantoms

    out = tmp_path_factory.mktemp("phantoms")
    write_phantoms(out, 4, seed=11, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, phantom_studies) -> Path:
    """An untrained tiny network with the real text encoder's width, saved as a checkpoint."""
    from lib.data.vocab import Vocabulary
    from lib.model.build import build_network, sized_config
    from lib.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = build_network(sized_config("tiny", working_spacing=4.0))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, net, Vocabulary.load(phantom_studies), meta={"note": "untrained, for wiring tests"})
    return path


def copy_studies(src: Path, dst: Path, keep_labels: int) -> Path:
    """Copy a studies folder keeping final labels for the first ``keep_labels`` images only."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("datastore_v2.json", ".lock"))
    for i, p in enumerate(sorted((dst / "labels" / "final").glob("*.nii.gz"))):
        if i >= keep_labels:
            p.unlink()
    return dst


@pytest.fixture
def app_client(tmp_path, phantom_studies, tiny_checkpoint):
    """A TestClient on the real MONAI Label FastAPI app serving apps/textseg (in process)."""
    from fastapi.testclient import TestClient
    from monailabel.config import settings
    from monailabel.interfaces.utils.app import clear_cache

    studies = copy_studies(phantom_studies, tmp_path / "studies", keep_labels=2)
    app_dir = tmp_path / "app"
    shutil.copytree(REPO / "apps" / "textseg", app_dir, ignore=shutil.ignore_patterns("model", "logs", "__pycache__"))
    values = {
        "MONAI_LABEL_APP_DIR": str(app_dir), "MONAI_LABEL_STUDIES": str(studies),
        "MONAI_LABEL_APP_CONF": {"default_model": str(tiny_checkpoint), "train_steps": "4", "val_percent": "0"},
        "MONAI_LABEL_DATASTORE_AUTO_RELOAD": False, "MONAI_LABEL_AUTO_UPDATE_SCORING": False,
        "MONAI_LABEL_TRACKING_ENABLED": False, "MONAI_LABEL_SESSIONS": False,
    }
    old = {k: getattr(settings, k) for k in values}
    for k, v in values.items():
        setattr(settings, k, v)
        if not isinstance(v, dict):
            os.environ[k] = str(v)
    os.environ["PYTHONPATH"] = str(REPO)
    clear_cache()
    from monailabel.app import app

    try:
        with TestClient(app) as client:
            client.studies = studies
            client.app_dir = app_dir
            yield client
    finally:
        clear_cache()
        for k, v in old.items():
            setattr(settings, k, v)
