"""Active-learning parts: learning-curve summaries, the stratified baseline, MC-dropout
sampling, settings validation, and (slow) one tiny round of the real benchmark loop."""

from __future__ import annotations

import json
import random

import pytest
import torch

from lib.bench.al import ALSettings
from lib.bench.al_report import aulc, labels_to_reach, markdown, summarize, targets
from lib.strategies.stratified import pick_stratified, strata
from lib.trainers.textseg import physical_patch


def test_aulc_is_the_mean_dice_over_the_budget():
    assert aulc([4, 8, 12], [0.2, 0.4, 0.4]) == pytest.approx((0.3 * 4 + 0.4 * 4) / 8)
    assert aulc([4, 8], [0.5, 0.5]) == pytest.approx(0.5)
    assert aulc([4], [0.3]) == pytest.approx(0.3)


def test_labels_to_reach_is_the_first_budget_at_or_above_target():
    assert labels_to_reach([4, 8, 12], [0.1, 0.5, 0.6], 0.5) == 8
    assert labels_to_reach([4, 8, 12], [0.1, 0.2, 0.3], 0.5) is None


def _run(dice, seconds=0.0):
    return {"rounds": [{"labelled": 4 + 4 * i, "mean_dice": d, "mean_nsd": d / 2, "scoring_s_per_image": seconds}
                       for i, d in enumerate(dice)]}


def test_summary_and_targets():
    runs = {"textseg_uncertainty": [_run([0.2, 0.5, 0.6], 0.4), _run([0.2, 0.5, 0.6], 0.4)],
            "random": [_run([0.2, 0.3, 0.5]), _run([0.2, 0.4, 0.5])],
            "epistemic": [_run([0.2, 0.4, 0.5], 1.0)]}
    s = summarize(runs, [{"mean_dice": 0.6, "mean_nsd": 0.3}])
    assert s["target_dice_95"] == pytest.approx(0.57)
    u, r = s["strategies"]["textseg_uncertainty"], s["strategies"]["random"]
    assert u["labels_to_95"] == 12 and r["labels_to_95"] is None
    assert r["mean_dice"] == pytest.approx([0.2, 0.35, 0.5])
    assert u["labels_to_random_final"] == 8 and r["labels_to_random_final"] == 12
    t = s["targets"]
    assert t["labels_to_random_final_dice"]["ratio"] == pytest.approx(8 / 12, abs=1e-3)
    assert t["at_or_above_random_every_budget"]["met"] is True
    assert t["scoring_at_most_half_of_epistemic"]["ratio"] == pytest.approx(0.4)
    worse = targets({"textseg_uncertainty": {**u, "mean_dice": [0.2, 0.3, 0.45]}, "random": r})
    assert worse["at_or_above_random_every_budget"]["met"] is False
    table = markdown(s)
    assert "| random | 0.200 ± 0.000 | 0.350 ± 0.050 | 0.500 ± 0.000 |" in table and "not reached" in table


def test_strata_split_by_predicted_structure_count():
    groups = strata({"a": 1, "b": 2, "c": 3, "d": 3, "e": 5, "f": 8})
    assert groups["a"] == groups["b"] < groups["c"] == groups["d"] < groups["e"] == groups["f"]
    assert set(strata({"a": 4, "b": 4}).values()) == {0}


def test_stratified_pick_fills_the_least_represented_stratum():
    unlabelled = {"a": 0, "b": 0, "c": 1, "d": 1, "e": 2}
    labelled = {"x": 0, "y": 0, "z": 1}
    picks = {pick_stratified(unlabelled, labelled, random.Random(s)) for s in range(20)}
    assert picks == {"e"}  # stratum 2 has no labelled member
    assert pick_stratified({}, labelled, random.Random(0)) is None
    picks = {pick_stratified({"a": 0, "b": 0}, {}, random.Random(s)) for s in range(20)}
    assert picks == {"a", "b"}  # random inside a stratum


def test_physical_patch_follows_working_spacing():
    assert physical_patch((160, 160, 128), 2.0) == (80, 80, 64)
    assert physical_patch((160, 160, 128), 4.0) == (40, 40, 32)
    assert physical_patch((40, 40, 40), 8.0) == (16, 16, 16)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="exceeds the pool"):
        ALSettings(pool=10, initial=4, per_round=4, rounds=2)
    with pytest.raises(ValueError, match="unknown strategies"):
        ALSettings(strategies=("textseg_uncertainty", "coin"))
    with pytest.raises(ValueError, match="dropout"):
        ALSettings(dropout=0.0)
    with pytest.raises(ValueError, match="unknown app settings"):
        ALSettings(app_conf=(("al_densty", "1"),))
    with pytest.raises(ValueError, match="al_random"):
        ALSettings(app_conf=(("al_random", "2"),))
    assert ALSettings.quick().pool >= ALSettings.quick().initial + 2 * 2


def test_mc_dropout_sampler_varies_and_leaves_the_served_model_deterministic(tmp_path, phantom_studies):
    from lib.data.preprocess import load_volume
    from lib.data.vocab import Vocabulary
    from lib.infers.dropout import DropoutSamplingInfer
    from lib.infers.model_store import ModelStore
    from lib.model.build import build_network, sized_config
    from lib.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = build_network(sized_config("tiny", working_spacing=8.0, dropout=0.3))
    ckpt = tmp_path / "drop.pt"
    save_checkpoint(ckpt, net, Vocabulary.load(phantom_studies))
    store = ModelStore(tmp_path / "none.pt", ckpt)
    infer = DropoutSamplingInfer(store, max_prompts=3)
    image = str(phantom_studies / "phantom_0000.nii.gz")
    a = infer({"image": image})[1]["pred"]
    b = infer({"image": image})[1]["pred"]
    assert a.shape[0] == 3 and a.shape == b.shape
    assert not torch.equal(a, b)  # dropout is on in the sampler
    predictor, _ = store.predictor()
    assert not any(m.training for m in predictor.net.dropout_modules())
    enc1, enc2 = store.encoded(image)[0], predictor.encode(load_volume(image))
    assert torch.equal(predictor.probabilities(enc1, ["liver"])[1], predictor.probabilities(enc2, ["liver"])[1])


def test_mc_dropout_needs_a_model_with_dropout(tmp_path, tiny_checkpoint, phantom_studies):
    from lib.infers.dropout import DropoutSamplingInfer
    from lib.infers.model_store import ModelStore

    infer = DropoutSamplingInfer(ModelStore(tmp_path / "none.pt", tiny_checkpoint))
    with pytest.raises(ValueError, match="no dropout"):
        infer({"image": str(phantom_studies / "phantom_0000.nii.gz")})


@pytest.mark.slow
def test_one_tiny_round_of_the_real_benchmark_loop(tmp_path, capsys):
    """The CLI runs the loop end to end with the app's scoring, strategies and trainer: every
    strategy labels its picks, records per-round metrics, and al.json / al.md / al.png are
    written. (Figures from so small a run mean nothing; only the loop is checked.)"""
    from lib.cli import main

    out = tmp_path / "al"
    rc = main(["bench-al", "--out", str(out), "--pool", "6", "--test", "1", "--rounds", "1", "--per-round", "2",
               "--seeds", "1", "--init-steps", "4", "--round-steps", "2", "--quiet"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["aulc"]) == {"textseg_uncertainty", "random", "epistemic", "stratified"}
    saved = json.loads((out / "al.json").read_text())
    assert (out / "al.png").stat().st_size > 1000 and "| random |" in (out / "al.md").read_text()
    assert saved["partial"] is False and saved["command"].startswith("python -m lib.cli bench-al")
    for name, runs in saved["runs"].items():
        (run,) = runs
        assert len(run["initial"]) == 4
        assert [r["labelled"] for r in run["rounds"]] == [4, 6]
        picked = run["rounds"][1]["picked"]
        assert len(set(picked)) == 2 and not set(picked) & set(run["initial"])
        assert 0.0 <= run["rounds"][1]["mean_dice"] <= 1.0
    rounds = {k: v[0]["rounds"][1] for k, v in saved["runs"].items()}
    assert rounds["epistemic"]["scoring_s"] > 0 and rounds["textseg_uncertainty"]["scoring_s"] > 0
    assert rounds["random"]["scoring_s"] == 0
    assert saved["full_pool"][0]["labelled"] == 6


def test_spearman_rank_correlation():
    from lib.bench.al import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9487, abs=1e-4)
