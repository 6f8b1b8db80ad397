"""The weight gradient of the oneDNN-routed convolutions (lib.model.conv.weight_grad, a matrix
product over the kernel offsets) against the same gradient computed as one oneDNN convolution
(the input, channels as batch, convolved by the output gradient dilated by the stride), on the
calls of real float32 training steps (configs/absent_size.yaml, 12 phantoms of bench/train_h08).

Usage: PYTHONPATH=. python docs/results/cpu_lesions_20261207/weight_grad_look.py STEPS OUT.json
"""
import json
import sys
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from lib.config import Config
from lib.data.studies_index import labelled_pairs
from lib.model import conv as C
from lib.training import run as R


def as_convolution(grad, x, k, stride, padding):
    xp = F.pad(x, (padding[2], padding[2], padding[1], padding[1], padding[0], padding[0]))
    gw = torch.ops.aten.mkldnn_convolution(xp.transpose(0, 1).contiguous(), grad.transpose(0, 1).contiguous(), None,
                                           [0, 0, 0], [1, 1, 1], list(stride), 1)
    return gw[:, :, :k[0], :k[1], :k[2]].transpose(0, 1).contiguous()


current = C.weight_grad
per: dict = {}
worst = 0.0


def timed(grad, x, k, stride, padding):
    global worst
    t0 = time.perf_counter()
    a = current(grad, x, k, stride, padding)
    t1 = time.perf_counter()
    b = as_convolution(grad, x, k, stride, padding)
    t2 = time.perf_counter()
    worst = max(worst, float((a - b).abs().max() / a.abs().max().clamp_min(1e-12)))
    d = per.setdefault(str((tuple(x.shape), tuple(grad.shape), tuple(k), tuple(stride))), [0, 0.0, 0.0])
    d[0] += 1
    d[1] += t1 - t0
    d[2] += t2 - t1
    return a


C.weight_grad = timed
steps = int(sys.argv[1])
cfg = Config.load("configs/absent_size.yaml")
cfg = replace(cfg, train=replace(cfg.train, steps=steps, max_minutes=0))
ids = {p[0] for p in labelled_pairs("bench/train_h08")[:12]}
R.train_from_studies(["bench/train_h08"], "/tmp/weight_grad_look.pt", cfg, val_percent=0, include=ids,
                     progress=False, resume=False)
out = {"steps": steps, "max_relative_difference": worst,
       "ms_per_step": {"matrix_product": sum(d[1] for d in per.values()) / steps * 1000,
                       "as_convolution": sum(d[2] for d in per.values()) / steps * 1000},
       "per_call_ms": {k: {"calls": d[0], "matrix_product": d[1] / d[0] * 1000, "as_convolution": d[2] / d[0] * 1000}
                       for k, d in sorted(per.items(), key=lambda kv: -kv[1][1])}}
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(json.dumps(out["ms_per_step"]), "max relative difference", worst)
