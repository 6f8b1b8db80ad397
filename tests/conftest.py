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


@pytest.fixture
def crafted_predictor(tiny_checkpoint, phantom_studies):
    """A factory ``make(draw, single_component={})`` -> (predictor, encoded, calls, maps): a
    predictor whose two passes are replaced by crafted maps, ``maps = draw(shape)`` (prompt ->
    (X, Y, Z) probability on the working grid of a real phantom), every prompt's calls logged
    in ``calls``. Every drawn label gets training statistics, one piece unless
    ``single_component`` says otherwise. The maps have nothing to do with the image, so the
    guided filter (which would reshape them after its intensities; tests/test_guided.py) is
    off: the tests using it are about the clean-up's own rules."""
    from dataclasses import replace

    from lib.data.label_stats import LabelStats
    from lib.data.preprocess import load_volume
    from lib.inference.service import load_predictor

    def make(draw, single_component: dict | None = None):
        predictor, _ = load_predictor(tiny_checkpoint)
        predictor.cfg = replace(predictor.cfg, guided_modalities=())
        encoded = predictor.encode(load_volume(str(phantom_studies / "phantom_0000.nii.gz")))
        maps = draw(encoded.shape)
        calls = []

        def probabilities(enc, prompts):
            calls.append(list(prompts))
            p = torch.stack([maps[p] for p in prompts])
            return p, p

        predictor.probabilities = probabilities
        predictor.label_stats = {n: LabelStats(cases=5, single_component=(single_component or {}).get(n, 1.0),
                                               volume_p05_mm3=1.0) for n in maps}
        return predictor, encoded, calls, maps

    return make


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
