"""Active-learning simulation with the app's own scoring methods, strategies and trainer,
called in process on a real ``TextSegApp`` (apps/textseg/main.py): pick k scans, save
their ground truth as an annotator would, retrain, measure on a fixed test set."""

from __future__ import annotations

import importlib.util
import json
import logging
import random
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy.stats import spearmanr

from ..app_config import REPO_ROOT, AppSettings
from ..config import Config, TrainConfig
from ..data.studies_index import labelled_pairs
from ..data.vocab import Vocabulary
from ..evaluation import evaluate_pairs
from ..model.build import sized_config
from ..model.text_encoder import shared_text_encoder
from ..trainers.textseg import PATCH_MM, physical_patch
from ..training.data import load_cases
from ..training.loop import train

logger = logging.getLogger(__name__)

APP_DIR = REPO_ROOT / "apps" / "textseg"
# the scoring method each strategy needs before it picks (None: none)
SCORING = {"textseg_uncertainty": "textseg_uncertainty", "stratified": "textseg_uncertainty",
           "epistemic": "epistemic", "random": None}


@dataclass(frozen=True)
class ALSettings:
    """One benchmark run.

    Attributes:
        pool, test: phantom volumes in the unlabelled pool and the fixed test set.
        initial: volumes labelled before the first round (the same per seed for every strategy).
        per_round: volumes the strategy picks per round; rounds: annotation rounds.
        seeds: repetitions (initial set, starting model, random choices differ).
        strategies: compared strategies, names of the app's strategies.
        spacing: grid (mm) the phantoms are resampled to.
        size, working_spacing, dropout: the network (dropout makes MC-dropout scoring possible).
        init_steps: steps of the starting model, trained on the initial volumes only.
        round_steps: steps of each online training run (the app's ``train_steps``).
        app_conf: extra ``--conf`` settings of the app, e.g. (("al_density", "1"),).
        full_pool: also train the all-labels ceiling (off for ablations of one strategy).
    """

    pool: int = 60
    test: int = 20
    initial: int = 4
    per_round: int = 5
    rounds: int = 4
    seeds: int = 3
    strategies: tuple[str, ...] = ("textseg_uncertainty", "random", "epistemic", "stratified")
    spacing: float = 4.0
    size: str = "tiny"
    working_spacing: float = 4.0
    dropout: float = 0.2
    init_steps: int = 1000
    round_steps: int = 100
    app_conf: tuple[tuple[str, str], ...] = ()
    full_pool: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.strategies) - set(SCORING)
        if unknown:
            raise ValueError(f"unknown strategies {sorted(unknown)}; choose from {sorted(SCORING)}")
        if min(self.pool, self.test, self.initial, self.per_round, self.rounds, self.seeds) < 1:
            raise ValueError("pool, test, initial, per_round, rounds and seeds must be >= 1")
        if self.initial + self.rounds * self.per_round > self.pool:
            raise ValueError(f"initial + rounds * per_round = {self.initial + self.rounds * self.per_round} "
                             f"exceeds the pool of {self.pool}")
        known = {f.name for f in fields(AppSettings)}
        bad = [k for k, _ in self.app_conf if k not in known]
        if bad:
            raise ValueError(f"unknown app settings {bad}; known: {sorted(known)}")
        AppSettings.from_conf(dict(self.app_conf))  # values parse, or a clear error now
        if "epistemic" in self.strategies and not self.dropout > 0:
            raise ValueError("the epistemic (MC-dropout) strategy needs dropout > 0")

    @classmethod
    def quick(cls) -> "ALSettings":
        """A smoke run (a few minutes): small pool, one seed, two short rounds."""
        return cls(pool=14, test=4, initial=4, per_round=2, rounds=2, seeds=1, init_steps=60, round_steps=20)


def configure_monailabel() -> None:
    """In-process app: no background scoring, watchers, sessions or tracking."""
    from monailabel.config import settings

    settings.MONAI_LABEL_AUTO_UPDATE_SCORING = False
    settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD = False
    settings.MONAI_LABEL_SESSIONS = False
    settings.MONAI_LABEL_TRACKING_ENABLED = False


def app_class():
    """The TextSegApp class from apps/textseg/main.py (loaded as MONAI Label would)."""
    spec = importlib.util.spec_from_file_location("textseg_app_main", APP_DIR / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TextSegApp


def starting_model(pool: Path, ids: list[str], s: ALSettings, seed: int, out: Path) -> Path:
    """The state every strategy of one seed starts from: a fresh network trained from
    scratch (both stages) on the initial volumes only."""
    vocab = Vocabulary.load(pool)
    pairs = {i: (i, str(img), str(lab)) for i, img, lab in labelled_pairs(pool)}
    cases = load_cases([pairs[i] for i in ids], s.working_spacing, progress=False)
    cfg = Config(model=sized_config(s.size, working_spacing=s.working_spacing, dropout=s.dropout),
                 train=TrainConfig(steps=s.init_steps, patch_size=physical_patch(PATCH_MM, s.working_spacing),
                                   warmup_steps=min(50, s.init_steps // 5), seed=seed))
    train(cfg, cases, vocab, shared_text_encoder(cfg.model.text_encoder), out, resume=False, progress=False)
    return out


def spearman(a: list[float], b: list[float]) -> float | None:
    """Rank correlation (scipy, average ranks for ties); None for fewer than 3 pairs or a constant side."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return round(float(spearmanr(a, b).statistic), 4)


class Simulation:
    """One strategy and seed: a fresh studies folder (the pool's images, no labels), a fresh
    app directory, the real app object; ground truth is 'saved' as an annotator would."""

    def __init__(self, work: Path, pool: Path, checkpoint: Path, s: ALSettings) -> None:
        self.pool, self.s = pool, s
        shutil.rmtree(work, ignore_errors=True)
        studies = work / "studies"
        studies.mkdir(parents=True)
        for p in pool.glob("*.nii.gz"):
            shutil.copy(p, studies / p.name)
        shutil.copy(pool / "labels.json", studies / "labels.json")
        app_dir = work / "app"
        shutil.copytree(APP_DIR, app_dir, ignore=shutil.ignore_patterns("model", "logs", "__pycache__"))
        configure_monailabel()
        conf = {"default_model": str(checkpoint), "train_steps": str(s.round_steps), "val_percent": "0",
                "retrain_every": "0", **dict(s.app_conf)}
        self.app = app_class()(str(app_dir), str(studies), conf)
        self.vocab = Vocabulary.load(pool)

    def annotate(self, image_id: str) -> None:
        """Save the pool's ground truth as the final label, named per segment like 3D Slicer."""
        src = self.pool / "labels" / "final" / f"{image_id}.nii.gz"
        values = set(np.unique(np.asanyarray(nib.load(str(src)).dataobj)).tolist()) - {0}
        names = self.vocab.index_to_name()
        info = {"label_info": [{"name": names[v], "idx": int(v)} for v in sorted(values) if v in names]}
        label_id = self.app.datastore().save_label(image_id, str(src), "final", info)  # the datastore copies it
        self.app.on_save_label(image_id, label_id)

    def score(self, method: str | None) -> dict:
        if method is None:
            return {"seconds": 0.0, "images": 0}
        n = len(self.app.datastore().get_unlabeled_images())
        start = time.perf_counter()
        self.app.scoring({"method": method})
        seconds = time.perf_counter() - start
        return {"seconds": round(seconds, 2), "images": n}

    def pick(self, strategy: str) -> str:
        res = self.app.next_sample({"strategy": strategy})
        if not res or not res.get("id"):
            raise RuntimeError(f"strategy {strategy} returned no image")
        return res["id"]

    def train(self) -> dict:
        return self.app.train({"model": "textseg"})

    def evaluate(self, test_pairs: list[tuple[str, str, str]]) -> dict:
        from ..app_wiring import model_store

        predictor, version = model_store(self.app).predictor()
        ev = evaluate_pairs(predictor, test_pairs, self.vocab, progress=False, paraphrases=False)
        summary = ev["summary"]
        rows = [r for r in ev["rows"] if r["present"] and not r["composite"]]
        return {"mean_dice": round(summary["mean_dice"] or 0.0, 4), "mean_nsd": round(summary["mean_nsd"] or 0.0, 4),
                "absent_fp_rate": summary["absent_fp_rate"], "model_version": version,
                "uncertainty_error_spearman": spearman([r["uncertainty"] for r in rows], [1 - r["dice"] for r in rows])}


def run_strategy(strategy: str, seed: int, initial: list[str], checkpoint: Path, pool: Path,
                 test_pairs: list, s: ALSettings, work: Path) -> dict:
    """The annotation loop for one strategy and seed; returns its per-round records."""
    random.seed(seed)  # MONAI Label's Random strategy draws from the global generator
    sim = Simulation(work, pool, checkpoint, s)
    for name in ("stratified", "textseg_uncertainty"):  # strategies with their own random choices
        sim.app._strategies[name].reseed(seed)
    for i in initial:
        sim.annotate(i)
    rounds = [{"round": 0, "labelled": len(initial), "picked": [], **sim.evaluate(test_pairs)}]
    logger.info("%s seed %d round 0: %s", strategy, seed, rounds[-1])
    for r in range(1, s.rounds + 1):
        scoring = sim.score(SCORING[strategy])
        picked = []
        for _ in range(s.per_round):
            picked.append(sim.pick(strategy))
            sim.annotate(picked[-1])
        start = time.perf_counter()
        run = sim.train()
        train_s = time.perf_counter() - start
        rec = {"round": r, "labelled": len(initial) + r * s.per_round, "picked": picked,
               "scoring_s": scoring["seconds"], "scored_images": scoring["images"],
               "scoring_s_per_image": round(scoring["seconds"] / scoring["images"], 3) if scoring["images"] else 0.0,
               "train_s": round(train_s, 1), "train_steps": run["steps"], **sim.evaluate(test_pairs)}
        rounds.append(rec)
        logger.info("%s seed %d round %d: dice %.4f nsd %.4f (scoring %.1f s, train %.1f s)", strategy, seed, r,
                    rec["mean_dice"], rec["mean_nsd"], rec["scoring_s"], rec["train_s"])
    return {"strategy": strategy, "seed": seed, "initial": initial, "rounds": rounds}


def run_ceiling(seed: int, checkpoint: Path, pool: Path, test_pairs: list, s: ALSettings, work: Path) -> dict:
    """Every pool volume labelled, the same number of online training runs as a strategy gets."""
    sim = Simulation(work, pool, checkpoint, s)
    for i in sorted(p for p, _, _ in labelled_pairs(pool)):
        sim.annotate(i)
    for _ in range(s.rounds):
        sim.train()
    return {"seed": seed, "labelled": s.pool, **sim.evaluate(test_pairs)}


def run_benchmark(out: Path, s: ALSettings, data_dir: Path | None = None, progress: bool = True) -> dict:
    """The whole benchmark; writes ``out/al.json`` and ``out/al.png`` and returns the JSON."""
    from .al_data import build_al_data
    from .al_report import plot

    torch.set_num_threads(2)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    pool, test = build_al_data(data_dir or out / "data", s.pool, s.test, s.spacing, progress=progress)
    pool_ids = sorted(i for i, _, _ in labelled_pairs(pool))
    test_pairs = labelled_pairs(test)
    runs: dict[str, list[dict]] = {k: [] for k in s.strategies}
    ceiling, timing = [], {}
    for seed in range(s.seeds):
        initial = sorted(random.Random(1000 + seed).sample(pool_ids, s.initial))
        t0 = time.perf_counter()
        ckpt = starting_model(pool, initial, s, seed, out / "work" / f"start_seed{seed}.pt")
        timing[f"start_seed{seed}_s"] = round(time.perf_counter() - t0, 1)
        for strategy in s.strategies:
            t0 = time.perf_counter()
            runs[strategy].append(run_strategy(strategy, seed, initial, ckpt, pool, test_pairs, s,
                                               out / "work" / f"{strategy}_seed{seed}"))
            timing[f"{strategy}_seed{seed}_s"] = round(time.perf_counter() - t0, 1)
            _write(out, s, runs, ceiling, timing, start, partial=True)
        if not s.full_pool:
            continue
        t0 = time.perf_counter()
        ceiling.append(run_ceiling(seed, ckpt, pool, test_pairs, s, out / "work" / f"full_pool_seed{seed}"))
        timing[f"full_pool_seed{seed}_s"] = round(time.perf_counter() - t0, 1)
        logger.info("full pool seed %d: %s", seed, ceiling[-1])
    result = _write(out, s, runs, ceiling, timing, start, partial=False)
    summary = result["summary"]
    plot(summary, out / "al.png", f"{s.pool}-volume phantom pool, {s.test} test volumes, {s.seeds} seed(s), "
                                   f"{s.per_round} per round; model {s.size} @ {s.working_spacing} mm")
    shutil.rmtree(out / "work", ignore_errors=True)
    return result


def _write(out: Path, s: ALSettings, runs: dict, ceiling: list, timing: dict, start: float, partial: bool) -> dict:
    from .al_report import summarize

    done = {k: v for k, v in runs.items() if v}
    result = {"settings": asdict(s), "partial": partial, "minutes": round((time.perf_counter() - start) / 60, 2),
              "starting_model": (f"{s.size} network (dropout {s.dropout}) trained from scratch for {s.init_steps} "
                                 f"steps on the {s.initial} initial volumes of each seed"),
              "summary": summarize(done, ceiling) if done and not partial else None,
              "full_pool": ceiling, "timing_s": timing, "runs": done}
    tmp = out / "al.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out / "al.json")
    return result


def settings_with(base: ALSettings, **overrides) -> ALSettings:
    """``base`` with the overrides that are not None."""
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
