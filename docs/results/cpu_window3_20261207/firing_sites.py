"""Where the false 'liver lesion' masks lie (diagnostic; val + dev only, never test).

For the val + dev scans where `win3_40_cal` answered 'liver lesion' without a lesion
(val phantom_0000, 0002, 0005; dev phantom_0007) and those with a liver lesion, predicts
'liver lesion', 'liver' and 'gallbladder' with the model and reports, for every piece of
the lesion mask of 20 voxels or more, its share on the model's own gallbladder and liver
masks and on the true lesion and gallbladder labels.

Usage (repository root):
    PYTHONPATH=. python docs/results/cpu_window3_20261207/firing_sites.py runs/win3_40_cal.pt WORK_DIR OUT.json
"""
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from lib.data.phantoms import GALLBLADDER, LIVER_LESION

model, work, out_path = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
CASES = {"val_data": ["phantom_0000", "phantom_0002", "phantom_0004", "phantom_0005"],
         "dev_data": ["phantom_0002", "phantom_0005", "phantom_0006", "phantom_0007", "phantom_0009", "phantom_0010",
                      "phantom_0011", "phantom_0012", "phantom_0018", "phantom_0019"]}


def mask(folder: Path, name: str) -> np.ndarray:
    return np.asarray(nib.load(folder / f"{name}_mask.nii.gz").dataobj) > 0


out = []
for pool, ids in CASES.items():
    for pid in ids:
        o = work / f"{pool}_{pid}"
        if not (o / "gallbladder_mask.nii.gz").exists():
            subprocess.run([sys.executable, "-m", "lib.cli", "predict", "--model", model, "--image",
                            f"bench/{pool}/{pid}.nii.gz", "--prompt", "liver lesion", "--prompt", "liver",
                            "--prompt", "gallbladder", "--out", str(o)], check=True, capture_output=True)
        les, liv, gb = mask(o, "liver_lesion"), mask(o, "liver"), mask(o, "gallbladder")
        gt = np.asarray(nib.load(f"bench/{pool}/labels/final/{pid}.nii.gz").dataobj)
        pieces, n = ndimage.label(les, structure=np.ones((3, 3, 3), bool))
        rows = []
        for k in range(1, n + 1):
            pc = pieces == k
            if pc.sum() >= 20:
                rows.append(dict(voxels=int(pc.sum()), on_model_gallbladder=round(float(gb[pc].mean()), 3),
                                 on_model_liver=round(float(liv[pc].mean()), 3),
                                 on_true_lesion=round(float((gt[pc] == LIVER_LESION).mean()), 3),
                                 on_true_gallbladder=round(float((gt[pc] == GALLBLADDER).mean()), 3)))
        out.append(dict(pool=pool, case=pid, lesion_present=bool((gt == LIVER_LESION).any()), pieces=rows))
        print(out[-1])
json.dump(out, open(out_path, "w"), indent=1)
