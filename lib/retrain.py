"""Periodic retraining job: ask a running server whether enough new final labels exist
and start its training through the REST API (for cron or a systemd timer)."""

from __future__ import annotations

import logging
import time

import requests

logger = logging.getLogger(__name__)

TRAINER = "textseg"


class ServerError(RuntimeError):
    """The server cannot be reached or answered an error."""


def _get(url: str, timeout: float = 10.0) -> dict:
    try:
        r = requests.get(url, timeout=timeout)
    except requests.RequestException as e:
        raise ServerError(f"cannot reach the MONAI Label server at {url}: {e}") from e
    if r.status_code != 200:
        raise ServerError(f"{url} answered HTTP {r.status_code}: {r.text[:200]}")
    return r.json()


def pending_labels(server: str) -> int:
    """Final labels the trainer has not used yet, as reported in /info/ train_stats."""
    info = _get(f"{server}/info/")
    stats = info.get("train_stats", {}).get(TRAINER)
    if stats is None:
        raise ServerError(f"the server has no '{TRAINER}' trainer (is it the textseg app?)")
    return int(stats.get("untrained_labels", 0))


def retrain(server: str, min_new_labels: int = 1, wait: bool = False, poll_seconds: float = 10.0,
            timeout_minutes: float = 120.0) -> dict:
    """Start training when at least ``min_new_labels`` final labels are new. With ``wait``,
    block until the run ends. Returns {"started", "pending", "status"}."""
    server = server.rstrip("/")
    pending = pending_labels(server)
    if pending < min_new_labels:
        logger.info("%d new labels (< %d): nothing to do", pending, min_new_labels)
        return {"started": False, "pending": pending, "status": None}
    try:
        r = requests.post(f"{server}/train/{TRAINER}", json={}, timeout=30)
    except requests.RequestException as e:
        raise ServerError(f"cannot start training: {e}") from e
    if r.status_code == 429:
        logger.info("a training run is already going")
        return {"started": False, "pending": pending, "status": "already running"}
    if r.status_code != 200:
        raise ServerError(f"starting training answered HTTP {r.status_code}: {r.text[:200]}")
    logger.info("training started on %d new labels", pending)
    status = r.json()
    if wait:
        deadline = time.time() + timeout_minutes * 60
        while time.time() < deadline:
            status = _get(f"{server}/train/")
            if status.get("status") not in ("SUBMITTED", "RUNNING"):
                break
            time.sleep(poll_seconds)
        else:
            raise ServerError(f"training still running after {timeout_minutes} minutes")
        if status.get("status") != "DONE":
            raise ServerError(f"training ended with status {status.get('status')}")
    return {"started": True, "pending": pending, "status": status.get("status")}
