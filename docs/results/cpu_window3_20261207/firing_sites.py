"""Where a model's 'liver lesion' masks lie (diagnostic; never run on the test pool).

For each POOL:REPORT pair (a phantom folder and the `evaluate` report of MODEL on it), takes
the scans where the absent 'liver lesion' prompt got a mask and the scans with a liver lesion,
predicts 'liver lesion', 'liver' and 'gallbladder' with MODEL, and reports for every piece of
the lesion mask of 20 voxels or more its share on the model's own gallbladder and liver masks
and on the true lesion and gallbladder labels.

Usage (repository root):
    PYTHONPATH=. python docs/results/cpu_window3_20261207/firing_sites.py MODEL OUT.json \\
        bench/val_data:VAL_REPORT.json bench/dev_data:DEV_REPORT.json
"""
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from lib.data.phantoms import GALLBLADDER, LIVER_LESION
from lib.data.preprocess import load_volume
from lib.inference.predictor import Predictor
from lib.inference.service import load_predictor

PROMPT = "liver lesion"


def cases_of(report: str) -> list[str]:
    """Scans of a report where the canonical lesion prompt fired while absent, or the lesion is present."""
    rows = [r for r in json.load(open(report))["rows"] if r["label"] == PROMPT and r["kind"] == "canonical"]
    return sorted({r["case"] for r in rows if r["present"] or r["predicted_present"]})


def pieces_of(predictor: Predictor, pool: Path, pid: str) -> dict:
    _, results = predictor.segment(load_volume(str(pool / f"{pid}.nii.gz")), [PROMPT, "liver", "gallbladder"])
    les, liv, gb = (r.mask for r in results)  # boolean, on the input grid
    gt = np.asarray(nib.load(pool / "labels/final" / f"{pid}.nii.gz").dataobj)
    labelled, n = ndimage.label(les, structure=np.ones((3, 3, 3), bool))
    rows = []
    for k in range(1, n + 1):
        pc = labelled == k
        if pc.sum() >= 20:
            rows.append(dict(voxels=int(pc.sum()), on_model_gallbladder=round(float(gb[pc].mean()), 3),
                             on_model_liver=round(float(liv[pc].mean()), 3),
                             on_true_lesion=round(float((gt[pc] == LIVER_LESION).mean()), 3),
                             on_true_gallbladder=round(float((gt[pc] == GALLBLADDER).mean()), 3)))
    return dict(pool=pool.name, case=pid, lesion_present=bool((gt == LIVER_LESION).any()), pieces=rows)


def main() -> None:
    predictor, _ = load_predictor(sys.argv[1])  # loaded once for every scan
    out_path, out = sys.argv[2], []
    for arg in sys.argv[3:]:
        pool, report = arg.split(":")
        for pid in cases_of(report):
            out.append(pieces_of(predictor, Path(pool), pid))
            print(out[-1])
    json.dump(out, open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main()
