"""The training loop: two-stage, phase-scheduled, time-budgeted and resumable."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..config import Config
from ..data.label_neighbours import Neighbours, label_neighbours, neighbours_to_json
from ..data.label_stats import LabelStats, label_stats, stats_to_json, typical_voxels
from ..data.vocab import Vocabulary
from ..host import host_info
from ..model.build import build_network
from ..model.checkpoint import atomic_torch_save, save_checkpoint
from ..model.text_encoder import TextEncoder
from ..model.textseg import TextSegNet
from .data import Case, PatchSampler
from .losses import TextSegLoss
from .precision import as_float32, autocast, resolve_device, resolve_precision
from .schedule import absent_fraction_at, loss_weights_at, lr_at, stage_at
from .validate import validate

logger = logging.getLogger(__name__)

DIFFICULTY_EVERY = 250  # steps between records of the per-label running losses (meta and log)


def fit_steps(step: int, pace: float, seconds_left: float, limit: int, margin: float = 0.97) -> int:
    """Total steps that fit a time budget: the steps done plus what ``margin`` of the
    seconds left allows at ``pace`` seconds a step, at most ``limit``, at least one more."""
    more = int(margin * max(0.0, seconds_left) / max(pace, 1e-9))
    return max(step + 1, min(limit, step + more))


def recent_pace(marks: list[tuple[int, float]], window: int = 200) -> float:
    """Seconds per step over (about) the last ``window`` steps of ``marks``, a list of
    (step, time) pairs in order. The first steps are slower (a fresh network's pass 1 is
    unsure everywhere, so the refiner runs on every voxel) and another process may slow a
    stretch of the run; the recent pace follows what the run does now."""
    last_step, last_time = marks[-1]
    first_step, first_time = next(((s, t) for s, t in marks if last_step - s <= window), marks[0])
    if last_step == first_step:
        first_step, first_time = marks[0]
    return (last_time - first_time) / max(1, last_step - first_step)


def resume_path(out: Path) -> Path:
    return out.with_name(out.name + ".resume")


def raw_path(out: Path) -> Path:
    """Where a run with ``ema_decay`` keeps its last raw (not averaged) weights."""
    return out.with_name(out.stem + ".raw.pt")


def train(cfg: Config, cases: list[Case], vocab: Vocabulary, text: TextEncoder, out: str | Path,
          val_cases: list[Case] | None = None, init: TextSegNet | None = None, resume: bool = True,
          progress: bool = True, base_stats: dict[str, LabelStats] | None = None,
          base_fingerprints: list[str] | None = None, base_neighbours: dict[str, Neighbours] | None = None) -> dict:
    """Train and write a servable checkpoint to ``out``.

    Args:
        cfg: model and training configuration.
        cases: training cases (working grid).
        vocab: label vocabulary; stored in the checkpoint.
        text: frozen text encoder.
        out: checkpoint path; ``<out>.resume`` holds optimiser state to continue an
            interrupted run with the same config.
        val_cases: validation cases (scored at ``val_every`` and at the end).
        init: start from this network (online fine-tuning) instead of a fresh one.
        resume: continue from ``<out>.resume`` when it exists and its config matches.
        base_stats: label statistics of an earlier training (fine-tuning); labels of
            ``cases`` get fresh ones, the others keep these.
        base_fingerprints: content fingerprints of the volumes an earlier training saw
            (fine-tuning); stored with those of ``cases`` so that ``evaluate`` can tell
            when it scores a volume the network has learnt from.
        base_neighbours: label neighbours of an earlier training (fine-tuning); enclosed
            labels of ``cases`` get fresh ones, the others keep these.

    Returns:
        Summary dict: steps, seconds, final losses and validation metrics.
    """
    out = Path(out)
    tc = cfg.train
    torch.manual_seed(tc.seed)
    if init is None and cfg.model.encode_window != tc.patch_size:
        # a fresh network is served by encoding windows the size of its training patches
        cfg = replace(cfg, model=replace(cfg.model, encode_window=tc.patch_size))
    device = resolve_device(tc.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one patch shape throughout: tune the convolutions once
    net = (init if init is not None else build_network(cfg.model)).to(device)
    net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    ema = (AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(tc.ema_decay), use_buffers=True)
           if tc.ema_decay > 0 else None)
    served = ema.module if ema is not None else net  # the weights validated and saved
    step = 0
    rpath = resume_path(out)
    if resume and rpath.exists():
        state = torch.load(rpath, map_location=device, weights_only=False)
        if state.get("config") == cfg.to_dict():
            net.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            step = int(state["step"])
            logger.info("resuming %s at step %d", out, step)
        else:
            logger.warning("ignoring %s: it was written with another config", rpath)
    sampler = PatchSampler(cases, vocab, tc.patch_size, cfg.model.working_spacing, seed=tc.seed + step,
                           coord_jitter_mm=tc.coord_jitter_mm, focus_sampling=tc.focus_sampling,
                           distinct_prompts=tc.distinct_prompts, absent_sampling=tc.absent_sampling,
                           affine_prob=tc.affine_prob, label_contrast_hu=tc.label_contrast_hu,
                           label_contrast_prob=tc.label_contrast_prob, absent_site=tc.absent_site,
                           focus_boost=tc.focus_boost)
    vocab_features = text.encode(sorted({p for e in vocab for p in e.train_prompts})).to(device)  # warms the cache too
    if init is None and step == 0:
        net.head.set_text_center(vocab_features)
    criterion = TextSegLoss(absent_dice=tc.absent_dice)
    unique = list({c.id: c for c in cases}.values())
    smooth_of: dict[str, float] = {}
    if tc.absent_smooth == "size":
        cap = math.prod(tc.patch_size) / 4  # a patch sees only part of a large organ
        smooth_of = typical_voxels((c.label.numpy() for c in unique), vocab, cap)
        logger.info("absent-prompt Dice smoothing (voxels): %s",
                    ", ".join(f"{k} {v:.0f}" for k, v in sorted(smooth_of.items())))
    precision = resolve_precision(tc.precision, device)
    logger.info("training on %s in %s", device, precision)
    start = time.perf_counter()
    budget = tc.max_minutes * 60 if tc.max_minutes > 0 else float("inf")
    history: list[dict] = []
    difficulty_history: list[dict] = []  # adaptive sampling's running losses, for diagnosis
    running: dict[str, float] = {}
    bar = tqdm(total=tc.steps, initial=step, desc="train", disable=not progress, dynamic_ncols=True)
    stopped_early = False
    sched = tc  # the schedule; fitted to the time budget when one is set
    first_step = step
    marks: list[tuple[int, float]] = []  # (step, time) every 20 steps, for the pace
    while step < sched.steps:
        now = time.perf_counter()
        if tc.max_minutes > 0 and step > first_step:  # the first step carries one-off costs
            if not marks or step - marks[-1][0] >= 20:
                marks = [*marks[-20:], (step, now)]
            if step - marks[0][0] >= 5:
                # re-fit at every step from the recent pace (shrinking, or growing back up to
                # the configured steps), so the schedule, with its decayed learning rate and
                # stage 2, ends inside the budget
                fit = fit_steps(step, recent_pace([*marks, (step, now)]), budget - (now - start), tc.steps)
                if fit != sched.steps:
                    logger.debug("time budget: schedule fitted to %d steps", fit)
                    sched = replace(tc, steps=fit)
                    bar.total = fit
        if now - start > budget:
            stopped_early = True
            logger.info("time budget of %.1f min reached at step %d", tc.max_minutes, step)
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, sched)
        x, prompts, targets, names = sampler.sample(tc.prompts_per_image, absent_fraction_at(step, sched))
        x, targets = x.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        features = text.encode(prompts).to(device)
        with autocast(precision, device):
            outputs = as_float32(net(x, features))
        fg_prompts = None
        if tc.fg_above > 0 and sampler.difficulty is not None:
            fg_prompts = torch.tensor([sampler.difficulty.value(n) > tc.fg_above for n in names], device=device)
        smooth = (torch.tensor([smooth_of.get(n, 1.0) for n in names], device=device)
                  if smooth_of else None)
        loss, parts = criterion(outputs, targets, loss_weights_at(step, sched), fg_prompts, smooth)
        if sampler.difficulty is not None:
            sampler.difficulty.update(names, criterion.prompt_dice, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        optimizer.step()
        if ema is not None:
            ema.update_parameters(net)
        step += 1
        for k, v in parts.items():
            running[k] = 0.95 * running.get(k, v) + 0.05 * v
        bar.update(1)
        bar.set_postfix(stage=stage_at(step - 1, sched), **{k: f"{v:.3f}" for k, v in running.items()})
        if sampler.difficulty is not None and (step % DIFFICULTY_EVERY == 0 or step == sched.steps):
            hard = sorted(sampler.difficulty.values.items(), key=lambda kv: -kv[1])
            difficulty_history.append({"step": step, "values": {k: round(v, 3) for k, v in hard}})
            logger.debug("step %d: hardest labels (running soft-Dice loss) %s", step,
                         ", ".join(f"{k} {v:.2f}" for k, v in hard[:5]))
        if step % 100 == 0 or step == sched.steps:
            atomic_torch_save({"config": cfg.to_dict(), "state_dict": net.state_dict(),
                               "optimizer": optimizer.state_dict(), "step": step,
                               "ema": ema.state_dict() if ema is not None else None}, rpath)
        if val_cases and tc.val_every and step % tc.val_every == 0 and step < sched.steps:
            metrics = validate(served, text, val_cases, vocab)
            history.append({"step": step, **metrics})
            logger.info("step %d validation %s", step, metrics)
    bar.close()
    seconds = time.perf_counter() - start
    stats = {**(base_stats or {}),
             **label_stats((c.label.numpy() for c in unique), vocab, cfg.model.working_spacing ** 3)}
    neighbours = {**(base_neighbours or {}), **label_neighbours((c.label.numpy() for c in unique), vocab, stats)}
    val = validate(served, text, val_cases, vocab) if val_cases else {}
    summary = {"steps": step, "seconds": round(seconds, 1), "stopped_early": stopped_early,
               "losses": {k: round(v, 4) for k, v in running.items()}, "validation": val, "history": history,
               "train_cases": [c.id for c in cases],
               "train_fingerprints": sorted({*(base_fingerprints or []), *(c.fingerprint for c in cases if c.fingerprint)}), "val_cases": [c.id for c in (val_cases or [])],
               "train_config": asdict(tc), "precision": precision, "device": str(device),
               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "host": host_info(),
               "label_difficulty": {k: round(v, 4) for k, v in sorted((sampler.difficulty.values if sampler.difficulty else {}).items())},
               "label_difficulty_history": difficulty_history,
               "prompt_counts": {k: {"present": c[0], "absent": c[1]} for k, c in sorted(sampler.prompt_counts.items())},
               "absent_site_counts": dict(sorted(sampler.site_counts.items())),
               "absent_smooth_voxels": {k: round(v, 1) for k, v in sorted(smooth_of.items())},
               "schedule_steps": sched.steps, "label_stats": stats_to_json(stats),
               "label_neighbours": neighbours_to_json(neighbours)}
    net.eval()
    served.eval()
    net.to("cpu")  # a caller's ``init`` network goes back where it came from
    save_checkpoint(out, served, vocab, meta=summary)
    if ema is not None:  # the last raw weights too, to compare with their average
        save_checkpoint(raw_path(out), net, vocab, meta={**summary, "weights": "raw"})
    if rpath.exists() and not stopped_early:
        rpath.unlink()
    logger.info("saved %s after %d steps (%.0f s, %.2f steps/s); validation %s", out, step, seconds,
                (step - first_step) / max(seconds, 1e-9), val)
    return summary
