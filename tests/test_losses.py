"""The training losses on tiny tensors: exact values and which prompts they act on."""

import math

import pytest
import torch
from monai.losses import DiceCELoss, DiceLoss

from lib.training.losses import TextSegLoss, absent_volume_loss, blob_loss, foreground_loss, target_pieces


def _batch():
    torch.manual_seed(0)
    target = torch.zeros(3, 8, 8, 8)
    target[0, 2:6, 2:6, 2:6] = 1
    target[1, 0:2, 0:2, 0:2] = 1  # prompt 2 is absent: empty target
    return torch.randn(3, 8, 8, 8) * 3, target


def test_seg_loss_equals_monai_dice_ce():
    logits, target = _batch()
    ref = DiceCELoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0, batch=False)(logits.unsqueeze(1), target.unsqueeze(1))
    torch.testing.assert_close(TextSegLoss().seg(logits, target), ref)


def test_without_absent_dice_an_absent_prompt_gets_only_bce():
    logits, target = _batch()
    with_dice, without = TextSegLoss().seg(logits, target), TextSegLoss(absent_dice=False).seg(logits, target)
    p = torch.sigmoid(logits[2])
    absent_dice = 1 - 1 / (float(p.sum()) + 1)  # Dice loss with smooth 1 and an empty target
    assert float(with_dice - without) == pytest.approx(absent_dice / 3, rel=1e-4)
    # a batch of present prompts only is unchanged
    torch.testing.assert_close(TextSegLoss(absent_dice=False).seg(logits[:2], target[:2]),
                               TextSegLoss().seg(logits[:2], target[:2]))


def test_absent_volume_loss_with_unit_smoothing_is_monai_dice_of_an_empty_target():
    logits, _ = _batch()
    ref = DiceLoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0, batch=False, reduction="none")(
        logits.unsqueeze(1), torch.zeros_like(logits).unsqueeze(1)).flatten()
    torch.testing.assert_close(absent_volume_loss(logits, torch.ones(3)), ref)
    # and so unit smoothing of the absent prompts leaves the segmentation loss as it was
    logits, target = _batch()
    torch.testing.assert_close(TextSegLoss().seg(logits, target, torch.ones(3)), TextSegLoss().seg(logits, target))


def test_absent_smoothing_changes_only_the_absent_prompts_dice_term():
    logits, target = _batch()
    smooth = torch.tensor([5.0, 7.0, 50.0])
    p = float(torch.sigmoid(logits[2]).sum())
    default, sized = TextSegLoss().seg(logits, target), TextSegLoss().seg(logits, target, smooth)
    assert float(default - sized) == pytest.approx((p / (p + 1) - p / (p + 50)) / 3, rel=1e-4)
    # present prompts' smoothing values are not used
    torch.testing.assert_close(TextSegLoss().seg(logits, target, torch.tensor([1e4, 1e4, 50.0])), sized)


def test_size_smoothing_weakens_the_push_on_stray_voxels_and_keeps_one_on_a_large_false_mask():
    """Per unit of probability: s / (P + s)^2. Unit smoothing pushes a few stray voxels
    about s times harder than smoothing by a 40-voxel size, and a 400-voxel false mask far less."""
    def push(total_p: float, s: float) -> float:
        logits = torch.full((1, 10, 10, 10), math.log(total_p / (1000 - total_p)), requires_grad=True)
        absent_volume_loss(logits, torch.tensor([s])).sum().backward()
        p = torch.sigmoid(logits.detach())
        return float((logits.grad / (p * (1 - p))).mean())  # d loss / d (each voxel's probability)

    assert push(0.5, 1.0) == pytest.approx(1 / 1.5 ** 2, rel=1e-3)
    assert push(0.5, 1.0) > 10 * push(0.5, 40.0)
    assert push(400.0, 40.0) > 20 * push(400.0, 1.0)


def test_foreground_loss_averages_each_prompt_over_its_own_foreground():
    target = torch.zeros(3, 4, 4, 4)
    target[0, :2] = 1  # 32 voxels
    target[1, 0, 0, 0] = 1  # 1 voxel
    logits = torch.full_like(target, 5.0)
    logits[1, 0, 0, 0] = -3.0  # the one-voxel structure is missed
    logits[0, :2] = 0.0
    expected = (math.log(2.0) + math.log1p(math.exp(3.0))) / 2  # prompt 2 (empty) left out
    assert float(foreground_loss(logits, target)) == pytest.approx(expected, rel=1e-5)
    # the background does not count, and without any foreground the loss is 0
    logits[0, 2:] = -50.0
    assert float(foreground_loss(logits, target)) == pytest.approx(expected, rel=1e-5)
    assert float(foreground_loss(logits, torch.zeros_like(target))) == 0.0


def test_foreground_term_only_when_weighted():
    logits, target = _batch()
    out = {"logit1": logits, "logit2": logits, "logits2": logits[:, ::2, ::2, ::2],
           "cosine2": torch.tanh(logits[:, ::2, ::2, ::2])}
    weights = {"align": 0.2, "heatmap": 0.5, "pass1": 1.0, "pass2": 0.0}
    total, parts = TextSegLoss()(out, target, weights)
    assert "fg" not in parts and "pass2" not in parts
    total_fg, parts_fg = TextSegLoss()(out, target, {**weights, "fg": 0.5})
    assert parts_fg["fg"] == pytest.approx(float(foreground_loss(logits, target)))
    assert float(total_fg - total) == pytest.approx(0.5 * parts_fg["fg"], rel=1e-5)
    # restricted to some prompts (``train.fg_above``): only their foregrounds pull
    only_second = torch.tensor([False, True, False])
    _, parts_one = TextSegLoss()(out, target, {**weights, "fg": 0.5}, only_second)
    assert parts_one["fg"] == pytest.approx(float(foreground_loss(logits[1:2], target[1:2])))
    assert parts_one["fg"] != pytest.approx(parts_fg["fg"])


def test_target_pieces_numbers_pieces_and_skips_single_ones():
    target = torch.zeros(3, 8, 8, 8)
    target[0, :3, :3, :3] = 1
    target[0, 6:, 6:, 6:] = 0.7  # a second piece (soft target above 0.5)
    target[0, 4, 4, 4] = 0.3  # under 0.5: no piece
    target[1, 2:5, 2:5, 2:5] = 1  # one piece
    pieces = target_pieces(target)
    assert pieces[1] is None and pieces[2] is None
    assert int(pieces[0].max()) == 2 and pieces[0].shape == (8, 8, 8)
    assert int((pieces[0] == 0).sum()) == 512 - 27 - 8
    # diagonal neighbours join (26-connectivity)
    diag = torch.zeros(1, 4, 4, 4)
    diag[0, 0, 0, 0] = diag[0, 1, 1, 1] = 1
    assert target_pieces(diag) == [None]


def test_blob_loss_weighs_each_piece_alike():
    target = torch.zeros(1, 16, 16, 16)
    target[0, :8, :8, :8] = 1  # a large piece: 512 voxels
    target[0, 12:14, 12:14, 12:14] = 1  # a small one: 8 voxels
    pieces = target_pieces(target)
    found_both = torch.where(target > 0, 20.0, -20.0)
    missed_small = found_both.clone()
    missed_small[0, 12:14, 12:14, 12:14] = -20.0
    assert float(blob_loss(found_both, pieces)) == pytest.approx(0.0, abs=1e-6)
    # missing the small piece costs about half the blob term (the other piece is perfect)...
    assert float(blob_loss(missed_small, pieces)) == pytest.approx(0.5 * (1 - 1 / 9), rel=1e-4)
    # ...where the patch's one Dice term barely notices it
    dice = DiceLoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0)
    assert float(dice(missed_small.unsqueeze(1), target.unsqueeze(1))) < 0.01
    # the other piece's voxels do not count against a piece; background voxels do
    stray = found_both.clone()
    stray[0, 15, 0, 0] = 20.0
    assert float(blob_loss(stray, pieces)) == pytest.approx((1 / 1026 + 1 / 18) / 2, rel=1e-3)
    # no prompt with two pieces: zero, with a graph
    single = target_pieces(target[:, :10])
    logits = torch.zeros(1, 10, 16, 16, requires_grad=True)
    zero = blob_loss(logits, single)
    zero.backward()
    assert float(zero) == 0.0 and logits.grad is not None


def test_blob_term_only_when_weighted():
    target = torch.zeros(2, 16, 16, 16)
    target[0, :4, :4, :4] = 1
    target[0, 10:12, 10:12, 10:12] = 1
    logits = torch.randn(2, 16, 16, 16)
    out = {"logit1": logits, "logit2": logits + 1.0, "logits2": logits[:, ::2, ::2, ::2],
           "cosine2": torch.tanh(logits[:, ::2, ::2, ::2])}
    weights = {"align": 0.2, "heatmap": 0.5, "pass1": 1.0, "pass2": 0.0}
    total, parts = TextSegLoss()(out, target, weights)
    assert "blob" not in parts
    total_b, parts_b = TextSegLoss()(out, target, {**weights, "blob": 2.0})
    pieces = target_pieces(target)
    assert parts_b["blob"] == pytest.approx(float(blob_loss(logits, pieces)), rel=1e-5)
    assert float(total_b - total) == pytest.approx(2.0 * parts_b["blob"], rel=1e-5)
    # with the refiner's loss on, both passes are scored
    _, parts_2 = TextSegLoss()(out, target, {**weights, "pass2": 1.0, "blob": 2.0})
    both = (float(blob_loss(logits, pieces)) + float(blob_loss(logits + 1.0, pieces))) / 2
    assert parts_2["blob"] == pytest.approx(both, rel=1e-5)
