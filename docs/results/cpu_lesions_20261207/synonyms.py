"""A look: average both passes' probabilities over a lesion label's training synonyms (test-time
augmentation in text space) before the clean-up, against the canonical prompt alone.

Usage: PYTHONPATH=. python docs/results/cpu_lesions_20261207/synonyms.py runs/sz4u_40_cal.pt OUT.json \
    bench/fire_data bench/cal_data
"""
import json, sys
import numpy as np, torch
from lib.inference.service import load_predictor
from lib.inference.calibration import dice_score
from lib.data.studies_index import labelled_pairs
from lib.data.preprocess import load_volume
pred, meta = load_predictor(sys.argv[1])
labels = ["liver lesion", "kidney cyst"]
syn = {l: list(pred.vocab.resolve(l).train_prompts) for l in labels}
print(syn)
rows = []
for pool in sys.argv[3:]:
    for cid, ip, lp in labelled_pairs(pool):
        img = load_volume(ip); lab = load_volume(lp, label=True)[0].numpy().round().astype(np.int32)
        enc = pred.encode(img)
        for l in labels:
            truth = pred.vocab.resolve(l).mask(lab)
            ps = syn[l]
            p1, p2 = pred.probabilities(enc, ps)
            base = pred.results(enc, [l], *pred.probabilities(enc, [l]))[0]
            row = dict(pool=pool, case=cid, label=l, present=bool(truth.any()))
            for name, (a, b) in {"mean": (p1.mean(0, keepdim=True), p2.mean(0, keepdim=True)),
                                 "median": (p1.median(0, keepdim=True).values, p2.median(0, keepdim=True).values)}.items():
                r = pred.results(enc, [l], a, b)[0]
                row[name] = (dice_score(r.mask, truth) if row["present"] else float(not r.present))
                row[name + "_u"] = r.uncertainty
            row["base"] = dice_score(base.mask, truth) if row["present"] else float(not base.present)
            row["base_u"] = base.uncertainty
            rows.append(row); print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
json.dump(rows, open(sys.argv[2], "w"), indent=0)
for l in labels:
    for pres in (True, False):
        R = [r for r in rows if r["label"] == l and r["present"] == pres]
        print(l, "present" if pres else "absent (share empty)", len(R), {k: round(float(np.mean([r[k] for r in R])), 4) for k in ("base", "mean", "median")})
