"""Command line: ``python -m lib.cli VERB ...`` (``--help`` on every verb).

Thin wiring: each verb parses its flags into typed values and calls one library function.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


logger = logging.getLogger("textseg")


def _cmd_phantoms(a: argparse.Namespace) -> int:
    from .data.phantoms import write_phantoms

    ids = write_phantoms(Path(a.out), a.count, a.seed, start=a.start, hard_fraction=a.hard_fraction)
    logger.info("wrote %d phantoms to %s", len(ids), a.out)
    return 0


def _cmd_sample_studies(a: argparse.Namespace) -> int:
    from .data.studies import build_sample_studies

    summary = build_sample_studies(Path(a.out), n_phantoms=a.phantoms, n_labelled=a.labelled, seed=a.seed)
    logger.info("studies ready in %s: %d images, %d labelled", a.out, len(summary["images"]), len(summary["labelled"]))
    return 0


def _cmd_mri_sample(a: argparse.Namespace) -> int:
    from .data.mni import write_mni_sample

    image_id = write_mni_sample(Path(a.out))
    logger.info("wrote %s to %s", image_id, a.out)
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    from .config import Config
    from .training.run import train_from_studies

    cfg = Config.load(a.config)
    flags = {"max_minutes": a.max_minutes, "steps": a.steps, "seed": a.seed, "device": a.device}
    overrides = {k: v for k, v in flags.items() if v is not None}
    cfg = cfg.override(**overrides)
    summary = train_from_studies(a.studies, a.out, cfg, val_percent=a.val_percent, init=a.init, resume=not a.restart)
    print(json.dumps({k: summary[k] for k in ("steps", "seconds", "stopped_early", "validation")}, indent=2))
    return 0


def _cmd_predict(a: argparse.Namespace) -> int:
    from .inference.service import predict_to_files

    report = predict_to_files(a.model, a.image, a.prompt, Path(a.out), probabilities=a.probabilities,
                              uncertainty=a.uncertainty)
    print(json.dumps(report, indent=2))
    return 0


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from .evaluation import evaluate_studies

    report = evaluate_studies(a.model, a.studies, Path(a.out), ids=a.ids, overlays=not a.no_overlays,
                              cleanup=not a.no_cleanup, guided=not a.no_guided, exclusive=a.exclusive,
                              growth=not a.no_growth)
    print(json.dumps(report["summary"], indent=2))
    return 0


def _cmd_calibrate(a: argparse.Namespace) -> int:
    from .inference.calibration import CUT_GRID, calibrate_checkpoint

    record = calibrate_checkpoint(a.model, a.studies, a.out or a.model, grid=tuple(a.grid), min_cases=a.min_cases,
                                  min_gain=a.min_gain, cut_grid=tuple(CUT_GRID if a.cut_grid is None else a.cut_grid),
                                  growth=a.growth)
    print(json.dumps({k: {**{f: v[f] for f in ("threshold", "max_uncertainty", "cases", "dice_at_model_threshold", "dice",
                                                "false_positives_at_model_threshold", "false_positives")},
                          **({"growth": v["growth"]["chosen"]} if "growth" in v else {})}
                      for k, v in record["per_label"].items()}, indent=2))
    return 0


def _cmd_label_stats(a: argparse.Namespace) -> int:
    from .training.run import refresh_label_stats

    stats = refresh_label_stats(a.model, a.studies)
    print(json.dumps(stats, indent=2))
    return 0


def _cmd_retrain(a: argparse.Namespace) -> int:
    from .retrain import ServerError, retrain

    try:
        result = retrain(a.server, a.min_new_labels, wait=a.wait)
    except ServerError as e:
        logger.error("%s", e)
        return 3
    print(json.dumps(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lib.cli", description="textseg: text-guided 3D segmentation tools")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    s = sub.add_parser("phantoms", help="write synthetic abdominal CT phantoms (datastore layout)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--count", type=int, default=10, help="number of phantoms (default 10)")
    s.add_argument("--seed", type=int, default=0, help="pool seed; same seed, same bytes")
    s.add_argument("--start", type=int, default=0, help="index of the first phantom (ids phantom_NNNN)")
    s.add_argument("--hard-fraction", type=float, default=0.4, help="share of hard cases (default 0.4)")
    s.set_defaults(func=_cmd_phantoms)

    s = sub.add_parser("sample-studies", help="build the server's default studies (phantoms + real MNI152 MRI)")
    s.add_argument("--out", required=True, help="studies folder")
    s.add_argument("--phantoms", type=int, default=12, help="number of CT phantoms (default 12)")
    s.add_argument("--labelled", type=int, default=4, help="phantoms that keep final labels (default 4)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_cmd_sample_studies)

    s = sub.add_parser("mri-sample", help="write only the real MNI152 T1 MRI with its atlas labels")
    s.add_argument("--out", required=True, help="output folder")
    s.set_defaults(func=_cmd_mri_sample)

    s = sub.add_parser("train", help="train a model on the final labels of studies folders")
    s.add_argument("--studies", required=True, nargs="+", help="one or more studies folders")
    s.add_argument("--out", required=True, help="checkpoint to write (<out>.resume keeps optimiser state)")
    s.add_argument("--config", help="YAML/JSON config with 'model' and 'train' sections")
    s.add_argument("--init", help="checkpoint to fine-tune from")
    s.add_argument("--max-minutes", type=float, help="wall-clock budget")
    s.add_argument("--steps", type=int, help="optimiser steps (overrides the config)")
    s.add_argument("--seed", type=int, help="seed (overrides the config)")
    s.add_argument("--device", choices=["auto", "cpu", "cuda"],
                   help="train on the CPU, a CUDA GPU, or auto: the GPU when one is visible (overrides the config)")
    s.add_argument("--val-percent", type=float, default=15.0, help="stable hash split share for validation")
    s.add_argument("--restart", action="store_true", help="ignore an existing <out>.resume")
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("predict", help="segment prompts in one image, writing NIfTI masks")
    s.add_argument("--model", required=True, help="checkpoint")
    s.add_argument("--image", required=True, help="NIfTI image")
    s.add_argument("--prompt", required=True, action="append", help="a text prompt (repeat for several)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--probabilities", action="store_true", help="also write probability maps")
    s.add_argument("--uncertainty", action="store_true", help="also write voxel uncertainty maps")
    s.set_defaults(func=_cmd_predict)

    s = sub.add_parser("evaluate", help="Dice/NSD per prompt, absent false positives, paraphrases")
    s.add_argument("--model", required=True, help="checkpoint")
    s.add_argument("--studies", required=True, help="studies folder with labels/final")
    s.add_argument("--out", required=True, help="report.json (a .md table and overlay PNGs go beside it)")
    s.add_argument("--ids", nargs="*", help="only these image ids")
    s.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")
    s.add_argument("--no-cleanup", action="store_true",
                   help="score the raw two-pass masks (no side check, largest piece or volume floor)")
    s.add_argument("--no-guided", action="store_true",
                   help="bring probabilities to the input grid by linear interpolation only (no guided filter)")
    s.add_argument("--exclusive", type=float, metavar="SHARE",
                   help="exclusivity clean-up: drop a lesion or cyst mask piece of which this share lies in a "
                   "neighbouring organ's mask (0: off; default: the checkpoint's own, off unless set)")
    s.add_argument("--no-growth", action="store_true",
                   help="leave out the calibrated intensity completion of lesion and cyst masks")
    s.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser("calibrate", help="choose each label's mask threshold and uncertainty presence cut "
                       "on a labelled validation pool")
    s.add_argument("--model", required=True, help="checkpoint")
    s.add_argument("--studies", required=True, help="validation studies folder with labels/final (not training or test scans)")
    s.add_argument("--out", help="calibrated checkpoint to write (default: update --model in place)")
    s.add_argument("--grid", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5],
                   help="thresholds to try (the model's own is always among them)")
    s.add_argument("--min-cases", type=int, default=3, help="labels held by fewer scans keep the model's threshold")
    s.add_argument("--min-gain", type=float, default=0.01,
                   help="mean score a label's new threshold (Dice) or presence cut (per-scan score) must add")
    s.add_argument("--cut-grid", type=float, nargs="*", metavar="U",
                   help="scalar-uncertainty presence cuts to try per label (default 0.10 ... 0.60 by 0.05; "
                   "the flag with no value: no cut)")
    s.add_argument("--growth", action="store_true",
                   help="also choose an intensity completion for each lesion or cyst label (labels with hosts) "
                   "where it raises the pool's Dice (opt-in)")
    s.set_defaults(func=_cmd_calibrate)

    s = sub.add_parser("label-stats", help="(re)compute a checkpoint's label statistics and training fingerprints "
                       "from its training cases")
    s.add_argument("--model", required=True, help="checkpoint to update in place")
    s.add_argument("--studies", required=True, nargs="+", help="studies folders holding its training cases")
    s.set_defaults(func=_cmd_label_stats)

    s = sub.add_parser("retrain", help="start training on a running server when enough new labels exist (cron)")
    s.add_argument("--server", default="http://127.0.0.1:8000", help="MONAI Label server URL")
    s.add_argument("--min-new-labels", type=int, default=1, help="only train with at least this many new labels")
    s.add_argument("--wait", action="store_true", help="block until the run ends; non-zero if it failed")
    s.set_defaults(func=_cmd_retrain)

    from .bench.cli import add_bench_verbs

    add_bench_verbs(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = "python -m lib.cli " + " ".join(argv)  # recorded in benchmark JSON
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("monai", "transformers", "nibabel"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as e:
        logger.error("%s", e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
