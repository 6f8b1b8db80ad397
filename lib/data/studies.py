"""The server's default studies folder (what ``monailabel start_server --studies`` opens).

Layout (MONAI Label's ``LocalDatastore``)::

    out/phantom_0000.nii.gz ...            CT phantoms (lib.data.phantoms)
    out/mni152_t1.nii.gz                   the real MRI sample (lib.data.mni)
    out/labels/final/<id>.nii.gz           final labels: the first ``n_labelled``
                                           phantoms and the MRI sample only
    out/labels.json                        the merged label vocabulary
    out/phantoms.json                      written by lib.data.phantoms
    out/.textseg-studies.json              marker: build parameters + ids, written last

A folder whose marker matches the parameters and whose files are all there is left
untouched; anything else (no marker, other parameters, missing files) is rebuilt: the
files this module generates are removed first (files MONAI Label itself writes, such as
``datastore_v2.json`` or ``labels/original``, are left alone; the datastore reconciles
them with the disk on start-up).

Command line: ``python -m lib.data.studies OUT [--phantoms N] [--labelled K] [--seed S]``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from .vocab import LABELS_FILE

log = logging.getLogger(__name__)

MARKER = ".textseg-studies.json"
MARKER_VERSION = 1
MNI_ID = "mni152_t1"
PHANTOM_GLOB = "phantom_*.nii.gz"


def _params(n_phantoms: int, n_labelled: int, seed: int) -> dict:
    return {"version": MARKER_VERSION, "n_phantoms": n_phantoms, "n_labelled": n_labelled, "seed": seed}


def _label_path(out: Path, image_id: str) -> Path:
    return out / "labels" / "final" / f"{image_id}.nii.gz"


def _read_marker(out: Path) -> dict | None:
    try:
        return json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(out: Path, params: dict) -> dict | None:
    """The marker if ``out`` holds a complete build with these parameters, else None."""
    marker = _read_marker(out)
    if not isinstance(marker, dict) or marker.get("params") != params:
        return None
    images, labelled = marker.get("images"), marker.get("labelled")
    if not isinstance(images, list) or not isinstance(labelled, list):
        return None
    for image_id in images:
        if not (out / f"{image_id}.nii.gz").is_file():
            return None
        if _label_path(out, image_id).is_file() != (image_id in labelled):
            return None
    if not (out / LABELS_FILE).is_file():
        return None
    return marker


def _clean(out: Path) -> None:
    """Remove what a previous (partial or different) build of this module wrote."""
    final = out / "labels" / "final"
    doomed = [out / MARKER, out / LABELS_FILE, out / "phantoms.json", out / f"{MNI_ID}.nii.gz",
              final / f"{MNI_ID}.nii.gz"]
    doomed += sorted(out.glob(PHANTOM_GLOB)) + sorted(final.glob(PHANTOM_GLOB))
    for p in doomed:
        if p.is_file():
            p.unlink()


def build_sample_studies(
    out: Path, n_phantoms: int = 12, n_labelled: int = 4, seed: int = 0, progress: bool = True
) -> dict:
    """Build (or keep) the default studies folder.

    Returns ``{"studies", "images", "labelled", "unlabelled", "built", "seconds"}``:
    ``built`` is False when a complete build with the same parameters was already there.
    """
    if n_phantoms < 0 or not 0 <= n_labelled <= n_phantoms:
        raise ValueError(f"need 0 <= n_labelled <= n_phantoms, got {n_labelled=} {n_phantoms=}")
    out = Path(out)
    params = _params(n_phantoms, n_labelled, seed)
    t0 = time.perf_counter()

    marker = _is_complete(out, params)
    if marker is not None:
        log.info("studies folder %s is already built (%s): nothing to do", out, params)
        return _summary(out, marker["images"], marker["labelled"], built=False, t0=t0)

    if (out / MARKER).exists() or any(out.glob(PHANTOM_GLOB)):
        log.info("studies folder %s holds a partial or different build: rebuilding", out)
    out.mkdir(parents=True, exist_ok=True)
    _clean(out)

    from .mni import write_mni_sample
    from .phantoms import write_phantoms

    phantom_ids = list(write_phantoms(out, n_phantoms, seed, start=0, progress=progress)) if n_phantoms else []
    log.info("wrote %d CT phantoms in %.1f s", len(phantom_ids), time.perf_counter() - t0)
    for image_id in phantom_ids[n_labelled:]:
        _label_path(out, image_id).unlink(missing_ok=True)

    t1 = time.perf_counter()
    mni_id = write_mni_sample(out, MNI_ID)
    log.info("wrote the MNI152 MRI sample in %.1f s", time.perf_counter() - t1)

    images = [*phantom_ids, mni_id]
    labelled = [*phantom_ids[:n_labelled], mni_id]
    marker = {"params": params, "images": images, "labelled": labelled}
    tmp = out / (MARKER + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(tmp, out / MARKER)  # written last: its presence means the build completed
    summary = _summary(out, images, labelled, built=True, t0=t0)
    log.info("built studies folder %s: %d images, %d labelled, %.1f s", out, len(images), len(labelled),
             summary["seconds"])
    return summary


def _summary(out: Path, images: list[str], labelled: list[str], built: bool, t0: float) -> dict:
    return {
        "studies": str(out),
        "images": list(images),
        "labelled": list(labelled),
        "unlabelled": [i for i in images if i not in labelled],
        "built": built,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Build textseg's default MONAI Label studies folder.")
    ap.add_argument("out", type=Path)
    ap.add_argument("--phantoms", type=int, default=12)
    ap.add_argument("--labelled", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    summary = build_sample_studies(args.out, args.phantoms, args.labelled, args.seed, progress=not args.quiet)
    log.info("%s", json.dumps(summary))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
