"""Which lesions a model finds, by size: for every liver lesion and kidney cyst of a phantom
pool (connected components of their labels; equivalent-sphere diameter on the input grid),
the share of its voxels inside the model's mask for "liver lesion" / "kidney cyst" (the
served masks: clean-up and guided filter included), and how far it stands out: its mean
intensity against its host organ's in a 3-voxel shell around it (other lesions left out),
in HU and in units of the shell's standard deviation (noise plus texture).

    PYTHONPATH=. python scripts/lesion_sizes.py POOL_DIR MODEL.pt OUT.json
"""
import json
import sys
import tempfile
from pathlib import Path
import nibabel as nib
import numpy as np
from scipy import ndimage
from lib.data.phantoms import KIDNEY_CYST, LIVER_LESION
from lib.inference.service import predict_to_files

pool, model = Path(sys.argv[1]), sys.argv[2]
meta = json.load(open(pool / "phantoms.json"))
rows = []
for pid, m in sorted(meta.items()):
    if not (m.get("n_lesions") or m.get("n_cysts")):
        continue
    lab = np.asarray(nib.load(pool / "labels/final" / f"{pid}.nii.gz").dataobj)
    img = np.asarray(nib.load(pool / f"{pid}.nii.gz").dataobj, dtype=np.float32)
    sp = np.abs(np.diag(  # the phantoms' grids are axis-aligned
        nib.load(pool / "labels/final" / f"{pid}.nii.gz").affine)[:3])
    with tempfile.TemporaryDirectory() as t:
        predict_to_files(model, pool / f"{pid}.nii.gz", ["liver lesion", "kidney cyst"], Path(t))
        masks = {n: np.asarray(nib.load(Path(t) / f"{n.replace(' ', '_')}_mask.nii.gz").dataobj) > 0
                 for n in ("liver lesion", "kidney cyst")}
    for name, idx in (("liver lesion", LIVER_LESION), ("kidney cyst", KIDNEY_CYST)):
        gt = lab == idx
        if not gt.any():
            continue
        pred = masks[name]
        comps, n = ndimage.label(gt)
        for c in range(1, n + 1):
            cm = comps == c
            vol = cm.sum() * sp.prod()
            d = 2 * (3 * vol / (4 * np.pi)) ** (1 / 3)
            hit = float((cm & pred).sum() / cm.sum())
            shell = ndimage.binary_dilation(cm, iterations=3) & ~(lab == LIVER_LESION) & ~(lab == KIDNEY_CYST)
            host = np.bincount(lab[shell].astype(np.int64)).argmax()  # the organ around it
            ring = img[shell & (lab == host)]
            contrast = float(img[cm].mean() - ring.mean())
            rows.append({"case": pid, "label": name, "diameter_mm": round(float(d), 1), "covered": round(hit, 3),
                         "contrast_hu": round(contrast, 1), "contrast_sd": round(contrast / float(ring.std()), 2)})
    print(pid, [(r["label"], r["diameter_mm"], r["contrast_sd"], r["covered"]) for r in rows if r["case"] == pid],
          flush=True)
json.dump(rows, open(sys.argv[3], "w"), indent=1)
