"""A look: the served lesion masks' pieces that touch no true lesion (their sizes in mm3), and each
mask's Dice without them.

Usage: PYTHONPATH=. python docs/results/cpu_lesions_20261207/stray_pieces.py runs/sz4u_40_cal.pt OUT.json \
    bench/fire_data bench/cal_data
"""
import json, sys
import numpy as np
from scipy import ndimage
from lib.inference.service import load_predictor
from lib.inference.calibration import dice_score
from lib.data.studies_index import labelled_pairs
from lib.data.preprocess import load_volume
pred, meta = load_predictor(sys.argv[1])
labels = ["liver lesion", "kidney cyst"]
rows = []
for pool in sys.argv[3:]:
    for cid, ip, lp in labelled_pairs(pool):
        img = load_volume(ip); lab = load_volume(lp, label=True)[0].numpy().round().astype(np.int32)
        enc, res = pred.segment(img, labels)
        vox = float(np.prod(enc.input_spacing()))  # mm3 of an input voxel
        for name, r in zip(labels, res):
            truth = pred.vocab.resolve(name).mask(lab)
            if not r.mask.any():
                continue
            pieces, n = ndimage.label(r.mask, np.ones((3, 3, 3)))
            sizes = np.bincount(pieces.ravel())[1:] * vox
            touch = set(np.unique(pieces[truth & r.mask])) - {0}
            stray = [round(float(sizes[i - 1]), 1) for i in range(1, n + 1) if i not in touch]
            keep = np.isin(pieces, list(touch)) if touch else np.zeros_like(r.mask)
            row = dict(pool=pool, case=cid, label=name, present=bool(truth.any()), pieces=int(n), stray_mm3=sorted(stray, reverse=True),
                       touching_mm3=sorted([round(float(sizes[i - 1]), 1) for i in touch], reverse=True))
            if truth.any():
                row["dice"] = dice_score(r.mask, truth); row["dice_without_stray"] = dice_score(keep, truth)
            rows.append(row); print(row, flush=True)
json.dump(rows, open(sys.argv[2], "w"), indent=0)
