"""bench-speed: prompt latency of textseg against MONAI Label's default radiology network."""

from __future__ import annotations

import json
import logging
import resource
import statistics
import time
from pathlib import Path

import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import SegResNet

from ..data.preprocess import load_volume, prepare
from ..host import host_info
from ..inference.service import load_predictor

logger = logging.getLogger(__name__)


def _median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def segresnet_seconds(image, runs: int = 3) -> dict:
    """MONAI Label radiology's default SegResNet (init_filters 32, blocks (1,2,2,4)/(1,1,1),
    18.8 M parameters) on the image at 1.5 mm with a 96^3 sliding window (sw_batch_size 2,
    overlap 0.4, as in the sample app's infer task). Random weights: only time is measured."""
    net = SegResNet(spatial_dims=3, in_channels=1, out_channels=14, init_filters=32, blocks_down=(1, 2, 2, 4),
                    blocks_up=(1, 1, 1), dropout_prob=0.2).eval()
    vol = prepare(image, 1.5, "auto")
    x = vol.image.unsqueeze(0)

    @torch.no_grad()
    def run():
        sliding_window_inference(x, (96, 96, 96), 2, net, overlap=0.4)

    return {"seconds": _median_time(run, runs), "params": sum(p.numel() for p in net.parameters()),
            "working_shape": list(x.shape[2:])}


def bench_volume(predictor, image, prompts: list[str], runs: int) -> dict:
    """Median timings on one in-memory volume (file reading excluded, result on the input grid)."""
    assert len(prompts) >= 6
    predictor.text.encode(prompts)  # the text encoder's own first call is not the model's latency

    def first():
        enc = predictor.encode(image)
        predictor.predict(enc, prompts[:1])

    enc = predictor.encode(image)
    extra = []
    for i in range(runs):
        p = prompts[1 + i % (len(prompts) - 1)]
        start = time.perf_counter()
        predictor.predict(enc, [p])
        extra.append(time.perf_counter() - start)
    return {
        "shape": list(image.shape[1:]),
        "first_prompt_s": _median_time(first, runs),
        "encode_s": _median_time(lambda: predictor.encode(image), runs),
        "extra_prompt_s": statistics.median(extra),
        "five_prompts_s": _median_time(lambda: predictor.predict(predictor.encode(image), prompts[:5]), runs),
        "five_separate_calls_s": _median_time(lambda: [predictor.predict(predictor.encode(image), [p]) for p in prompts[:5]], 1),
    }


def run_bench_speed(model: str | Path, images: dict[str, tuple[str, list[str]]], out: Path, runs: int = 5,
                    threads: int = 2) -> dict:
    """Time textseg and SegResNet; write JSON to ``out``.

    Args:
        model: checkpoint.
        images: name -> (NIfTI path, prompts); the first entry is the reference volume.
        runs: repetitions for each median.
    """
    torch.set_num_threads(threads)
    predictor, _ = load_predictor(model)
    report: dict = {"threads": threads, "runs": runs, "model": str(model), "host": host_info(), "volumes": {}}
    for name, (path, prompts) in images.items():
        image = load_volume(path)
        logger.info("timing %s %s", name, tuple(image.shape[1:]))
        report["volumes"][name] = bench_volume(predictor, image, prompts, runs)
    ref_name = next(iter(images))
    ref = report["volumes"][ref_name]
    seg = segresnet_seconds(load_volume(images[ref_name][0]), runs=max(1, runs // 2))
    report.update({
        "reference_volume": ref_name,
        "first_prompt_s": ref["first_prompt_s"], "extra_prompt_s": ref["extra_prompt_s"],
        "five_prompts_s": ref["five_prompts_s"], "segresnet_s": seg["seconds"], "segresnet": seg,
        "speedup_first_prompt": seg["seconds"] / ref["first_prompt_s"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return report
