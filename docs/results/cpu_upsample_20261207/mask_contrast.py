"""Contrast of lesion and cyst masks against their host, a throwaway look (2026-12-07): for each
served mask (presence cut off) its host-relative contrast (host median - mask median) / host MAD
s.d. on the 1.5 mm-smoothed image, next to its uncertainty and Dice. Calibration pools only.

Usage (repository root): python docs/results/cpu_upsample_20261207/mask_contrast.py MODEL POOL OUT.json
"""
import sys, json, numpy as np
from scipy import ndimage
sys.path.insert(0, '.')
from lib.inference.service import load_predictor
from lib.inference.calibration import dice_score
from lib.data.studies_index import labelled_pairs
from lib.data.preprocess import load_volume
from lib.data.boxes import bounding_box as _box
model, pool, out = sys.argv[1:4]
pred, meta = load_predictor(model)
pred.label_max_uncertainty = {}
pred.label_growth = {}
rows = []
for cid, ip, lp in labelled_pairs(pool):
    img = load_volume(ip); lab = load_volume(lp, label=True)[0].numpy().round().astype(np.int32)
    enc = pred.encode(img)
    if enc.guide is None: continue
    names = [n for n, nb in pred.label_neighbours.items() if nb.hosts and pred.vocab.resolve(n).modality == enc.volume.modality]
    res = pred.predict(enc, names)
    masks = pred.host_masks(enc, res, names)
    sp = np.asarray(enc.input_spacing()); image = enc.guide.numpy()
    for n, r in zip(names, res):
        truth = pred.vocab.resolve(n).mask(lab)
        row = dict(case=cid, label=n, present=bool(truth.any()), found=r.present, u=r.uncertainty, vox=int(r.mask.sum()),
                   dice=dice_score(r.mask, truth) if truth.any() else None)
        if r.present:
            host = pred.host_mask(n, masks)
            hb = _box(host | r.mask, np.ceil(4.5 / sp).astype(int))
            inside = ndimage.binary_fill_holes(host[hb] | r.mask[hb])
            sm = ndimage.gaussian_filter(image[hb].astype(np.float32), 1.5 / sp, truncate=3.0)
            ref = sm[inside & ~r.mask[hb]]
            if ref.size >= 50:
                m = float(np.median(ref)); s = 1.4826 * float(np.median(np.abs(ref - m)))
                inn = float(np.median(sm[r.mask[hb]]))
                row['contrast'] = (m - inn) / s if s > 0 else None
                row['in_host'] = float((inside & r.mask[hb]).sum() / r.mask.sum())
        rows.append(row)
        print(json.dumps(row), flush=True)
json.dump(rows, open(out, 'w'), indent=1)
