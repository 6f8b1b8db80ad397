"""Per-label mask thresholds: the choice rule, the predictor using them, the curves over a
pool, and the ``calibrate`` verb writing and flagging them."""

import json

import numpy as np
import pytest
import torch

from lib.data.label_neighbours import Neighbours
from lib.inference.calibration import (LabelCurve, choose_cut, choose_threshold, cut_score, dice_score,
                                       threshold_curves)
from lib.inference.completion import Growth


def _curve(points: dict[float, tuple[list[float], int]], absent: int = 4) -> LabelCurve:
    curve = LabelCurve()
    for t, (dices, fp) in points.items():
        for d in dices:
            curve.add(t, True, d > 0, d)
        for k in range(absent):
            curve.add(t, False, k < fp)
    return curve


def test_choose_threshold_takes_the_best_dice_that_adds_no_false_positive():
    curve = _curve({0.5: ([0.0, 0.0, 0.6], 0), 0.3: ([0.5, 0.4, 0.7], 0), 0.2: ([0.6, 0.5, 0.7], 1),
                    0.7: ([0.0, 0.0, 0.5], 0)})
    assert curve.mean_dice(0.3) == pytest.approx(1.6 / 3)
    assert curve.false_positives == {0.5: 0, 0.3: 0, 0.2: 1, 0.7: 0} and curve.absent[0.5] == 4
    assert choose_threshold(curve, 0.5) == 0.3          # 0.2 scores higher but makes a scan fire
    assert choose_threshold(curve, 0.5, min_gain=0.4) == 0.5   # gains 0.33 only
    assert choose_threshold(curve, 0.5, min_cases=4) == 0.5    # held by 3 scans
    with pytest.raises(ValueError, match="grid"):
        choose_threshold(curve, 0.45)


def test_choose_threshold_keeps_the_model_threshold_on_a_tie_and_prefers_the_nearest():
    level = _curve({0.5: ([0.8, 0.8, 0.8], 0), 0.3: ([0.8, 0.8, 0.8], 0)})
    assert choose_threshold(level, 0.5, min_gain=0.0) == 0.5
    two = _curve({0.5: ([0.0] * 3, 2), 0.4: ([0.9] * 3, 2), 0.1: ([0.9] * 3, 0)})
    assert choose_threshold(two, 0.5) == 0.4            # equal Dice: the one nearer the model's
    absent_only = _curve({0.5: ([], 0), 0.3: ([], 0)})
    assert choose_threshold(absent_only, 0.5) == 0.5
    with pytest.raises(ValueError, match="Dice"):
        LabelCurve().add(0.5, True, True)


def _answers(curve: LabelCurve, t: float, rows: list[tuple[bool, bool, float, float | None]]) -> LabelCurve:
    for present, found, dice, u in rows:
        curve.add(t, present, found, dice if present else None, uncertainty=u)
    return curve


def test_cut_score_counts_dice_where_held_and_emptiness_where_not():
    rows = [(True, True, 0.8, 0.1), (True, True, 0.6, 0.4), (True, False, 0.0, None),
            (False, True, 0.0, 0.45), (False, True, 0.0, 0.2), (False, False, 0.0, None)]
    answers = _answers(LabelCurve(), 0.5, rows).answers[0.5]
    assert cut_score(answers, None) == pytest.approx((0.8 + 0.6 + 0 + 0 + 0 + 1) / 6)
    assert cut_score(answers, 0.3) == pytest.approx((0.8 + 0 + 0 + 1 + 0 + 1) / 6)    # drops 0.6 and one firing
    assert cut_score(answers, 0.1) == pytest.approx((0.8 + 0 + 0 + 1 + 1 + 1) / 6)    # at the cut: kept
    assert cut_score(answers, 0.05) == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match="uncertainty"):
        cut_score([(False, True, 0.0, None)], 0.3)
    with pytest.raises(ValueError, match="no answers"):
        cut_score([], 0.3)


def test_choose_cut_keeps_the_largest_best_cut_only_when_it_gains():
    rows = [(True, True, 0.9, 0.1), (True, True, 0.8, 0.2), (True, True, 0.7, 0.25),
            (False, True, 0.0, 0.4), (False, False, 0.0, None), (False, False, 0.0, None)]
    curve = _answers(LabelCurve(), 0.5, rows)
    # every cut in [0.25, 0.4) drops the one firing and no found mask: the largest such is kept
    assert choose_cut(curve, 0.5, grid=(0.1, 0.2, 0.25, 0.3, 0.35, 0.4)) == 0.35
    assert choose_cut(curve, 0.5, grid=(0.4, 0.5)) is None              # nothing dropped: no gain
    assert choose_cut(curve, 0.5, grid=(0.3,), min_gain=0.2) is None    # gains 1/6 only
    assert choose_cut(curve, 0.5, grid=()) is None
    assert choose_cut(curve, 0.5, grid=(0.3,), min_cases=4) is None     # held by 3 scans, lacked by 3
    assert choose_cut(curve, 0.3, grid=(0.3,)) is None                  # no answers at that threshold
    # a cut that loses more Dice than it saves is not kept
    costly = _answers(LabelCurve(), 0.5, [(True, True, 0.9, 0.5), (True, True, 0.9, 0.5), (True, True, 0.9, 0.1),
                                         (False, True, 0.0, 0.45), (False, False, 0.0, None), (False, False, 0.0, None)])
    assert choose_cut(costly, 0.5, grid=(0.3, 0.4)) is None


def test_dice_score_matches_the_evaluation():
    from lib.evaluation import dice_nsd

    rng = np.random.default_rng(0)
    a, b = rng.random((12, 10, 8)) > 0.6, rng.random((12, 10, 8)) > 0.5
    assert dice_score(a, b) == pytest.approx(dice_nsd(a, b, (1.0, 1.0, 1.0))[0], abs=1e-6)
    empty = np.zeros((4, 4, 4), bool)
    assert dice_score(empty, empty) == 1.0 and dice_score(a[:4, :4, :4] | True, empty) == 0.0


@pytest.fixture
def faint_liver(tiny_checkpoint, phantom_studies):
    """A predictor whose two passes give the true liver a probability of 0.3 in every scan
    (and 0.05 elsewhere), every other label 0.01."""
    from lib.data.preprocess import load_volume, to_working_grid
    from lib.data.studies_index import labelled_pairs
    from lib.inference.service import load_predictor

    predictor, _ = load_predictor(tiny_checkpoint)
    liver = predictor.vocab.resolve("liver")

    def key(affine) -> bytes:
        return np.asarray(affine, dtype=np.float64).round(4).tobytes()

    working = {}
    for _, image, label in labelled_pairs(phantom_studies):
        lab = to_working_grid(load_volume(label, label=True), predictor.cfg.working_spacing, label=True)
        working[key(load_volume(image).affine)] = torch.as_tensor(liver.mask(lab[0].numpy().round().astype(int)))
    assert len(working) == 4  # the scans are told apart by their affines

    def probabilities(encoded, prompts):
        truth = working[key(encoded.volume.original_affine)]
        p = torch.stack([torch.where(truth, 0.3, 0.05) if n == "liver" else torch.full(truth.shape, 0.01)
                         for n in prompts]).float()
        return p, p

    predictor.probabilities = probabilities
    return predictor


def test_predictor_masks_a_label_at_its_own_threshold(faint_liver, phantom_studies):
    from lib.data.preprocess import load_volume

    encoded = faint_liver.encode(load_volume(str(phantom_studies / "phantom_0000.nii.gz")))
    liver, spleen, free = faint_liver.predict(encoded, ["liver", "spleen", "the big organ"])
    assert not liver.present and not free.present
    faint_liver.label_thresholds = {"liver": 0.2}
    assert faint_liver.thresholds(["liver", "spleen", "the big organ"]) == [0.2, 0.5, 0.5]
    liver, spleen, free = faint_liver.predict(encoded, ["liver", "spleen", "the big organ"])
    assert liver.present and liver.mask.any() and not spleen.present and not free.present
    # a presence cut below the mask's uncertainty reports it absent, with the reason; above it, not
    assert liver.uncertainty == pytest.approx(0.25 * 0.8813, abs=1e-3)   # alpha * H(0.3) over the liver
    faint_liver.label_max_uncertainty = {"liver": 0.2}
    cut, = faint_liver.predict(encoded, ["liver"])
    assert not cut.present and not cut.mask.any() and "presence cut 0.20" in cut.summary()["absent_reason"]
    faint_liver.label_max_uncertainty = {"liver": 0.25, "spleen": 0.2}
    kept, = faint_liver.predict(encoded, ["liver"])
    assert kept.present and np.array_equal(kept.mask, liver.mask) and "absent_reason" not in kept.summary()
    with pytest.raises(ValueError, match="presence cut"):
        type(faint_liver)(faint_liver.net, faint_liver.text, faint_liver.vocab, label_max_uncertainty={"liver": 0.0})


def test_threshold_curves_and_choice_over_a_pool(faint_liver, phantom_studies):
    from lib.data.studies_index import labelled_pairs

    pairs = labelled_pairs(phantom_studies)
    curves = threshold_curves(faint_liver, pairs, faint_liver.vocab, grid=(0.2, 0.5), progress=False)
    liver = curves["liver"]
    assert liver.mean_dice(0.5) == 0.0 and liver.mean_dice(0.2) > 0.8
    assert len(liver.dice[0.2]) == len(pairs) and liver.false_positives == {0.2: 0, 0.5: 0}
    assert [a[3] for a in liver.answers[0.2]] == [pytest.approx(0.2203, abs=1e-3)] * len(pairs)  # found: uncertainty kept
    assert [a[3] for a in liver.answers[0.5]] == [None] * len(pairs)
    assert choose_cut(liver, 0.2) is None   # the pool lacks the liver nowhere: nothing to cut for
    assert choose_threshold(liver, 0.5) == 0.2
    assert choose_threshold(curves["spleen"], 0.5) == 0.5   # 0.01 everywhere: nothing to gain


def test_calibrate_writes_thresholds_and_evaluate_flags_the_pool(tiny_checkpoint, phantom_studies, tmp_path,
                                                                  monkeypatch, faint_liver):
    from lib.cli import main
    from lib.inference import service
    from lib.model.checkpoint import load_checkpoint, save_checkpoint
    from conftest import copy_studies

    monkeypatch.setattr(service, "load_predictor", lambda path: (faint_liver, load_checkpoint(path)[2]))
    # the liver is given a host here, so that the completion is scored: the spleen's mask is
    # empty (0.01 everywhere), so no setting adds enough to be kept
    faint_liver.label_neighbours = {"liver": Neighbours(hosts=("spleen",), competitors=())}
    out = tmp_path / "calibrated.pt"
    assert main(["calibrate", "--model", str(tiny_checkpoint), "--studies", str(phantom_studies),
                 "--out", str(out), "--grid", "0.2", "0.4", "--growth"]) == 0
    plain = tmp_path / "no_growth.pt"  # the default: no completion scored; on one scan, to keep the test short
    one = copy_studies(phantom_studies, tmp_path / "one", keep_labels=1)
    assert main(["calibrate", "--model", str(tiny_checkpoint), "--studies", str(one),
                 "--out", str(plain), "--grid", "0.5"]) == 0
    monkeypatch.undo()
    _, _, meta = load_checkpoint(out)
    assert meta["label_thresholds"] == {"liver": 0.2} and meta["label_max_uncertainty"] == {}
    assert meta["label_growth"] == {}
    growth = meta["calibration"]["per_label"]["liver"]["growth"]
    assert growth["chosen"] is None and growth["cases"] == 4 and len(growth["curve"]) == 16
    # only the holes of the liver's own mask can join it: nothing near the 0.01 min_gain
    assert all(abs(c["dice"] - growth["dice_without"]) < 1e-3 for c in growth["curve"]) and growth["dice_without"] > 0.8
    assert "growth" not in load_checkpoint(plain)[2]["calibration"]["per_label"]["liver"]
    record = meta["calibration"]
    assert record["per_label"]["liver"]["max_uncertainty"] is None
    assert len(record["per_label"]["liver"]["found_uncertainty"]) == 4 and record["cut_grid"][0] == 0.1
    assert record["grid"] == [0.2, 0.4, 0.5] and len(record["fingerprints"]) == 4
    assert record["per_label"]["liver"]["dice_at_model_threshold"] == 0.0 and record["per_label"]["liver"]["dice"] > 0.8
    predictor, _ = service.load_predictor(out)
    assert predictor.label_thresholds == {"liver": 0.2}
    report = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(out), "--studies", str(phantom_studies), "--out", str(report),
                 "--no-overlays", "--ids", "phantom_0000"]) == 0
    assert json.loads(report.read_text())["calibrated_on_evaluated_cases"] == ["phantom_0000"]
    # a kept completion is served, reported, and left out on request
    net, vocab, meta = load_checkpoint(out)
    grown = tmp_path / "grown.pt"
    save_checkpoint(grown, net, vocab, meta={**meta, "label_growth": {"liver lesion": {"k": 2.0, "radius_mm": 4.0}}})
    # compared by value: in the full suite (CI) the served Growth came from another import of its module
    served = service.load_predictor(grown)[0].label_growth
    assert {k: v.to_json() for k, v in served.items()} == {"liver lesion": Growth(2.0, 4.0).to_json()}
    for flags, expected in (([], {"liver lesion": {"k": 2.0, "radius_mm": 4.0}}), (["--no-growth"], {})):
        assert main(["evaluate", "--model", str(grown), "--studies", str(phantom_studies), "--out", str(report),
                     "--no-overlays", "--ids", "phantom_0000", *flags]) == 0
        assert json.loads(report.read_text())["label_growth"] == expected
    # a pool the model was trained on is refused
    net, vocab, _ = load_checkpoint(tiny_checkpoint)
    trained = tmp_path / "trained.pt"
    save_checkpoint(trained, net, vocab, meta={"train_cases": ["phantom_0001"]})
    assert main(["calibrate", "--model", str(trained), "--studies", str(phantom_studies)]) == 2
    assert main(["calibrate", "--model", str(tiny_checkpoint), "--studies", str(phantom_studies),
                 "--cut-grid", "0.3", "-0.1"]) == 2


def test_a_fine_tuned_checkpoint_inherits_the_served_thresholds(tiny_checkpoint, tmp_path):
    from lib.inference.calibration import inherit_thresholds
    from lib.model.checkpoint import load_checkpoint, save_checkpoint

    net, vocab, _ = load_checkpoint(tiny_checkpoint)
    new = tmp_path / "candidate.pt"
    save_checkpoint(new, net, vocab, meta={"steps": 10})
    assert not inherit_thresholds(new, {"label_stats": {}})
    assert load_checkpoint(new)[2] == {"steps": 10}
    served = {"label_thresholds": {"kidney cyst": 0.3}, "label_max_uncertainty": {"liver lesion": 0.25},
              "label_growth": {"liver lesion": {"k": 2.0, "radius_mm": 6.0}}, "calibration": {"fingerprints": ["abc"]}}
    assert inherit_thresholds(new, served)
    meta = load_checkpoint(new)[2]
    assert meta["steps"] == 10 and meta["label_thresholds"] == {"kidney cyst": 0.3}
    assert meta["label_max_uncertainty"] == {"liver lesion": 0.25}
    assert meta["label_growth"] == {"liver lesion": {"k": 2.0, "radius_mm": 6.0}}
    assert inherit_thresholds(new, {"label_growth": {"liver lesion": {"k": 2.0, "radius_mm": 6.0}}})  # a completion alone
    assert meta["calibration"] == {"fingerprints": ["abc"], "inherited": True}
    assert served["calibration"] == {"fingerprints": ["abc"]}  # the served model's record is not changed
