"""The growth phase of `calibrate --growth`: the completion of commit 7a32137 (grow_into_host
per setting, 16 settings) against this one (host_view once per mask, grow per setting), on the
served lesion and cyst masks of runs/sz4_40_cal.pt on bench/fire_data; checks the masks agree.

Usage (repository root): python docs/results/cpu_upsample_20261207/growth_phase_time.py OUT.json
"""
import json, subprocess, sys, time

import numpy as np
sys.path.insert(0, '.')
from lib.inference.service import load_predictor
from lib.data.studies_index import labelled_pairs
from lib.data.preprocess import load_volume
from lib.inference.completion import K_GRID, RADIUS_GRID_MM, Growth, host_view, grow
src = subprocess.run(['git', 'show', '7a32137:lib/inference/completion.py'], capture_output=True, text=True,
                     check=True).stdout.replace('from ..data', 'from lib.data')
oldc = type(sys)('oldc'); sys.modules['oldc'] = oldc; exec(compile(src, 'oldc', 'exec'), oldc.__dict__)
pred, _ = load_predictor('runs/sz4_40_cal.pt')
settings = [Growth(k, r) for r in RADIUS_GRID_MM for k in K_GRID]
osettings = [oldc.Growth(k, r) for r in RADIUS_GRID_MM for k in K_GRID]
T = {'old': 0.0, 'new': 0.0}; n = 0; same = True
for cid, ip, lp in labelled_pairs('bench/fire_data'):
    enc = pred.encode(load_volume(ip))
    names = ['liver lesion', 'kidney cyst']
    res = pred.predict(enc, names)
    masks = pred.host_masks(enc, res, names)
    image, sp = enc.guide.numpy(), enc.input_spacing()
    for r in res:
        if not r.present: continue
        host = pred.host_mask(r.label, masks); n += 1
        t = time.perf_counter(); a = [oldc.grow_into_host(r.mask, image, host, sp, g) for g in osettings]; T['old'] += time.perf_counter() - t
        t = time.perf_counter(); v = host_view(r.mask, image, host, sp); b = [grow(v, g) if v is not None else r.mask.copy() for g in settings]; T['new'] += time.perf_counter() - t
        same &= all(np.array_equal(x, y) for x, y in zip(a, b))
out = {'masks': n, 'settings': len(settings), 'old_s': round(T['old'], 2), 'new_s': round(T['new'], 2), 'identical': bool(same)}
print(json.dumps(out)); json.dump(out, open(sys.argv[1], 'w'), indent=1)
