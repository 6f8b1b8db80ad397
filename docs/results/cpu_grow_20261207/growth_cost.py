"""What the intensity completion costs a 'liver lesion' prompt (a diagnostic, not a test).

On the first scan of POOL where MODEL serves a liver lesion mask, times
`predict(['liver lesion'])` with the checkpoint's calibrated completion left out and served
(median of RUNS after one warm-up, 2 threads, the image encoding not included, as for
bench-speed's extra prompt); the served one includes predicting the host (the liver).

Usage (repository root):
    PYTHONPATH=. python docs/results/cpu_grow_20261207/growth_cost.py MODEL POOL OUT.json [RUNS]
"""
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from lib.data.preprocess import load_volume
from lib.data.studies_index import labelled_pairs
from lib.host import host_info
from lib.inference.service import load_predictor

PROMPT = "liver lesion"


def timed(predictor, encoded, runs: int) -> tuple[float, int]:
    """Median seconds of ``runs`` calls after a warm-up, and the mask's voxel count."""
    predictor.predict(encoded, [PROMPT])
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = predictor.predict(encoded, [PROMPT])[0]
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3), int(result.mask.sum())


def main() -> None:
    model, pool, out = sys.argv[1:4]
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    torch.set_num_threads(2)
    predictor, _ = load_predictor(model)
    served = dict(predictor.label_growth)
    if PROMPT not in served:
        raise SystemExit(f"{model} has no calibrated completion for {PROMPT!r}")
    for pid, image, _ in labelled_pairs(pool):
        encoded = predictor.encode(load_volume(image))
        if predictor.predict(encoded, [PROMPT])[0].present:
            break
    else:
        raise SystemExit(f"no liver lesion mask on any scan of {pool}")
    record = {"model": model, "scan": f"{Path(pool).name}/{pid}", "runs": runs, "host": host_info(),
              "growth": served[PROMPT].to_json()}
    predictor.label_growth = {}
    record["without"] = dict(zip(("median_s", "voxels"), timed(predictor, encoded, runs)))
    predictor.label_growth = served
    record["with"] = dict(zip(("median_s", "voxels"), timed(predictor, encoded, runs)))
    record["extra_s"] = round(record["with"]["median_s"] - record["without"]["median_s"], 3)
    Path(out).write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
