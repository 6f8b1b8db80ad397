"""Validation on the working grid: mean Dice of present structures and the absent-prompt
false-positive rate (fast enough to run inside training)."""

from __future__ import annotations

import torch

from ..data.preprocess import coordinate_channels, pad_to_multiple
from ..data.vocab import Vocabulary
from ..model.text_encoder import TextEncoder
from ..model.textseg import TextSegNet
from .data import Case


@torch.no_grad()
def validate(net: TextSegNet, text: TextEncoder, cases: list[Case], vocab: Vocabulary, max_absent: int = 4) -> dict:
    """Dice (pass 2, threshold 0.5) per present single-index or composite label of each case,
    and the share of absent-structure prompts that produced any foreground.

    Returns ``{"mean_dice", "absent_fp_rate", "n_prompts"}``; mean_dice is the score that
    decides whether a retrained model is published.
    """
    was_training = net.training
    net.eval()
    dices, fps, n_absent = [], 0, 0
    device = next(net.parameters()).device
    spacing = net.cfg.working_spacing
    min_voxels = net.cfg.min_volume_mm3 / spacing**3
    for case in cases:
        shape = tuple(case.label.shape)
        x, _ = pad_to_multiple(torch.cat([case.image, coordinate_channels(shape, spacing)]).unsqueeze(0))
        enc = net.encode_volume(x.to(device))
        values = set(torch.unique(case.label).tolist())
        pool = [e for e in vocab if e.modality == case.modality]
        present = [e for e in pool if values.intersection(e.indices)]
        absent = [e for e in pool if not values.intersection(e.indices)][:max_absent]
        entries = present + absent
        if not entries:
            continue
        out = net.segment(enc, text.encode([e.name for e in entries]).to(device))
        pred = (torch.sigmoid(out["logit2"][:, : shape[0], : shape[1], : shape[2]]) >= net.cfg.threshold).cpu()
        for e, p in zip(entries, pred):
            if e in present:
                t = torch.isin(case.label, torch.tensor(e.indices, dtype=case.label.dtype))
                inter = (p & t).sum().item()
                dices.append(2 * inter / max(1, p.sum().item() + t.sum().item()))
            else:
                n_absent += 1
                fps += int(p.sum().item() >= min_voxels)
    net.train(was_training)
    return {
        "mean_dice": float(sum(dices) / len(dices)) if dices else 0.0,
        "absent_fp_rate": fps / n_absent if n_absent else 0.0,
        "n_prompts": len(dices) + n_absent,
    }
