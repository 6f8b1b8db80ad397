"""Per lesion prompt (canonical liver lesion / kidney cyst), with the presence cut removed and the
calibrated thresholds kept: served mask, uncertainty, pass-1/pass-2 peaks and means, Dice.
(``in_host`` is the share of the mask inside the served host mask, which leaves lesions out:
not a containment measure, and not used in docs/benchmarks.md.)

Usage: PYTHONPATH=. python docs/results/cpu_lesions_20261207/presence_rows.py runs/sz4u_40_cal.pt OUT.json \
    bench/fire_data bench/cal_data bench/val_data bench/dev_data bench/fresh_data
"""
import json, sys
import numpy as np, torch
from lib.inference.service import load_predictor
from lib.inference.calibration import dice_score
from lib.data.studies_index import labelled_pairs
from lib.data.preprocess import load_volume
model, out, pools = sys.argv[1], sys.argv[2], sys.argv[3:]
pred, meta = load_predictor(model)
cuts = dict(pred.label_max_uncertainty); pred.label_max_uncertainty = {}
labels = ["liver lesion", "kidney cyst", "liver", "kidneys"]
rows = []
for pool in pools:
    for cid, ip, lp in labelled_pairs(pool):
        img = load_volume(ip); lab = load_volume(lp, label=True)[0].numpy().round().astype(np.int32)
        enc = pred.encode(img)
        p1, p2 = pred.probabilities(enc, labels)
        res = pred.results(enc, labels, p1, p2)
        for k, (name, r) in enumerate(zip(labels[:2], res[:2])):
            truth = pred.vocab.resolve(name).mask(lab)
            host = res[2 + k].mask
            q2 = p2[k]; q1 = p1[k]
            m = q2 >= 0.5
            rows.append(dict(pool=pool, case=cid, label=name, present=bool(truth.any()), truth_vox=int(truth.sum()),
                             found=bool(r.present), u=r.uncertainty, vox=int(r.mask.sum()),
                             dice=dice_score(r.mask, truth) if truth.any() else None,
                             peak2=float(q2.max()), peak1=float(q1.max()),
                             mean2=float(q2[m].mean()) if m.any() else 0.0,
                             mean1_in=float(q1[m].mean()) if m.any() else 0.0,
                             in_host=float((r.mask & host).sum() / max(r.mask.sum(), 1)),
                             cut=cuts.get(name)))
            print(rows[-1], flush=True)
json.dump(rows, open(out, "w"), indent=0)
