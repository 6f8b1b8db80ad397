"""Mask clean-up: label shape statistics, the side a prompt names, largest piece, volume
floor, and the predictor applying them."""

import numpy as np
import pytest
import torch

from lib.data.label_stats import (LabelStats, is_one_piece, label_stats, largest_piece_share, stats_from_json,
                                  stats_to_json, typical_voxels)
from lib.data.vocab import Vocabulary
from lib.inference.postprocess import (below_floor, below_volume_floor, body_midline, cut_by_field_of_view,
                                       drop_smaller_pieces, drop_wrong_side, keep_largest_piece,
                                       prompt_side)

VOCAB = Vocabulary.from_json({"labels": {
    "liver": {"index": 1}, "left kidney": {"index": 2}, "right kidney": {"index": 3}, "liver lesion": {"index": 4},
    "kidneys": {"parts": [2, 3]}}})


def test_prompt_side():
    assert prompt_side("left kidney") == "left"
    assert prompt_side("Tumour in the RIGHT lung") == "right"
    assert prompt_side("left and right kidney") is None
    assert prompt_side("liver") is None and prompt_side("leftover tissue") is None
    assert prompt_side("L hippocampus") == "left" and prompt_side("r kidney") == "right"
    assert prompt_side("l-spine") is None and prompt_side("l1 vertebra") is None
    assert prompt_side("L and R kidneys") is None


def test_body_midline_is_the_centre_of_the_bright_voxels():
    img = torch.full((20, 6, 6), -1.0)
    img[4:13] = 0.5                       # body spans x = 4..12
    assert body_midline(img) == pytest.approx(8.0)
    assert body_midline(torch.zeros(9, 3, 3)) == pytest.approx(4.0)  # flat image: the grid centre


def test_drop_wrong_side_removes_whole_pieces_beyond_the_midline():
    p = torch.zeros(20, 6, 6)
    p[2:6, 1:4, 1:4] = 0.9                # a piece on the low-x side (patient's left, RAS)
    p[9:12, 1:4, 1:4] = 0.7               # straddles x = 10.5: rows 9 and 10 left, 11 right
    p[14:18, 1:4, 1:4] = 0.8              # a piece on the right
    p[15, 5, 5] = 0.3                     # below threshold: not a piece, left alone
    left = drop_wrong_side(p, "left", midline=10.5, threshold=0.5)
    assert left[2:6].max() == pytest.approx(0.9) and left[9:11, 1:4, 1:4].min() == pytest.approx(0.7)
    assert left[14:18, 1:4, 1:4].max() == 0 and left[15, 5, 5] == pytest.approx(0.3)
    assert left[11].max() == 0            # a third of the straddling piece lay beyond: cut there
    right = drop_wrong_side(p, "right", midline=10.5, threshold=0.5)
    assert right[2:11].max() == 0 and right[14:18].max() == pytest.approx(0.8)
    assert right[11, 1:4, 1:4].min() == pytest.approx(0.7)  # its right third is kept
    with pytest.raises(ValueError, match="side"):
        drop_wrong_side(p, "up", 10.0, 0.5)


def test_drop_wrong_side_cuts_a_piece_that_spans_both_sides():
    p = torch.zeros(20, 6, 6)
    p[3:9, 1:5, 1:5] = 0.9                # patient's left (low x) ...
    p[9:11, 2:3, 2:3] = 0.9               # ... joined through the midline (10.5) ...
    p[11:19, 1:5, 1:5] = 0.9              # ... to a larger part on the right: one piece
    right = drop_wrong_side(p, "right", midline=10.5, threshold=0.5)
    assert right[:11].max() == 0 and torch.equal(right[11:], p[11:])
    p = torch.zeros(20, 6, 6)
    p[9:19, 1:5, 1:5] = 0.9               # reaches 2 of its 10 rows over the midline: kept whole
    assert torch.equal(drop_wrong_side(p, "right", midline=10.5, threshold=0.5), p)
    assert drop_wrong_side(p, "left", midline=10.5, threshold=0.5).max() == 0  # 8 of 10 beyond: dropped


def test_keep_largest_piece():
    m = np.zeros((8, 8, 8), bool)
    m[0:2, 0:2, 0:2] = True      # 8 voxels
    m[5, 5, 5] = True            # a stray voxel, not touching
    m[3, 3, 3] = True            # touches nothing either
    out = keep_largest_piece(m)
    assert out.sum() == 8 and out[0:2, 0:2, 0:2].all() and not out[5, 5, 5]
    diag = np.zeros((4, 4, 4), bool)
    diag[0, 0, 0] = diag[1, 1, 1] = True  # corner-touching: one piece under 26-connectivity
    assert keep_largest_piece(diag).sum() == 2
    assert not keep_largest_piece(np.zeros((3, 3, 3), bool)).any()


def test_drop_smaller_pieces_survives_resampling_to_a_finer_grid():
    """Zeroing the smaller pieces on the working grid leaves, after linear upsampling and
    thresholding, exactly the largest piece's upsampled mask."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    p = torch.rand(12, 12, 12, generator=g) * 0.4         # background below 0.5
    p[1:6, 1:6, 1:6] = 0.6 + 0.3 * torch.rand(5, 5, 5, generator=g)   # the organ
    p[8:10, 8:10, 8:10] = 0.95                            # a stray piece, two voxels away
    out = drop_smaller_pieces(p, 0.5)
    assert out[8:10, 8:10, 8:10].eq(0).all() and torch.equal(out[:7, :7, :7], p[:7, :7, :7])

    def up(x):
        return F.interpolate(x[None, None], scale_factor=3, mode="trilinear", align_corners=True)[0, 0] >= 0.5

    fine = up(p).numpy()
    assert np.array_equal(up(out).numpy(), keep_largest_piece(fine)) and fine.sum() > up(out).sum()
    assert torch.equal(drop_smaller_pieces(torch.zeros(3, 3, 3), 0.5), torch.zeros(3, 3, 3))


def test_label_stats_counts_pieces_and_volumes():
    maps = []
    for i in range(4):
        lab = np.zeros((20, 20, 20), np.int16)
        lab[2:12, 2:12, 2:2 + 5 + i] = 1                  # liver: one piece, 10*10*(5+i) voxels
        lab[15:17, 15:17, 15:17] = 2                      # left kidney
        if i < 2:                                         # lesions: two equal pieces in half the cases
            lab[3:5, 3:5, 3:5] = 4
            lab[8:10, 8:10, 3:5] = 4
        maps.append(lab)
    stats = label_stats(maps, VOCAB, voxel_mm3=8.0)
    assert set(stats) == {"liver", "left kidney", "liver lesion"}  # absent and composite labels left out
    assert stats["liver"].cases == 4 and stats["liver"].single_component == 1.0
    liver_vox = [100 * 5 - 16, 100 * 6 - 16, 100 * 7, 100 * 8]   # the lesions replace liver voxels
    assert stats["liver"].volume_p05_mm3 == pytest.approx(8.0 * np.percentile(liver_vox, 5))
    assert stats["liver lesion"].cases == 2 and stats["liver lesion"].single_component == 0.0
    assert largest_piece_share(maps[0] == 4) == 0.5
    assert stats_from_json(stats_to_json(stats)) == stats


def test_typical_voxels_is_the_capped_median_over_the_maps_with_the_label():
    maps = []
    for i in range(3):
        lab = np.zeros((20, 20, 20), np.int16)
        lab[:10, :10, : 2 + i] = 1                       # liver: 200, 300, 400 voxels
        lab[15:17, 15:17, 15:17] = 2                     # left kidney: 8 voxels
        if i == 0:
            lab[18:20, 18:20, 18:20] = 3                 # right kidney in one map only: 8 voxels
        maps.append(lab)
    sizes = typical_voxels(maps, VOCAB, cap=350.0)
    assert sizes == {"liver": 300.0, "left kidney": 8.0, "right kidney": 8.0, "kidneys": 8.0}  # median of 16, 8, 8
    assert typical_voxels(maps, VOCAB, cap=250.0)["liver"] == 250.0  # a patch sees part of a large organ


def test_one_piece_and_volume_floor_rules():
    organ = LabelStats(cases=10, single_component=0.95, volume_p05_mm3=1000.0)
    lesion = LabelStats(cases=10, single_component=0.5, volume_p05_mm3=100.0)
    assert is_one_piece(organ, 0.9) and not is_one_piece(lesion, 0.9) and not is_one_piece(None, 0.9)
    assert is_one_piece(organ) and not is_one_piece(organ, 0.96)  # default share 0.9
    assert below_volume_floor(249.0, organ, 0.25) and not below_volume_floor(250.0, organ, 0.25)
    assert not below_volume_floor(1.0, organ, 0.0) and not below_volume_floor(1.0, None, 0.25)


def _ball(shape, centre, radius):
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    return ((grid - np.asarray(centre).reshape(3, 1, 1, 1)) ** 2).sum(0) <= radius ** 2


def test_cut_by_field_of_view_tells_a_cut_structure_from_a_blob_grazing_the_edge():
    shape = (30, 30, 20)
    assert not cut_by_field_of_view(np.zeros(shape, bool))
    assert not cut_by_field_of_view(_ball(shape, (15, 15, 10), 5))           # well inside
    assert cut_by_field_of_view(_ball(shape, (15, 15, 21), 6))               # the top slice cuts its lower part
    assert cut_by_field_of_view(_ball(shape, (-1, 15, 10), 6))               # cut along x as well
    grazing = _ball(shape, (15, 15, 14), 5)                                  # touches the top slice, widest inside
    assert grazing[:, :, -1].any() and not cut_by_field_of_view(grazing)


@pytest.fixture
def crafted(crafted_predictor):
    """A liver with a stray piece, and a left kidney lit up on the patient's right only."""
    def draw(shape):
        maps = {name: torch.zeros(shape) for name in ("liver", "left kidney")}
        x0 = shape[0] // 2
        maps["liver"][2:8, 2:8, 2:8] = 0.9
        maps["liver"][x0:x0 + 2, 2:4, 2:4] = 0.9                   # a stray piece away from the liver
        maps["left kidney"][shape[0] - 8:shape[0] - 4, 10:14, 2:6] = 0.8   # on the patient's right only
        return maps

    predictor, encoded, calls, _ = crafted_predictor(draw)
    return predictor, encoded, calls


def test_predictor_applies_side_check_and_largest_piece(crafted):
    predictor, encoded, calls = crafted
    liver, left = predictor.predict(encoded, ["liver", "left kidney"])
    assert calls == [["liver", "left kidney"]]
    assert not left.present and not left.mask.any()
    assert liver.present
    from scipy import ndimage
    assert ndimage.label(liver.mask, structure=np.ones((3, 3, 3)))[1] == 1


def test_predictor_clean_up_can_be_switched_off(crafted):
    from dataclasses import replace

    predictor, encoded, calls = crafted
    predictor.cfg = replace(predictor.cfg, side_check=False, largest_piece=False)
    liver, left = predictor.predict(encoded, ["liver", "left kidney"])
    assert calls == [["liver", "left kidney"]] and left.present
    from scipy import ndimage
    assert ndimage.label(liver.mask, structure=np.ones((3, 3, 3)))[1] == 2


def test_volume_floor_reports_a_tiny_mask_absent(crafted):
    predictor, encoded, _ = crafted
    predictor.label_stats["liver"] = LabelStats(cases=5, single_component=1.0, volume_p05_mm3=1e9)
    (liver,) = predictor.predict(encoded, ["liver"])
    assert not liver.present and not liver.mask.any() and liver.volume_mm3 == 0.0


def test_volume_floor_spares_a_structure_the_scan_edge_cuts(crafted):
    """The lung bases at the top of an abdominal scan: a small visible part of a large
    structure, cut by the last slice, is held to half the floor; far below that it is
    still reported absent (a structure just outside the scan lit up at its edge)."""
    predictor, encoded, _ = crafted
    shape = encoded.shape
    cut = torch.zeros(shape)
    cut[4:10, 4:10, shape[2] - 3:] = 0.9
    predictor.probabilities = lambda enc, prompts: (cut[None], cut[None])
    predictor.label_stats["liver"] = None
    (free,) = predictor.predict(encoded, ["liver"])
    assert free.present and free.mask[:, :, -1].any()
    v = free.volume_mm3
    predictor.label_stats["liver"] = LabelStats(cases=5, single_component=1.0, volume_p05_mm3=v / 0.18)
    (liver,) = predictor.predict(encoded, ["liver"])  # floor 1.4 v, half floor 0.7 v
    assert liver.present and np.array_equal(liver.mask, free.mask)
    predictor.label_stats["liver"] = LabelStats(cases=5, single_component=1.0, volume_p05_mm3=v / 0.1)
    (liver,) = predictor.predict(encoded, ["liver"])  # half floor 1.25 v
    assert not liver.present and not liver.mask.any()


def test_below_floor_halves_the_floor_only_for_a_cut_mask():
    organ = LabelStats(cases=10, single_component=1.0, volume_p05_mm3=1000.0)  # floor 250 at 0.25
    shape = (30, 30, 20)
    inside, cut = _ball(shape, (15, 15, 10), 4), _ball(shape, (15, 15, 21), 6)
    assert below_floor(inside, 200.0, organ, 0.25) and not below_floor(inside, 260.0, organ, 0.25)
    assert not below_floor(cut, 200.0, organ, 0.25) and below_floor(cut, 120.0, organ, 0.25)
    assert not below_floor(cut, 1.0, organ, 0.0) and not below_floor(inside, 1.0, None, 0.25)
