"""Learning-curve summaries and the plot of the active-learning benchmark (pure functions
over the per-round records that ``lib.bench.al`` writes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

UNCERTAINTY, RANDOM, EPISTEMIC = "textseg_uncertainty", "random", "epistemic"


def aulc(labelled: list[int], dice: list[float]) -> float:
    """Area under the learning curve, normalised by the label range: the mean Dice over
    the budget (trapezoids between measured budgets)."""
    x, y = np.asarray(labelled, float), np.asarray(dice, float)
    if len(x) < 2 or x[-1] == x[0]:
        return float(y.mean()) if len(y) else float("nan")
    return float(np.trapz(y, x) / (x[-1] - x[0]))


def labels_to_reach(labelled: list[int], dice: list[float], target: float) -> int | None:
    """First labelled count whose Dice reaches ``target``; None when no budget does."""
    for n, d in zip(labelled, dice):
        if d >= target:
            return int(n)
    return None


def mean_curve(runs: list[dict], key: str = "mean_dice") -> tuple[list[int], np.ndarray]:
    """(labelled counts, (seeds, budgets) array) of the runs of one strategy."""
    labelled = [r["labelled"] for r in runs[0]["rounds"]]
    values = np.array([[r[key] for r in run["rounds"]] for run in runs], float)
    return labelled, values


def summarize(runs: dict[str, list[dict]], ceiling: list[dict]) -> dict:
    """Per strategy: mean curve, AULC (mean and sd over seeds), labels to 95 % of the
    full-pool Dice (on the seed-mean curve), scoring seconds per image; then the targets."""
    full = round(float(np.mean([c["mean_dice"] for c in ceiling])), 4) if ceiling else None
    out: dict = {"full_pool_dice": full,
                 "full_pool_nsd": round(float(np.mean([c["mean_nsd"] for c in ceiling])), 4) if ceiling else None,
                 "target_dice_95": round(0.95 * full, 4) if ceiling else None, "strategies": {}}
    for name, rs in runs.items():
        labelled, dice = mean_curve(rs)
        _, nsd = mean_curve(rs, "mean_nsd")
        aulcs = [aulc(labelled, d) for d in dice]
        per_image = [r["scoring_s_per_image"] for run in rs for r in run["rounds"] if r.get("scoring_s_per_image")]
        out["strategies"][name] = {
            "labelled": labelled, "mean_dice": dice.mean(0).round(4).tolist(), "sd_dice": dice.std(0).round(4).tolist(),
            "mean_nsd": nsd.mean(0).round(4).tolist(), "aulc": round(float(np.mean(aulcs)), 4),
            "aulc_sd": round(float(np.std(aulcs)), 4),
            "labels_to_95": labels_to_reach(labelled, dice.mean(0).tolist(), 0.95 * full) if ceiling else None,
            "scoring_s_per_image": round(float(np.mean(per_image)), 3) if per_image else 0.0,
            "uncertainty_error_spearman": _mean_or_none(r.get("uncertainty_error_spearman") for run in rs
                                                        for r in run["rounds"]),
            "seeds": len(rs)}
    if RANDOM in out["strategies"]:  # a second yardstick when the compute-matched ceiling is weak
        final = out["strategies"][RANDOM]["mean_dice"][-1]
        for v in out["strategies"].values():
            v["labels_to_random_final"] = labels_to_reach(v["labelled"], v["mean_dice"], final)
    out["targets"] = targets(out["strategies"])
    return out


def _mean_or_none(values) -> float | None:
    v = [x for x in values if x is not None]
    return round(float(np.mean(v)), 4) if v else None


def targets(s: dict) -> dict:
    """The issue's targets, each with the figures it was decided on (None: not measurable)."""
    res: dict = {}
    if UNCERTAINTY in s and RANDOM in s:
        u, r = s[UNCERTAINTY], s[RANDOM]
        margins = [round(a - b, 4) for a, b in zip(u["mean_dice"], r["mean_dice"])]
        res["at_or_above_random_every_budget"] = {"met": all(m >= 0 for m in margins[1:]), "margins": margins,
                                                  "note": "first budget is the shared starting model"}
        lu, lr = u["labels_to_95"], r["labels_to_95"]
        met = None if lu is None or lr is None else lu <= 0.6 * lr
        if lu is not None and lr is None:
            met = True  # reached while random never did within the budget
        res["labels_to_95_at_most_60pct_of_random"] = {"met": met, "textseg_uncertainty": lu, "random": lr}
        lu, lr = u.get("labels_to_random_final"), r.get("labels_to_random_final")
        if lu is not None and lr:
            res["labels_to_random_final_dice"] = {"ratio": round(lu / lr, 3), "textseg_uncertainty": lu, "random": lr,
                                                  "note": "not an issue target: labels needed to reach the Dice "
                                                          "random has at the largest budget"}
    if UNCERTAINTY in s and EPISTEMIC in s:
        a, b = s[UNCERTAINTY]["scoring_s_per_image"], s[EPISTEMIC]["scoring_s_per_image"]
        res["scoring_at_most_half_of_epistemic"] = {"met": bool(b and a <= 0.5 * b), "textseg_uncertainty_s": a,
                                                    "epistemic_s": b, "ratio": round(a / b, 3) if b else None}
    return res


def plot(summary: dict, path: Path, title: str) -> None:
    """Learning curves (mean over seeds with a +-1 sd band), the full-pool Dice and its 95 %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, s in summary["strategies"].items():
        x, m, sd = np.array(s["labelled"]), np.array(s["mean_dice"]), np.array(s["sd_dice"])
        (line,) = ax.plot(x, m, marker="o", label=f"{name} (AULC {s['aulc']:.3f})")
        ax.fill_between(x, m - sd, m + sd, color=line.get_color(), alpha=0.15)
    full = summary["full_pool_dice"]
    if full is not None:
        ax.axhline(full, color="k", ls="--", lw=1, label=f"full pool {full:.3f}")
        ax.axhline(0.95 * full, color="gray", ls=":", lw=1, label="95 % of full pool")
    ax.set_xlabel("labelled volumes")
    ax.set_ylabel("test mean organ Dice")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(summary: dict) -> str:
    """Learning curves and the targets as Markdown tables."""
    strategies = summary["strategies"]
    budgets = next(iter(strategies.values()))["labelled"]
    head = "| strategy | " + " | ".join(f"{n} labels" for n in budgets) + " | AULC | labels to 95 % | scoring s/image |"
    lines = [head, "|" + "---|" * (len(budgets) + 4)]
    for name, s in strategies.items():
        cells = [f"{m:.3f} ± {sd:.3f}" for m, sd in zip(s["mean_dice"], s["sd_dice"])]
        reach = "not reached" if s["labels_to_95"] is None else str(s["labels_to_95"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {s['aulc']:.3f} ± {s['aulc_sd']:.3f} | {reach} | "
                     f"{s['scoring_s_per_image']:.2f} |")
    if summary["full_pool_dice"] is not None:
        lines += ["", f"Full pool (all labels, same training): Dice {summary['full_pool_dice']:.3f}, "
                      f"NSD {summary['full_pool_nsd']:.3f}; 95 % of it: {summary['target_dice_95']:.3f}."]
    lines += ["", "| target | met | figures |", "|---|---|---|"]
    for name, t in summary["targets"].items():
        figures = ", ".join(f"{k} {v}" for k, v in t.items() if k != "met")
        lines.append(f"| {name.replace('_', ' ')} | {t.get('met', 'n/a')} | {figures} |")
    return "\n".join(lines) + "\n"
