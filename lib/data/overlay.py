"""PNG overlays of phantom label maps on a soft-tissue CT window (for the docs)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

#: (easy seed, hard seed) used for docs/img
DEFAULT_SEEDS = (7, 4)

_COLORS = {
    1: "#c0504d", 2: "#8064a2", 3: "#f79646", 4: "#ffc000", 5: "#ff0000", 6: "#4f81bd",
    7: "#f2f2f2", 8: "#9bbb59", 9: "#3a5fcd", 10: "#00ff00", 11: "#00ffff", 12: "#ff66cc",
    13: "#66ff66", 14: "#c4a35a",
}


def _display(slice2d: np.ndarray) -> np.ndarray:
    """(X, Y) or (X, Z) array -> rows top=anterior/superior, columns left=patient's right."""
    return slice2d.T[::-1, ::-1]


def render_overlays(out_dir: Path, seeds: Sequence[int] = DEFAULT_SEEDS, window=(40, 400)) -> list[Path]:
    """Write an axial and a coronal overlay PNG for each seed (raw :func:`generate_phantom` seed).

    Files are ``out_dir/phantom_<difficulty>_<seed>_<view>.png``. Images are shown in the
    radiological convention (patient's right on the viewer's left).

    Returns:
        the written paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from lib.data.phantoms import INDEX_TO_NAME, generate_phantom

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    level, width = window
    lo, hi = level - width / 2, level + width / 2
    cmap = ListedColormap(["#000000"] + [_COLORS[i] for i in range(1, 15)])
    paths: list[Path] = []
    for seed in seeds:
        ph = generate_phantom(int(seed))
        sp = ph.meta["spacing"]
        lab = ph.label
        # axial: the slice with most kidney + liver; coronal: through the kidneys
        zc = int(np.argmax(np.isin(lab, [1, 3, 4, 2]).sum((0, 1))))
        yk = np.flatnonzero(np.isin(lab, [3, 4]).any((0, 2)))
        yc = int(yk.mean()) if yk.size else lab.shape[1] // 2 - 10
        views = {
            "axial": (ph.image[:, :, zc], lab[:, :, zc], sp[1] / sp[0]),
            "coronal": (ph.image[:, yc, :], lab[:, yc, :], sp[2] / sp[0]),
        }
        for view, (img, lb, aspect) in views.items():
            img, lb = _display(img.astype(np.float32)), _display(lb)
            fig, axes = plt.subplots(1, 2, figsize=(9, 4.6), dpi=80)
            for ax in axes:
                ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="bilinear")
                ax.set_axis_off()
            axes[1].imshow(np.ma.masked_equal(lb, 0), cmap=cmap, vmin=0, vmax=14, alpha=0.45,
                           aspect=aspect, interpolation="nearest")
            present = sorted(int(v) for v in np.unique(lb) if v)
            axes[1].legend(handles=[Patch(color=_COLORS[v], label=INDEX_TO_NAME[v]) for v in present],
                           loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False, labelcolor="white")
            m = ph.meta
            fig.suptitle(f"seed {seed} ({m['difficulty']}: {', '.join(m['reasons']) or 'common case'}), "
                         f"{m['phase']}, noise sd {m['noise_sd']:.0f} HU, spacing "
                         f"{sp[0]:.2f}x{sp[1]:.2f}x{sp[2]:.2f} mm - {view}", fontsize=9, color="white")
            axes[0].text(2, 2, "R", color="yellow", fontsize=10, va="top")
            fig.tight_layout()
            path = out_dir / f"phantom_{m['difficulty']}_{seed}_{view}.png"
            fig.savefig(path, facecolor="black")
            plt.close(fig)
            paths.append(path)
            log.info("wrote %s", path)
    return paths


def render_prediction_overlay(case: dict, path: Path) -> Path:
    """Truth and prediction side by side on the axial slice with the most labelled voxels.

    Args:
        case: {"case": id, "image": (X, Y, Z), "label": (X, Y, Z) int, "vocab": Vocabulary,
            "pred": {prompt: (X, Y, Z) bool}}; prompts are canonical label names.
        path: PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    image, label, vocab = case["image"], case["label"], case["vocab"]
    names = [n for n in case["pred"] if vocab.resolve(n) is not None and not vocab.resolve(n).composite]
    pred = np.zeros_like(label)
    for n in names:
        pred[(pred == 0) & case["pred"][n]] = vocab.resolve(n).indices[0]
    z = int(np.argmax((label > 0).sum((0, 1)) + (pred > 0).sum((0, 1))))
    palette = ["#000000"] + [plt.get_cmap("tab20")(i % 20) for i in range(1, 256)]
    cmap = ListedColormap(palette)
    lo, hi = np.percentile(image, [1, 99]) if image.min() >= -100 else (-160, 240)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.6), dpi=80)
    for ax, lab, title in ((axes[0], label, "reference"), (axes[1], pred, "textseg")):
        ax.imshow(_display(image[:, :, z]), cmap="gray", vmin=lo, vmax=hi)
        ax.imshow(np.ma.masked_equal(_display(lab[:, :, z] % 255), 0), cmap=cmap, vmin=0, vmax=255, alpha=0.45,
                  interpolation="nearest")
        ax.set_title(title, color="white", fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"{case['case']} (axial slice {z}; patient's right on the left)", color="white", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, facecolor="black")
    plt.close(fig)
    return path
