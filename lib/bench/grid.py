"""The working grid's ceiling: the Dice and NSD a perfect model would reach after its masks
go through the working grid and back to the input grid.

The model predicts on an isotropic working grid (2 mm by default) and its probabilities
are resampled linearly to the input grid and thresholded at 0.5. Feeding the ground truth
itself through that path shows what the grid alone costs, for the two kinds of training
target: the nearest-neighbour label map (``nearest``) and each structure's share of every
working voxel (``linear``, ``soft_label_maps``, the ``train.soft_targets`` option).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from ..data.preprocess import load_volume, prepare, soft_label_maps, to_original_grid, to_working_grid
from ..data.vocab import Vocabulary
from ..evaluation import dice_nsd, summarize

ROUTES = ("nearest", "linear")


def grid_rows(image_path: str, label_path: str, case_id: str, vocab: Vocabulary, spacing: float) -> dict[str, list[dict]]:
    """Evaluation rows (``lib.evaluation`` format) of one case for each route: every
    vocabulary entry of the case's modality that is present, scored against the label map
    on the input grid."""
    img = load_volume(image_path)
    lab = load_volume(label_path, label=True)
    truth = lab[0].numpy().round().astype(np.int32)
    spacing_in = tuple(float(s) for s in np.sqrt((np.asarray(img.affine)[:3, :3] ** 2).sum(0)))
    vol = prepare(img, spacing)
    nearest = to_working_grid(lab, spacing, label=True).as_tensor()[0].round().long()
    shares = soft_label_maps(lab, vol)
    rows: dict[str, list[dict]] = {r: [] for r in ROUTES}
    for e in vocab:
        if e.modality != vol.modality or not e.mask(truth).any():
            continue
        zero = torch.zeros(nearest.shape)
        maps = {"nearest": torch.as_tensor(np.isin(nearest.numpy(), e.indices)).float(),
                "linear": sum((shares[v].float() / 255 for v in e.indices if v in shares), zero).clamp(max=1)}
        for route, m in maps.items():
            back = to_original_grid(m[None], vol)[0].numpy() >= 0.5
            dice, nsd = dice_nsd(back, e.mask(truth), spacing_in)
            rows[route].append({"case": case_id, "label": e.name, "prompt": e.name, "kind": "canonical",
                                "present": True, "predicted_present": bool(back.any()), "composite": e.composite,
                                "dice": dice, "nsd": nsd})
    return rows


def grid_ceiling(pairs: list[tuple[str, str, str]], vocab: Vocabulary, spacing: float, progress: bool = True) -> dict:
    """The ceiling of each route over (id, image, label) triples: ``summarize``'s figures
    (organ and lesion means, per structure) for ``nearest`` and ``linear``."""
    if not pairs:
        raise ValueError("no labelled volumes to measure")
    rows: dict[str, list[dict]] = {r: [] for r in ROUTES}
    for case_id, image_path, label_path in tqdm(pairs, desc="grid ceiling", disable=not progress):
        for route, r in grid_rows(image_path, label_path, case_id, vocab, spacing).items():
            rows[route] += r
    out = {"working_spacing": spacing, "cases": [p[0] for p in pairs]}
    for route in ROUTES:
        s = summarize(rows[route])
        out[route] = {k: s[k] for k in ("mean_dice", "mean_nsd", "lesion_dice", "lesion_nsd", "per_prompt")}
    return out
