"""Benchmark verbs of the CLI: each writes JSON (and plots where useful)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..app_config import DEFAULT_CHECKPOINT

logger = logging.getLogger(__name__)


def _cmd_bench_speed(a: argparse.Namespace) -> int:
    from ..data.mni import write_mni_sample
    from ..data.phantoms import write_phantoms
    from .speed import run_bench_speed

    work = Path(a.work)
    if not (work / "mni152_t1.nii.gz").exists():
        write_mni_sample(work)
    big = "phantom_0000"
    if not (work / f"{big}.nii.gz").exists():
        write_phantoms(work, 1, seed=a.phantom_seed, progress=False)
    mr = ["left hippocampus", "right putamen", "left thalamus", "right caudate", "brain", "white matter",
          "left amygdala", "cerebellar vermis"]
    ct = ["liver", "spleen", "left kidney", "right kidney", "aorta", "pancreas", "stomach", "tumour in the liver"]
    report = run_bench_speed(a.model, {"mni152_t1": (str(work / "mni152_t1.nii.gz"), mr),
                                       "phantom": (str(work / f"{big}.nii.gz"), ct)}, Path(a.out), runs=a.runs)
    print(json.dumps({k: report[k] for k in ("first_prompt_s", "extra_prompt_s", "five_prompts_s", "segresnet_s",
                                             "speedup_first_prompt", "peak_rss_mb")}, indent=2))
    return 0


def _cmd_bench_accuracy(a: argparse.Namespace) -> int:
    from ..config import Config
    from .accuracy import run_bench_accuracy

    cfg = Config.load(a.config)
    report = run_bench_accuracy(Path(a.out), Path(a.work), a.train, a.test, a.minutes, cfg,
                                baseline_minutes=a.baseline_minutes, textseg_model=a.textseg_model,
                                n_hard=a.hard, n_calibration=a.calibrate)
    report["command"] = a.command_line
    Path(a.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: {m: report[k][m] for m in ("mean_dice", "mean_nsd", "lesion_dice", "absent_fp_rate")}
                      for k in ("textseg", "segresnet", "segresnet_guided") if report.get(k)}, indent=2))
    return 0


def _cmd_bench_grid(a: argparse.Namespace) -> int:
    from ..config import Config
    from ..data.studies_index import labelled_pairs
    from ..training.run import vocabulary_of
    from .grid import ROUTES, grid_ceiling

    spacing = a.spacing if a.spacing is not None else Config.load(a.config).model.working_spacing
    pairs = labelled_pairs(a.studies)[: a.limit or None]
    report = grid_ceiling(pairs, vocabulary_of([a.studies]), spacing)
    report["command"] = a.command_line
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({r: {k: report[r][k] for k in ("mean_dice", "mean_nsd", "lesion_dice")} for r in ROUTES}, indent=2))
    return 0


def _conf_pairs(items: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for kv in items:
        key, sep, value = kv.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--conf expects KEY=VALUE, got {kv!r}")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def _cmd_bench_al(a: argparse.Namespace) -> int:
    from .al import ALSettings, run_benchmark, settings_with
    from .al_report import markdown

    base = ALSettings.quick() if a.quick else ALSettings()
    strategies = tuple(x.strip() for x in a.strategies.split(",")) if a.strategies else None
    s = settings_with(base, seeds=a.seeds, rounds=a.rounds, per_round=a.per_round, pool=a.pool, test=a.test,
                      round_steps=a.round_steps, init_steps=a.init_steps, strategies=strategies,
                      app_conf=_conf_pairs(a.conf) if a.conf else None,
                      full_pool=False if a.no_full_pool else None)
    out = Path(a.out)
    result = run_benchmark(out, s, data_dir=Path(a.data) if a.data else None, progress=not a.quiet)
    result["command"] = a.command_line
    (out / "al.json").write_text(json.dumps(result, indent=1))
    summary = result["summary"]
    (out / "al.md").write_text(markdown(summary))
    print(json.dumps({"minutes": result["minutes"], "full_pool_dice": summary["full_pool_dice"],
                      "aulc": {k: v["aulc"] for k, v in summary["strategies"].items()},
                      "labels_to_95": {k: v["labels_to_95"] for k, v in summary["strategies"].items()},
                      "targets": {k: v.get("met") for k, v in summary["targets"].items()}}, indent=2))
    return 0


def add_bench_verbs(sub) -> None:
    """Register bench-* verbs on the CLI's subparsers."""
    s = sub.add_parser("bench-accuracy", help="textseg vs closed-set SegResNet on held-out phantoms (JSON)")
    s.add_argument("--out", required=True, help="JSON to write (a .md table goes beside it)")
    s.add_argument("--work", default="bench/accuracy_data", help="folder for the phantom pools and checkpoints")
    s.add_argument("--train", type=int, default=160, help="training phantoms (default 160)")
    s.add_argument("--hard", type=int, default=80,
                   help="how many of them (the first) are drawn with 80%% hard cases instead of 40%% (default 80; "
                   "0 with --train 40: the pool of earlier reports)")
    s.add_argument("--test", type=int, default=20, help="held-out test phantoms (default 20)")
    s.add_argument("--minutes", type=float, default=38.0,
                   help="textseg training budget (default 38: with calibration about 43 of the 45 allowed)")
    s.add_argument("--calibrate", type=int, default=20,
                   help="phantoms of a pool of their own to calibrate textseg on (default 20; 0: none)")
    s.add_argument("--baseline-minutes", type=float,
                   help="SegResNet budget (default: textseg's training plus calibration time)")
    s.add_argument("--config", default="configs/absent_size.yaml", help="textseg config")
    s.add_argument("--textseg-model", help="evaluate this checkpoint (trained on the same pool) instead of training")
    s.set_defaults(func=_cmd_bench_accuracy)
    s = sub.add_parser("bench-grid", help="ceiling of the working grid: ground truth through it and back (JSON)")
    s.add_argument("--studies", required=True, help="labelled studies folder")
    s.add_argument("--out", required=True, help="JSON to write")
    s.add_argument("--spacing", type=float, help="working spacing in mm (default: the config's)")
    s.add_argument("--config", default="configs/default.yaml", help="config giving the working spacing")
    s.add_argument("--limit", type=int, default=0, help="first N volumes only (0: all)")
    s.set_defaults(func=_cmd_bench_grid)
    s = sub.add_parser("bench-speed", help="prompt latency vs MONAI Label's default SegResNet (JSON)")
    s.add_argument("--out", required=True, help="JSON to write")
    s.add_argument("--model", default=str(DEFAULT_CHECKPOINT), help="checkpoint (default: the bundled model)")
    s.add_argument("--runs", type=int, default=5, help="repetitions per median (default 5)")
    s.add_argument("--work", default="bench/speed_data", help="folder for the test volumes")
    s.add_argument("--phantom-seed", type=int, default=2024, help="pool seed of the phantom volume")
    s.set_defaults(func=_cmd_bench_speed)
    s = sub.add_parser("bench-al", help="active learning: two-pass uncertainty vs random, MC dropout, stratified")
    s.add_argument("--out", required=True, help="folder for al.json and al.png")
    s.add_argument("--seeds", type=int, help="repetitions (default 3; --quick 1)")
    s.add_argument("--rounds", type=int, help="annotation rounds (default 4; --quick 2)")
    s.add_argument("--per-round", type=int, help="volumes picked per round (default 5; --quick 2)")
    s.add_argument("--pool", type=int, help="unlabelled pool size (default 60; --quick 14)")
    s.add_argument("--test", type=int, help="test volumes (default 20; --quick 4)")
    s.add_argument("--round-steps", type=int, help="steps per online training run (default 100)")
    s.add_argument("--init-steps", type=int, help="steps of the starting model (default 1000)")
    s.add_argument("--strategies", help="comma-separated subset of textseg_uncertainty,random,epistemic,stratified")
    s.add_argument("--data", help="folder for the resampled phantoms (default OUT/data; reused when it matches)")
    s.add_argument("--conf", action="append", metavar="KEY=VALUE", help="app setting, e.g. al_density=1 (repeatable)")
    s.add_argument("--no-full-pool", action="store_true", help="skip the all-labels ceiling (for ablations)")
    s.add_argument("--quick", action="store_true", help="smoke run in a few minutes (figures not meaningful)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_bench_al)
