"""lib.lesion_detection: each true lesion scored on its own (size, share covered, found),
the mask's false pieces, the pooling by size band; and evaluate's lesion rows."""

import math

import numpy as np
import pytest
from scipy import ndimage

from lib.lesion_detection import (detection_markdown, detection_summary, equivalent_diameter_mm, lesion_rows,
                                  size_band)


def _ball(shape, centre, radius):
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def test_each_lesion_is_scored_on_its_own_and_stray_pieces_are_false_or_specks():
    shape = (40, 40, 40)
    big, small = _ball(shape, (10, 10, 10), 5), _ball(shape, (30, 30, 30), 2)
    truth = big | small
    pred = np.zeros(shape, bool)
    pred[10:16, :, :] = big[10:16]        # the upper half of the big lesion (and its middle slice)
    pred[36:39, 0:3, 0:3] = True          # a piece touching no lesion: 27 mm3, 3.7 mm across
    pred[20, 30, 2] = pred[2, 38, 38] = True  # two one-voxel specks (1.2 mm across)
    rows, stray = lesion_rows(pred, truth, (1.0, 1.0, 1.0))
    assert [r["voxels"] for r in rows] == [int(big.sum()), int(small.sum())]  # largest first
    assert rows[0]["covered"] == pytest.approx((pred & big).sum() / big.sum(), abs=1e-4)
    assert 0.5 < rows[0]["covered"] < 0.6 and rows[0]["found"]
    assert rows[1]["covered"] == 0.0 and not rows[1]["found"]
    assert rows[0]["diameter_mm"] == pytest.approx(10.0, abs=0.3)  # a ball of radius 5 voxels
    assert stray == {"false_pieces": 1, "false_mm3": 27.0, "specks": 2}
    assert lesion_rows(pred, truth, (1, 1, 1), min_piece_mm=4.0)[1] == {"false_pieces": 0, "false_mm3": 0.0, "specks": 3}


def test_found_needs_the_detect_share():
    shape = (20, 20, 20)
    truth = np.zeros(shape, bool)
    truth[5:15, 5:15, 5:15] = True        # 1000 voxels
    pred = np.zeros(shape, bool)
    pred[5:15, 5:15, 5:6] = True          # 100 voxels: 10 %
    assert lesion_rows(pred, truth, (1, 1, 1))[0][0]["found"]
    assert not lesion_rows(pred, truth, (1, 1, 1), detect_share=0.11)[0][0]["found"]
    pred[5:15, 5:15, 5] = False
    pred[5:14, 5:15, 5] = True            # 90 voxels: 9 %
    assert not lesion_rows(pred, truth, (1, 1, 1))[0][0]["found"]


def test_empty_masks_and_anisotropic_voxels():
    shape = (16, 16, 16)
    truth = np.zeros(shape, bool)
    truth[2:6, 2:6, 2:4] = True           # 32 voxels of 0.5 x 0.5 x 2 mm = 16 mm3
    rows, stray = lesion_rows(np.zeros(shape, bool), truth, (0.5, 0.5, 2.0))
    assert rows[0]["diameter_mm"] == pytest.approx(round((6 * 16 / math.pi) ** (1 / 3), 1))
    assert not rows[0]["found"] and stray == {"false_pieces": 0, "false_mm3": 0.0, "specks": 0}
    pred = np.zeros(shape, bool)
    pred[10:12, 10:12, 10:12] = pred[13, 13, 13] = True  # an absent lesion's mask: 2 pieces of 8 mm3
    assert lesion_rows(pred, np.zeros(shape, bool), (1.5, 1.5, 1.5)) == ([], {
        "false_pieces": 1, "false_mm3": 27.0, "specks": 1})  # 3.7 mm across, and 1.9 mm


def test_bad_input_is_refused():
    a = np.zeros((4, 4, 4), bool)
    with pytest.raises(ValueError, match="share a grid"):
        lesion_rows(a, np.zeros((4, 4, 5), bool), (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        lesion_rows(a, a, (1, 0, 1))
    with pytest.raises(ValueError, match="detect_share"):
        lesion_rows(a, a, (1, 1, 1), detect_share=0.0)
    with pytest.raises(ValueError, match="increasing"):
        size_band(5.0, (20.0, 10.0))


def test_size_bands_and_the_pooled_summary():
    assert [size_band(d) for d in (4.0, 9.99, 10.0, 19.9, 20.0, 55.0)] == [
        "<10 mm", "<10 mm", "10-20 mm", "10-20 mm", ">=20 mm", ">=20 mm"]
    assert equivalent_diameter_mm(1, math.pi / 6) == pytest.approx(1.0)
    rows = [
        {"label": "liver lesion", "voxels": 10, "diameter_mm": 6.0, "covered": 0.0, "found": False},
        {"label": "liver lesion", "voxels": 900, "diameter_mm": 25.0, "covered": 0.8, "found": True},
        {"label": "liver lesion", "voxels": 90, "diameter_mm": 12.0, "covered": 0.4, "found": True},
        {"label": "liver lesion", "false_pieces": 1, "false_mm3": 30.0, "specks": 4},
        {"label": "liver lesion", "false_pieces": 2, "false_mm3": 12.5, "specks": 0},
        {"label": "kidney cyst", "false_pieces": 0, "false_mm3": 0.0, "specks": 1},
    ]
    s = detection_summary(rows)
    liver = s["liver lesion"]
    assert (liver["lesions"], liver["found"], liver["false_pieces"], liver["scans"]) == (3, 2, 3, 2)
    assert (liver["false_mm3"], liver["specks"]) == (42.5, 4)
    assert liver["sensitivity"] == pytest.approx(2 / 3) and liver["mean_covered"] == pytest.approx(0.4)
    assert list(liver["bands"]) == ["<10 mm", "10-20 mm", ">=20 mm"]  # smallest first
    assert liver["bands"]["<10 mm"] == {"lesions": 1, "found": 0, "sensitivity": 0.0, "mean_covered": 0.0}
    cyst = s["kidney cyst"]
    assert cyst["lesions"] == 0 and cyst["sensitivity"] is None and cyst["bands"] == {}
    text = detection_markdown(s)
    assert "liver lesion: 2 of 3 lesions found (<10 mm: 0/1; 10-20 mm: 1/1; >=20 mm: 1/1)" in text
    assert "in 2 scans, 3 false pieces of at least 3 mm (42 mm3) and 4 smaller specks" in text
    assert "kidney cyst: no lesion to find; in 1 scans, 0 false pieces" in text


def test_evaluate_scores_each_lesion_of_a_scan(phantom_studies, tiny_checkpoint):
    """On the fixture phantom with a kidney cyst (and no liver lesion; the tiny untrained
    network's masks are noise): one row per true lesion, as ``lesion_rows`` scores the
    served mask against the truth, and one row of false pieces per label."""
    from lib.data.preprocess import load_volume
    from lib.data.studies_index import labelled_pairs
    from lib.evaluation import LESION_LABELS, evaluate_pairs
    from lib.inference.service import load_predictor

    predictor, _ = load_predictor(tiny_checkpoint)
    pairs = [p for p in labelled_pairs(phantom_studies) if p[0] == "phantom_0001"]
    result = evaluate_pairs(predictor, pairs, predictor.vocab, progress=False, keep_masks=1, paraphrases=False)
    lesions = result["lesions"]
    assert len(lesions) == len(LESION_LABELS) + sum("covered" in r for r in lesions)
    for (case, image_path, label_path), kept in zip(pairs, result["cases"]):
        lab = load_volume(label_path, label=True)[0].numpy().round().astype(np.int32)
        spacing = tuple(float(s) for s in np.sqrt((np.asarray(load_volume(image_path).affine)[:3, :3] ** 2).sum(0)))
        for name in LESION_LABELS:
            truth = predictor.vocab.resolve(name).mask(lab)
            found, stray = lesion_rows(kept["pred"].get(name, np.zeros_like(truth)), truth, spacing)
            assert [r for r in lesions if r["case"] == case and r["label"] == name] == [
                *({"case": case, "label": name, **f} for f in found), {"case": case, "label": name, **stray}]
            assert len(found) == ndimage.label(truth, structure=np.ones((3, 3, 3)))[1]
    cysts = result["summary"]["lesion_detection"]["kidney cyst"]
    assert cysts["lesions"] >= 1 and cysts["scans"] == 1  # its cyst


@pytest.mark.slow
def test_segresnet_comparison_is_scored_lesion_by_lesion_too(phantom_studies):
    """bench-accuracy's SegResNet evaluation (an untrained one here) gives the same lesion rows
    as textseg's, with and without the guided filter."""
    import torch

    from lib.bench.segresnet import build_segresnet, evaluate_segresnet
    from lib.data.studies_index import labelled_pairs
    from lib.data.vocab import Vocabulary
    from lib.evaluation import LESION_LABELS

    vocab = Vocabulary.load(phantom_studies)
    indices = sorted(vocab.index_to_name())
    torch.manual_seed(0)
    net = build_segresnet(len(indices), init_filters=8).eval()
    pairs = [p for p in labelled_pairs(phantom_studies) if p[0] == "phantom_0001"]  # it has a kidney cyst
    result = evaluate_segresnet(net, indices, pairs, vocab, 4.0, (32, 32, 32), progress=False, guided=(1, 3e-4))
    for key, summary in (("lesions", "summary"), ("guided_lesions", "guided_summary")):
        rows = result[key]
        assert [r["label"] for r in rows if "false_pieces" in r] == list(LESION_LABELS)  # one stray row each
        assert all(r["case"] == "phantom_0001" for r in rows)
        cysts = result[summary]["lesion_detection"]["kidney cyst"]
        assert cysts["lesions"] == sum(r["label"] == "kidney cyst" and "covered" in r for r in rows) >= 1
