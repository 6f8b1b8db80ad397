"""Losses (outside the model): Dice + BCE on both passes, alignment and heatmap losses."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from scipy import ndimage


class TextSegLoss(torch.nn.Module):
    """Weighted sum of the training losses.

    Forward args:
        out: the model's dict (``logit1``, ``logit2`` (N, X, Y, Z) on the working grid;
            ``logits2``, ``cosine2`` (N, X/2, Y/2, Z/2)).
        target: (N, X, Y, Z) float in [0, 1] ({0, 1}, or each voxel's share of the
            structure with soft targets); all zero for an absent-structure prompt.
        weights: {"align", "heatmap", "pass1", "pass2", "fg", "blob"} from ``loss_weights_at``.

    Returns:
        (total, parts) with parts a dict of detached floats. ``prompt_dice`` then holds the
        (N,) detached soft-Dice loss of each prompt's last pass computed (pass 2 when its
        weight is on, else pass 1), for the sampler's running difficulty.
    """

    def __init__(self, absent_dice: bool = True) -> None:
        super().__init__()
        # smooth 1 keeps the Dice term bounded and informative for empty targets
        self.dice = DiceLoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0, batch=False, reduction="none")
        self.absent_dice = absent_dice
        self.prompt_dice: torch.Tensor | None = None

    def seg(self, logits: torch.Tensor, target: torch.Tensor, absent_smooth: torch.Tensor | None = None) -> torch.Tensor:
        """Dice + BCE, each averaged over the N prompts: (N, X, Y, Z) x (N, X, Y, Z) -> scalar.
        Equals MONAI's ``DiceCELoss(sigmoid=True, batch=False)``; without ``absent_dice``
        an absent prompt (empty target) contributes no Dice term, only its BCE.

        ``absent_smooth``: optional (N,) per-prompt smoothing of the absent prompts' Dice
        term (``absent_volume_loss``; the present prompts' term is unchanged). With all ones
        it equals the default."""
        dice = self.dice(logits.unsqueeze(1), target.unsqueeze(1)).flatten()  # (N,)
        self.prompt_dice = dice.detach()
        present = (target.flatten(1) >= 0.5).any(1)
        if not self.absent_dice:
            dice = dice * present.to(dice.dtype)
        elif absent_smooth is not None:
            # an absent prompt's target is empty up to a neighbour's soft edge: scored as empty
            dice = torch.where(present, dice, absent_volume_loss(logits, absent_smooth))
        return dice.mean() + F.binary_cross_entropy_with_logits(logits, target)

    def forward(self, out: dict[str, torch.Tensor], target: torch.Tensor, weights: dict[str, float],
                fg_prompts: torch.Tensor | None = None, absent_smooth: torch.Tensor | None = None):
        """``fg_prompts``: optional (N,) bool, the prompts the foreground-only term applies
        to (default: all). ``absent_smooth``: optional (N,), see ``seg``."""
        t = target.unsqueeze(1)
        parts = {"pass1": self.seg(out["logit1"], target, absent_smooth)}
        if weights.get("pass2", 0.0) > 0:
            parts["pass2"] = self.seg(out["logit2"], target, absent_smooth)
        if weights.get("fg", 0.0) > 0:
            keep = fg_prompts if fg_prompts is not None else torch.ones(target.shape[0], dtype=torch.bool, device=target.device)
            parts["fg"] = foreground_loss(out["logit1"][keep], target[keep])
        if weights.get("blob", 0.0) > 0:
            pieces = target_pieces(target)
            passes = [out["logit1"]] + ([out["logit2"]] if "pass2" in parts else [])
            parts["blob"] = sum(blob_loss(lg, pieces) for lg in passes) / len(passes)
        soft = F.avg_pool3d(t, 2).squeeze(1)  # (N, X/2, Y/2, Z/2) foreground fraction
        parts["align"] = alignment_loss(out["cosine2"], soft)
        parts["heatmap"] = heatmap_loss(out["logits2"], soft)
        total = sum(weights.get(k, 0.0) * v for k, v in parts.items())
        return total, {k: float(v.detach()) for k, v in parts.items()}


def absent_volume_loss(logits: torch.Tensor, smooth: torch.Tensor) -> torch.Tensor:
    """The Dice loss of an empty target, ``P / (P + s)`` with ``P`` the prompt's summed
    probability and ``s`` its smoothing: (N, X, Y, Z) x (N,) -> (N,).

    With ``s = 1`` (the Dice term's own smoothing) it is MONAI's Dice loss for an empty
    target, whose gradient ``s / (P + s) ** 2`` per unit of probability is 1 at ``P = 0``:
    a few stray voxels of an absent prompt cost as much as missing a 1-voxel structure,
    and far more than the pull a present small structure's Dice term gives each of its
    ``G`` voxels (about ``2 / G``), so a lesion prompted absent as often as present is
    cheapest left empty everywhere. With ``s`` the structure's typical voxel count the
    push and the pull are of one size, and a large false mask (``P`` near ``s``) keeps a
    gradient instead of saturating at a loss of 1."""
    p = torch.sigmoid(logits.float()).flatten(1).sum(1)
    smooth = smooth.to(p)
    return p / (p + smooth)


def target_pieces(target: torch.Tensor) -> list[torch.Tensor | None]:
    """The connected pieces (26-connected, voxels with target >= 0.5) of each prompt's
    target: (N, X, Y, Z) -> N entries, each a (X, Y, Z) long map numbering its pieces
    1..K, or None where the target has fewer than two pieces (the blob term then equals
    the patch's own Dice term and is skipped)."""
    structure = np.ones((3, 3, 3), dtype=bool)
    out: list[torch.Tensor | None] = []
    for fg in (target.detach() >= 0.5).cpu().numpy():
        pieces, count = ndimage.label(fg, structure=structure)
        out.append(torch.as_tensor(pieces, dtype=torch.long, device=target.device) if count >= 2 else None)
    return out


def blob_loss(logits: torch.Tensor, pieces: list[torch.Tensor | None], smooth: float = 1.0) -> torch.Tensor:
    """Mean over pieces of each piece's own soft-Dice loss, after the "blob loss" of
    Kofler et al. (2022, instance-imbalance-aware losses): for piece ``c`` the prediction
    with the other pieces' voxels removed is scored against piece ``c`` alone, so every
    piece weighs the same whatever its size, and a false positive anywhere off the
    structure costs each piece. Averaged over the prompts with two or more pieces.

    Args:
        logits: (N, X, Y, Z) logits of one pass.
        pieces: from ``target_pieces`` (N entries).
        smooth: the Dice term's smoothing (numerator and denominator), as the patch's.

    Returns:
        Scalar; 0 (with a graph) when no prompt has two pieces.
    """
    terms = []
    for lg, lab in zip(logits, pieces):
        if lab is None:
            continue
        flat, p = lab.flatten(), torch.sigmoid(lg.float()).flatten()  # (V,) each
        k = int(flat.max()) + 1
        inside = torch.zeros(k, dtype=p.dtype, device=p.device).scatter_add(0, flat, p)[1:]  # (K,) sum over piece c
        size = torch.bincount(flat, minlength=k)[1:].to(p.dtype)  # (K,)
        # the prediction without the other pieces' voxels: all of it, less theirs
        kept = p.sum() - (inside.sum() - inside)  # (K,)
        terms.append((1 - (2 * inside + smooth) / (kept + size + smooth)).mean())
    if not terms:
        return logits.sum() * 0.0
    return torch.stack(terms).mean()


def alignment_loss(cosine: torch.Tensor, soft_target: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Raise text-voxel cosine similarity on the foreground, push it below ``margin`` elsewhere.

    Args:
        cosine: (N, ...) cosine similarity between each voxel and its prompt.
        soft_target: (N, ...) foreground fraction in [0, 1].

    Returns:
        Scalar: mean_fg(1 - cos) + mean_bg(relu(cos - margin)), each averaged over prompts
        that have such voxels.
    """
    fg = (soft_target >= 0.5).to(cosine.dtype)
    bg = 1 - fg
    dims = tuple(range(1, cosine.ndim))
    fg_n, bg_n = fg.sum(dims), bg.sum(dims)
    fg_term = ((1 - cosine) * fg).sum(dims) / fg_n.clamp(min=1)
    bg_term = (F.relu(cosine - margin) * bg).sum(dims) / bg_n.clamp(min=1)
    has_fg = (fg_n > 0).to(cosine.dtype)
    return (fg_term * has_fg).sum() / has_fg.sum().clamp(min=1) + bg_term.mean()


def heatmap_loss(logits: torch.Tensor, soft_target: torch.Tensor) -> torch.Tensor:
    """Calibrate the coarse similarity map: MSE between sigmoid(logits) and the foreground
    fraction of each coarse voxel. (N, ...) x (N, ...) -> scalar."""
    return F.mse_loss(torch.sigmoid(logits), soft_target)


def foreground_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE on the foreground voxels only, averaged per prompt over its foreground and then
    over the prompts that have one (N, X, Y, Z) x (N, X, Y, Z) -> scalar; 0 without any.

    Unlike the Dice term (whose gradient vanishes once the sigmoid saturates) and the BCE
    over the whole patch (where a small structure's voxels weigh little), it pulls a
    structure's voxels up with the same strength whatever its size, so a prompt that has
    fallen to "never present" is pulled back whenever its structure is in the patch."""
    fg = target >= 0.5  # soft targets: the voxels mostly inside the structure
    n = fg.flatten(1).sum(1)
    if not bool((n > 0).any()):
        return logits.sum() * 0.0
    per_voxel = F.softplus(-logits) * fg.to(logits.dtype)
    per_prompt = per_voxel.flatten(1).sum(1) / n.clamp(min=1)
    return per_prompt[n > 0].mean()
