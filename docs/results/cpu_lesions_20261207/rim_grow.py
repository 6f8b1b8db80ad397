"""A look: would growing a found liver-lesion mask into a thin shell of host voxels BRIGHTER than
the host (a rim) help, alone or after the darker-voxel completion (k 2, 8 mm)?

Usage: PYTHONPATH=. python docs/results/cpu_lesions_20261207/rim_grow.py runs/sz4u_40_cal.pt OUT.json \
    bench/fire_data bench/cal_data
"""
import json, sys, itertools
import numpy as np
from scipy import ndimage
from lib.inference.service import load_predictor
from lib.inference.calibration import dice_score
from lib.inference.completion import host_view, grow, Growth
from lib.data.studies_index import labelled_pairs
from lib.data.preprocess import load_volume
import lib.data.phantoms as P
pred, meta = load_predictor(sys.argv[1])
K = (1.0, 1.5, 2.0, 3.0); RAD = (1.5, 2.5, 4.0)
CUBE = np.ones((3, 3, 3), bool)
def bright_grow(view, k, r):
    out = view.mask.copy(); mask = out[view.box]; sp = view.spacing
    near = ndimage.distance_transform_edt(~mask, sampling=sp) <= r
    cand = view.inside & near & (view.smooth > view.median + k * view.sd) & ~mask
    pieces, _ = ndimage.label(cand | mask, structure=CUBE)
    t = np.unique(pieces[mask]); mask |= np.isin(pieces, t[t > 0]) & cand
    return out
rows = []
for pool in sys.argv[3:]:
    for cid, ip, lp in labelled_pairs(pool):
        img = load_volume(ip); lab = load_volume(lp, label=True)[0].numpy().round().astype(np.int32)
        truth = lab == P.LIVER_LESION
        if not truth.any(): continue
        enc, res = pred.segment(img, ["liver lesion", "liver"])
        m, host = res[0].mask, res[1].mask
        row = dict(pool=pool, case=cid, base=dice_score(m, truth))
        im = np.asarray(img[0].numpy(), np.float32); sp = enc.input_spacing()
        for sig in (0.75, 1.5):
            v = host_view(m, im, host, sp, sigma_mm=sig) if m.any() else None
            for k, r in itertools.product(K, RAD):
                row[f"s{sig}_k{k}_r{r}"] = dice_score(bright_grow(v, k, r), truth) if v is not None else row["base"]
            if v is not None and sig == 1.5:
                dark = grow(v, Growth(2.0, 8.0))
                row["dark"] = dice_score(dark, truth)
                v2 = host_view(dark, im, host, sp, sigma_mm=0.75)
                for k, r in itertools.product(K, RAD):
                    row[f"dark+s0.75_k{k}_r{r}"] = dice_score(bright_grow(v2, k, r), truth) if v2 is not None else row["dark"]
        rows.append(row); print({k: round(v, 3) if isinstance(v, float) else v for k, v in list(row.items())[:4]}, flush=True)
json.dump(rows, open(sys.argv[2], "w"), indent=0)
keys = [k for k in rows[0] if k not in ("pool", "case")]
means = {k: np.mean([r.get(k, r["base"]) for r in rows]) for k in keys}
for k, v in sorted(means.items(), key=lambda kv: -kv[1])[:15]: print(k, round(v, 4))
print("base", round(means["base"], 4), "dark", round(means.get("dark", 0), 4), "n", len(rows))
