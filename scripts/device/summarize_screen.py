"""Gather a GPU screening's checkpoints and their evaluation reports into one JSON.

    PYTHONPATH=. python scripts/device/summarize_screen.py CKPT_DIR EVAL_DIR OUT.json RUN [RUN ...]

For each RUN: CKPT_DIR/RUN.pt (training metadata) and EVAL_DIR/RUN_val.json, RUN_dev.json
(``python -m lib.cli evaluate`` on bench/val_data and bench/dev_data); "pooled" is
``lib.evaluation.summarize`` over the rows of both.
"""
import json
import sys
from pathlib import Path

from lib.evaluation import summarize
from lib.model.checkpoint import load_checkpoint

KEYS = ("mean_dice", "mean_nsd", "lesion_dice", "absent_prompts", "absent_fp_rate", "paraphrase_gap")


def run_summary(ckpt: Path, evals: Path, name: str) -> dict:
    meta = load_checkpoint(ckpt / f"{name}.pt")[2]
    tc = meta["train_config"]
    out = {"steps": meta["steps"], "seconds": meta["seconds"], "steps_per_s": round(meta["steps"] / meta["seconds"], 2),
           "device": meta.get("device"), "gpu": meta.get("gpu"), "precision": meta["precision"], "seed": tc["seed"],
           "step_cap": tc["steps"], "absent_sampling": tc["absent_sampling"], "absent_ramp": tc["absent_ramp"],
           "train_cases": len(meta["train_cases"]),
           "label_difficulty_end": {k: v for k, v in meta["label_difficulty"].items() if k in ("liver lesion", "kidney cyst")}}
    rows = []
    for pool in ("val", "dev"):
        report = json.loads((evals / f"{name}_{pool}.json").read_text())
        s = report["summary"]
        out[pool] = {**{k: s[k] for k in KEYS}, "per_prompt_dice": {k: round(v["dice"], 4) for k, v in s["per_prompt"].items()}}
        rows += report["rows"]
    pooled = summarize(rows)
    out["pooled"] = {k: pooled[k] for k in ("mean_dice", "mean_nsd", "lesion_dice")}
    return out


if __name__ == "__main__":
    ckpt, evals, dest, *names = sys.argv[1:]
    runs = {n: run_summary(Path(ckpt), Path(evals), n) for n in names}
    Path(dest).write_text(json.dumps({"runs": runs}, indent=1))
    print({n: (r["steps"], round(r["pooled"]["mean_dice"], 4), round(r["pooled"]["mean_nsd"], 4)) for n, r in runs.items()})
