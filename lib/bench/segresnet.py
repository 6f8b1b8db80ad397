"""Closed-set baseline for bench-accuracy: a MONAI SegResNet trained on the same patches,
working grid and time budget as textseg, one softmax channel per label."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.networks.nets import SegResNet
from tqdm import tqdm

from ..data.preprocess import coordinate_channels, load_volume, normalize_intensity, prepare, to_original_grid
from ..data.vocab import Vocabulary
from ..evaluation import LESION_LABELS, dice_nsd, summarize
from ..inference.guided import guided_upsample
from ..lesion_detection import case_lesion_rows
from ..training.data import Case, PatchSampler
from ..training.precision import autocast, resolve_precision

logger = logging.getLogger(__name__)


def build_segresnet(n_labels: int, init_filters: int = 16) -> SegResNet:
    """SegResNet with MONAI Label radiology's block layout; 4 input channels (image + coordinates)."""
    return SegResNet(spatial_dims=3, in_channels=4, out_channels=n_labels + 1, init_filters=init_filters,
                     blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), dropout_prob=0.2)


def train_segresnet(cases: list[Case], vocab: Vocabulary, patch_size, spacing: float, minutes: float,
                    max_steps: int = 100_000, seed: int = 0, progress: bool = True, precision: str = "bf16"):
    """Train until the time budget is spent, with the same forward-pass precision as
    textseg's training (``TrainConfig.precision``). Returns (net, class index list, info)."""
    indices = sorted(vocab.index_to_name())
    lut = torch.zeros(max(indices) + 1, dtype=torch.long)
    for c, i in enumerate(indices, start=1):
        lut[i] = c
    torch.manual_seed(seed)
    net = build_segresnet(len(indices)).train()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    sampler = PatchSampler(cases, vocab, patch_size, spacing, seed=seed)
    precision = resolve_precision(precision)
    start, step = time.perf_counter(), 0
    bar = tqdm(desc="segresnet", disable=not progress)
    while step < max_steps and time.perf_counter() - start < minutes * 60:
        x, lab, _, _, _ = sampler.patch()
        y = lut[lab.long().clamp(max=len(lut) - 1)][None, None]
        with autocast(precision):
            logits = net(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss):.3f}")
    bar.close()
    return net.eval(), indices, {"steps": step, "seconds": round(time.perf_counter() - start, 1), "precision": precision,
                                 "params": sum(p.numel() for p in net.parameters())}


@torch.no_grad()
def evaluate_segresnet(net, indices: list[int], pairs, vocab: Vocabulary, spacing: float, roi, progress: bool = True,
                       guided: tuple[int, float] | None = None) -> dict:
    """Same metrics as textseg's evaluation, on the input grid (single-index labels only).

    With ``guided`` = (radius, eps), each softmax channel is also brought to the input grid
    by textseg's guided filter (on CT) before the argmax, and those masks are scored too
    (``guided_rows``, ``guided_summary``): the same post-processing for both networks. The
    lesion labels are also scored lesion by lesion, as ``evaluate`` does (``lesions``,
    ``guided_lesions``, and ``lesion_detection`` in each summary)."""
    rows, guided_rows, lesions, guided_lesions = [], [], [], []
    names = vocab.index_to_name()
    for case_id, image_path, label_path in tqdm(pairs, desc="eval segresnet", disable=not progress):
        img = load_volume(image_path)
        lab = load_volume(label_path, label=True)[0].numpy().round().astype(np.int32)
        spacing_mm = tuple(float(s) for s in np.sqrt((np.asarray(img.affine)[:3, :3] ** 2).sum(0)))
        vol = prepare(img, spacing)
        shape = tuple(vol.image.shape[1:])
        x = torch.cat([vol.image, coordinate_channels(shape, spacing)]).unsqueeze(0)
        probs = torch.softmax(sliding_window_inference(x, roi, 2, net, overlap=0.25), 1)[0]
        linear = to_original_grid(probs, vol)
        preds = [(rows, lesions, linear.argmax(0).numpy())]
        if guided is not None and vol.modality == "CT":
            guide = normalize_intensity(img[0].as_tensor(), vol.modality)
            preds.append((guided_rows, guided_lesions, guided_upsample(probs, linear, vol, guide, *guided).argmax(0).numpy()))
        del linear
        for out, out_lesions, pred in preds:
            case_rows, case_lesions = _rows(case_id, pred, lab, indices, names, vocab, vol.modality, spacing_mm)
            out.extend(case_rows)
            out_lesions.extend(case_lesions)
    result = {"rows": rows, "lesions": lesions,
              "summary": summarize(rows, lesions)}
    if guided is not None:
        result.update(guided_rows=guided_rows, guided_lesions=guided_lesions,
                      guided_summary=summarize(guided_rows, guided_lesions))
    return result


def _rows(case_id: str, pred: np.ndarray, lab: np.ndarray, indices: list[int], names: dict, vocab: Vocabulary,
          modality: str, spacing_mm: tuple[float, float, float]) -> tuple[list[dict], list[dict]]:
    """Evaluation rows of one case's argmax map ``pred`` (channel c = label ``indices[c-1]``),
    and the lesion-wise rows of its ``LESION_LABELS`` (``lesion_detection.case_lesion_rows``;
    a mask under the 40 mm3 presence floor counts as empty, as in its row)."""
    rows, lesions = [], []
    for c, idx in enumerate(indices, start=1):
        entry = vocab[names[idx]]
        if entry.modality != modality:
            continue
        truth = lab == idx
        mask = pred == c
        row = {"case": case_id, "label": entry.name, "prompt": entry.name, "kind": "canonical",
               "present": bool(truth.any()), "predicted_present": bool(mask.sum() * np.prod(spacing_mm) >= 40),
               "uncertainty": None, "composite": False}
        if row["present"]:
            row["dice"], row["nsd"] = dice_nsd(mask, truth, spacing_mm)
        rows.append(row)
        if entry.name in LESION_LABELS:
            lesions += case_lesion_rows(case_id, entry.name, mask if row["predicted_present"] else np.zeros_like(mask),
                                        truth, spacing_mm)
    return rows, lesions
