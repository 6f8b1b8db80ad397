"""Steps, stage-2 prompt counts and the last running losses of two checkpoints' training meta.

Usage (repository root): python docs/results/cpu_focus_20261207/meta_compare.py OUT.json A.pt B.pt
"""
import json
import sys

import torch

LABELS = ("liver lesion", "kidney cyst", "liver", "spleen", "pancreas", "gallbladder", "inferior vena cava",
          "stomach", "aorta", "vertebrae", "left kidney", "right kidney", "left lung", "right lung")
out = {}
for path in sys.argv[2:]:
    meta = torch.load(path, map_location="cpu", weights_only=False)["meta"]
    last = meta["label_difficulty_history"][-1]
    out[path] = {"steps": meta["steps"], "seconds": meta["seconds"], "host": meta.get("host"),
                 "precision": meta.get("precision"), "focus_boost": meta["train_config"].get("focus_boost", {}),
                 "stage2_prompts": {k: meta["prompt_counts"].get(k) for k in LABELS},
                 "running_loss_step": last["step"], "running_loss": {k: last["values"].get(k) for k in LABELS}}
json.dump(out, open(sys.argv[1], "w"), indent=1)
for path, m in out.items():
    print(path, m["steps"], "steps;", {k: (m["stage2_prompts"][k]["present"], m["running_loss"][k]) for k in LABELS[:6]})
