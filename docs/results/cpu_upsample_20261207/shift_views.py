"""Shift views, a throwaway look (2026-12-07): each scan encoded again with the working volume
shifted by whole voxels (edge-padded at the start, coordinates kept on the anatomy), both passes'
probabilities averaged over the views, then the served clean-up, thresholds and cuts. Scored on
calibration pools only (Dice per label, no NSD).

Usage (repository root): python docs/results/cpu_upsample_20261207/shift_views.py MODEL POOL OUT.json [X,Y,Z ...]
"""
import sys, json, time, torch, numpy as np
sys.path.insert(0, '.')
from lib.inference.service import load_predictor
from lib.inference.calibration import dice_score
from lib.data.studies_index import labelled_pairs
from lib.data.preprocess import load_volume, coordinate_channels, pad_to_multiple
model, pool, out = sys.argv[1:4]
shifts = [tuple(int(v) for v in s.split(',')) for s in sys.argv[4:]] or [(1, 1, 1)]
pred, meta = load_predictor(model)
pred.label_growth = {}
cfg = pred.cfg

@torch.no_grad()
def shifted_probs(encoded, prompts, s):
    vol = encoded.volume
    img = vol.image  # (1, X, Y, Z)
    X, Y, Z = encoded.shape
    x5 = torch.nn.functional.pad(img.unsqueeze(0), (s[2], 0, s[1], 0, s[0], 0), mode='replicate')[0]
    shape = tuple(int(v) for v in x5.shape[1:])
    coords = coordinate_channels(shape, cfg.working_spacing, offset=tuple(-v for v in s), full_shape=(X, Y, Z))
    x, _ = pad_to_multiple(torch.cat([x5, coords]).unsqueeze(0))
    enc = pred.net.encode_volume(x)
    emb = pred.net.head.embed_prompts(pred.text.encode(prompts))
    logits2 = pred.net.pass1(enc, emb)['logits2']
    p1s, p2s = [], []
    for k in range(len(prompts)):
        logit1 = pred.net.full_logits(enc, logits2[k:k+1], emb[k:k+1])
        p1 = torch.sigmoid(logit1)
        logit2 = logit1.clone()
        box = pred._candidate_box(p1[0])
        if box is not None:
            sl = (slice(None),) + box
            logit2[sl] = pred.net.refiner(enc.g[(slice(None), slice(None)) + box], logit1[sl], emb[k:k+1])
        crop = (slice(s[0], s[0] + X), slice(s[1], s[1] + Y), slice(s[2], s[2] + Z))
        p1s.append(p1[0][crop]); p2s.append(torch.sigmoid(logit2[0])[crop])
    return torch.stack(p1s), torch.stack(p2s)

rows = []
T = [0.0, 0.0]
for cid, ip, lp in labelled_pairs(pool):
    img = load_volume(ip); lab = load_volume(lp, label=True)[0].numpy().round().astype(np.int32)
    t = time.perf_counter()
    enc = pred.encode(img)
    entries = [e for e in pred.vocab if e.modality == enc.volume.modality]
    prompts = [e.name for e in entries]
    p1, p2 = pred.probabilities(enc, prompts)
    base = pred.results(enc, prompts, p1, p2)
    T[0] += time.perf_counter() - t
    t = time.perf_counter()
    P1, P2 = [p1], [p2]
    for s in shifts:
        a, b = shifted_probs(enc, prompts, s); P1.append(a); P2.append(b)
    tta = pred.results(enc, prompts, torch.stack(P1).mean(0), torch.stack(P2).mean(0))
    T[1] += time.perf_counter() - t
    for e, rb, rt in zip(entries, base, tta):
        truth = e.mask(lab)
        row = dict(case=cid, label=e.name, present=bool(truth.any()), base_found=rb.present, tta_found=rt.present,
                   base_u=rb.uncertainty, tta_u=rt.uncertainty,
                   base=dice_score(rb.mask, truth) if truth.any() else None, tta=dice_score(rt.mask, truth) if truth.any() else None)
        rows.append(row)
    print(cid, 'base %.1f s, tta extra %.1f s' % tuple(T), flush=True)
json.dump(rows, open(out, 'w'))
