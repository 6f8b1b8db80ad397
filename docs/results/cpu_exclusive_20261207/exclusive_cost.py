"""What the exclusivity clean-up costs a 'liver lesion' prompt (a diagnostic, not a test).

Encodes the first scan of POOL on which MODEL finds a liver lesion mask, then times
`predict(['liver lesion'])` with the clean-up off and at SHARE (median of RUNS after one warm-up,
2 threads; the image encoding is not included, as for bench-speed's extra prompt).

Usage (repository root):
    PYTHONPATH=. python docs/results/cpu_exclusive_20261207/exclusive_cost.py MODEL POOL OUT.json [SHARE] [RUNS]
"""
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from lib.data.preprocess import load_volume
from lib.data.studies_index import labelled_pairs
from lib.host import host_info
from lib.inference.service import load_predictor

PROMPT = "liver lesion"


def main() -> None:
    model, pool, out = sys.argv[1], sys.argv[2], sys.argv[3]
    share = float(sys.argv[4]) if len(sys.argv) > 4 else 0.2
    runs = int(sys.argv[5]) if len(sys.argv) > 5 else 5
    torch.set_num_threads(2)
    predictor, _ = load_predictor(model)
    for pid, image, _ in labelled_pairs(pool):
        encoded = predictor.encode(load_volume(image))
        if predictor.predict(encoded, [PROMPT])[0].present:
            break
    else:
        raise SystemExit(f"no liver lesion mask on any scan of {pool}")
    base = predictor.cfg
    record = {"model": model, "scan": f"{Path(pool).name}/{pid}", "share": share, "runs": runs, "host": host_info(),
              "competitors": list(predictor.label_neighbours[PROMPT].competitors)}
    for name, cfg in (("off", replace(base, exclusive_share=0.0)), ("on", replace(base, exclusive_share=share))):
        predictor.cfg = cfg
        predictor.predict(encoded, [PROMPT])
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            result = predictor.predict(encoded, [PROMPT])[0]
            times.append(time.perf_counter() - t)
        record[name] = {"median_s": round(statistics.median(times), 3), "voxels": int(result.mask.sum())}
    record["extra_s"] = round(record["on"]["median_s"] - record["off"]["median_s"], 3)
    Path(out).write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
