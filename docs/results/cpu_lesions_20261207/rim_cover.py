"""Per true liver lesion (connected piece): the share of its voxels brighter than the liver's median
(a bright rim), and the share of its bright and dark voxels the served mask covers.

Usage: PYTHONPATH=. python docs/results/cpu_lesions_20261207/rim_cover.py runs/sz4u_40_cal.pt OUT.json \
    bench/fire_data bench/cal_data
"""
import json, sys
import numpy as np
from scipy import ndimage
from lib.inference.service import load_predictor
from lib.data.studies_index import labelled_pairs
from lib.data.preprocess import load_volume
import lib.data.phantoms as P
pred, meta = load_predictor(sys.argv[1])
rows = []
for pool in sys.argv[3:]:
    for cid, ip, lp in labelled_pairs(pool):
        img = load_volume(ip); lab = load_volume(lp, label=True)[0].numpy().round().astype(np.int32)
        im = np.asarray(img[0].numpy(), np.float32)

        _, res = pred.segment(img, ["liver lesion"])
        mask = res[0].mask
        liver = lab == P.LIVER
        if not liver.any(): continue
        med = np.median(im[liver])
        cc, n = ndimage.label(lab == P.LIVER_LESION)
        for i in range(1, n + 1):
            c = cc == i
            if c.sum() < 20: continue
            bright = c & (im > med)
            rows.append(dict(pool=pool, case=cid, vox=int(c.sum()), bright_share=round(float(bright.sum() / c.sum()), 3),
                             cover=round(float((mask & c).sum() / c.sum()), 3),
                             cover_bright=round(float((mask & bright).sum() / max(bright.sum(), 1)), 3),
                             cover_dark=round(float((mask & c & ~bright).sum() / max((c & ~bright).sum(), 1)), 3),
                             found=bool(res[0].present)))
            print(rows[-1], flush=True)
json.dump(rows, open(sys.argv[2], "w"), indent=0)
