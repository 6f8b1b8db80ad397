"""Training patches and prompts: the centred structure is always prompted, coordinate
channels are shifted only within the configured range."""

import numpy as np
import pytest
import torch

from lib.data.preprocess import COORD_SCALE_MM, coordinate_channels
from lib.data.vocab import Vocabulary
from lib.training.data import Case, PatchSampler


def _case() -> Case:
    """A 40x40x32 volume: a big block (label 1) and a small cube (label 2)."""
    lab = torch.zeros(40, 40, 32, dtype=torch.int16)
    lab[5:35, 5:35, 4:28] = 1
    lab[30:33, 30:33, 20:23] = 2
    return Case(id="c", image=torch.randn(1, 40, 40, 32), label=lab, modality="CT")


def _vocab() -> Vocabulary:
    return Vocabulary.from_json({"labels": {
        "big": {"index": 1, "synonyms": ["large block"]},
        "small": {"index": 2, "synonyms": ["small cube"]},
        "other": {"index": 3, "synonyms": ["missing thing"]},
    }})


def test_the_centred_label_is_always_prompted_first():
    sampler = PatchSampler([_case()], _vocab(), (16, 16, 16), 2.0, seed=0, augment=False)
    lab = _case().label
    for _ in range(20):
        entries, targets = sampler.draw_prompts(lab, "CT", 3, absent_fraction=0.9, focus=2)
        assert entries[0].name == "small" and bool(targets[0].any())
    # without a focus, a prompt with a 0.9 absent chance is mostly the absent label
    names = [e.name for _ in range(50) for e in sampler.draw_prompts(lab, "CT", 3, 0.9)[0]]
    assert names.count("other") > len(names) / 2


def test_patch_reports_its_focus_label_when_it_is_inside():
    sampler = PatchSampler([_case()], _vocab(), (16, 16, 16), 2.0, seed=3, augment=False)
    for _ in range(30):
        x, lab, modality, focus, soft = sampler.patch()
        assert x.shape == (1, 4, 16, 16, 16) and modality == "CT"
        assert focus == 0 or bool((lab == focus).any())


def test_augmented_patches_are_plain_tensors():
    from monai.data import MetaTensor

    case = _case()
    case = Case(id=case.id, image=MetaTensor(case.image), label=case.label, modality="CT")  # as loaded
    sampler = PatchSampler([case], _vocab(), (16, 16, 16), 2.0, seed=1, augment=True)
    for _ in range(6):  # the affine is drawn with probability 0.5 and returns MetaTensors
        x, lab, _, _, _ = sampler.patch()
        assert type(x) is torch.Tensor and type(lab) is torch.Tensor
        assert x.shape == (1, 4, 16, 16, 16) and lab.dtype == torch.int16


def test_without_the_affine_patches_keep_the_volumes_geometry():
    """affine_prob 0: intensity augmentation still runs, but the label map of every patch
    is the case's own crop (the affine, drawn at 0.5, resamples it in some patches)."""
    case = _case()

    def crops_kept(prob: float) -> list[bool]:
        sampler = PatchSampler([case], _vocab(), (40, 40, 32), 2.0, seed=0, affine_prob=prob)
        patches = [sampler.patch() for _ in range(12)]
        return [torch.equal(lab, case.label) for _, lab, _, _, _ in patches]

    assert all(crops_kept(0.0))
    assert not all(crops_kept(0.5))
    with pytest.raises(ValueError, match="affine_prob"):
        PatchSampler([case], _vocab(), (16, 16, 16), 2.0, affine_prob=-0.1)


def test_coordinate_jitter_stays_within_range():
    case = _case()
    plain = PatchSampler([case], _vocab(), (40, 40, 32), 2.0, seed=0, augment=False)
    exact = coordinate_channels((40, 40, 32), 2.0)
    torch.testing.assert_close(plain.patch()[0][0, 1:], exact)  # no augmentation: no shift
    jitter = (0.0, 10.0, 80.0)
    sampler = PatchSampler([case], _vocab(), (40, 40, 32), 2.0, seed=0, coord_jitter_mm=jitter)
    sampler.affine.prob = 0.0  # isolate the shift from the spatial augmentation
    shifts = np.array([(sampler.patch()[0][0, 1:] - exact).mean((1, 2, 3)).numpy() * COORD_SCALE_MM
                       for _ in range(30)])
    assert np.allclose(shifts[:, 0], 0.0, atol=1e-4)
    assert (np.abs(shifts[:, 1]) <= 10.0 + 1e-3).all() and (np.abs(shifts[:, 2]) <= 80.0 + 1e-3).all()
    assert shifts[:, 2].std() > 20.0  # it does move


def test_label_first_focus_sampling_centres_rare_labels_more_often():
    """Label 2 is in one case of four: drawn label-first it is the focus of about
    0.75 / 2 of the patches, case-first of about 0.75 / 2 / 4."""
    with_small = _case()
    cases = [with_small] + [Case(id=f"b{i}", image=with_small.image, label=(with_small.label == 1).to(torch.int16),
                                 modality="CT") for i in range(3)]
    shares = {}
    for mode in ("label", "case"):
        sampler = PatchSampler(cases, _vocab(), (16, 16, 16), 2.0, seed=5, augment=False, focus_sampling=mode)
        picks = [sampler._pick_case() for _ in range(800)]
        small = [case.id for case, focus in picks if focus == 2]
        assert set(small) == {"c"}
        assert 0.18 < sum(focus == 0 for _, focus in picks) / len(picks) < 0.32
        shares[mode] = len(small) / len(picks)
    assert 0.31 < shares["label"] < 0.44 and 0.05 < shares["case"] < 0.15


def test_label_difficulty_tracks_present_prompts_only():
    """Fed the training loss's own per-prompt soft Dice, as the training loop does."""
    from lib.training.difficulty import LabelDifficulty
    from lib.training.losses import TextSegLoss

    d = LabelDifficulty(decay=0.5)
    target = torch.zeros(3, 8, 8, 8)
    target[0, 2:6, 2:6, 2:6] = 1
    target[1, 2:6, 2:6, 2:6] = 1
    logits = torch.full_like(target, -20.0)
    logits[0][target[0] > 0] = 20.0  # prompt 0 right, prompt 1 says "nowhere", prompt 2 absent
    criterion = TextSegLoss()
    criterion({"logit1": logits, "logit2": logits, "logits2": logits[:, ::2, ::2, ::2],
               "cosine2": torch.zeros(3, 4, 4, 4)}, target, {"pass1": 1.0, "pass2": 1.0})
    d.update(["right", "missed", "absent"], criterion.prompt_dice, target)
    assert d.value("right") == pytest.approx(0.5 * 1.0 + 0.5 * 0.0, abs=1e-3)
    assert d.value("missed") == pytest.approx(0.5 * 1.0 + 0.5 * (1 - 1 / 65), abs=1e-3)
    assert "absent" not in d.values and d.value("absent") == 1.0
    assert d.weight("right") == pytest.approx(0.5 ** 0.5, abs=1e-3)
    with pytest.raises(ValueError):
        d.update(["one"], criterion.prompt_dice, target)


def test_adaptive_focus_sampling_centres_hard_labels_more_often():
    """Label 2 is in one case of four; "adaptive" draws the focus label with probability
    proportional to the square root of its running loss."""
    with_small = _case()
    cases = [with_small] + [Case(id=f"b{i}", image=with_small.image, label=(with_small.label == 1).to(torch.int16),
                                 modality="CT") for i in range(3)]
    sampler = PatchSampler(cases, _vocab(), (16, 16, 16), 2.0, seed=5, augment=False, focus_sampling="adaptive")
    sampler.difficulty.values.update({"big": 0.01, "small": 0.81})  # weights 0.1 and 0.9
    picks = [sampler._pick_case() for _ in range(1000)]
    share = sum(focus == 2 for _, focus in picks) / len(picks)
    assert 0.75 * 0.9 - 0.06 < share < 0.75 * 0.9 + 0.06
    assert {case.id for case, focus in picks if focus == 2} == {"c"}
    sampler.difficulty.values.update({"big": 0.81, "small": 0.01})
    picks = [sampler._pick_case() for _ in range(1000)]
    assert sum(focus == 2 for _, focus in picks) / len(picks) < 0.75 * 0.1 + 0.04


def test_focus_boost_multiplies_a_labels_weight_in_the_label_first_draw():
    """Equal running losses: "adaptive" alone centres the two labels equally often (0.75 / 2
    each); a factor 3 on "small" gives it 3 / 4 of the focused patches. Under "label"
    sampling the factor applies to the uniform draw the same way."""
    with_small = _case()
    cases = [with_small] + [Case(id=f"b{i}", image=with_small.image, label=(with_small.label == 1).to(torch.int16),
                                 modality="CT") for i in range(3)]

    def small_share(**kwargs) -> float:
        sampler = PatchSampler(cases, _vocab(), (16, 16, 16), 2.0, seed=7, augment=False, **kwargs)
        if sampler.difficulty is not None:
            sampler.difficulty.values.update({"big": 0.25, "small": 0.25})
        picks = [sampler._pick_case() for _ in range(1200)]
        return sum(focus == 2 for _, focus in picks) / len(picks)

    assert abs(small_share(focus_sampling="adaptive") - 0.75 / 2) < 0.05
    assert abs(small_share(focus_sampling="adaptive", focus_boost={"small": 3.0}) - 0.75 * 3 / 4) < 0.05
    assert abs(small_share(focus_sampling="label", focus_boost={"small": 3.0}) - 0.75 * 3 / 4) < 0.05
    assert abs(small_share(focus_sampling="adaptive", focus_boost={"big": 3.0}) - 0.75 / 4) < 0.05
    with pytest.raises(ValueError, match="vocabulary lacks.*tumour"):
        PatchSampler(cases, _vocab(), (16, 16, 16), 2.0, focus_sampling="adaptive", focus_boost={"tumour": 2.0})
    with pytest.raises(ValueError, match="focus_boost"):
        PatchSampler(cases, _vocab(), (16, 16, 16), 2.0, focus_sampling="case", focus_boost={"small": 2.0})


def test_distinct_prompts_never_repeat_a_label_and_stay_positive_only_in_stage_1():
    lab = _case().label  # "big" and "small" present, "other" absent
    sampler = PatchSampler([_case()], _vocab(), (16, 16, 16), 2.0, seed=0, augment=False, distinct_prompts=True)
    for _ in range(20):
        names = [e.name for e in sampler.draw_prompts(lab, "CT", 3, absent_fraction=0.0, focus=2)[0]]
        assert names == ["small", "big"]  # both present labels once, no absent filler
        names = [e.name for e in sampler.draw_prompts(lab, "CT", 5, absent_fraction=0.5)[0]]
        assert sorted(names) == ["big", "other", "small"]  # every label once, then the pools are empty
    only_focus = torch.zeros_like(lab)
    only_focus[lab == 2] = 2  # the focus label alone: stage 1 prompts it once, nothing absent
    assert [e.name for e in sampler.draw_prompts(only_focus, "CT", 3, 0.0, focus=2)[0]] == ["small"]
    # with replacement (the default) the same draw repeats labels
    plain = PatchSampler([_case()], _vocab(), (16, 16, 16), 2.0, seed=0, augment=False)
    assert len(plain.draw_prompts(lab, "CT", 5, absent_fraction=0.5)[0]) == 5


def test_absent_weight_is_one_minus_the_running_loss_with_a_floor():
    from lib.training.difficulty import LabelDifficulty

    d = LabelDifficulty(decay=0.5, absent_floor=0.1)
    assert d.absent_weight("never seen") == 0.1  # start 1.0: not found yet
    d.values.update({"found": 0.2, "lost": 0.97})
    assert d.absent_weight("found") == pytest.approx(0.8)
    assert d.absent_weight("lost") == 0.1
    with pytest.raises(ValueError, match="absent_floor"):
        LabelDifficulty(absent_floor=0.0)


def _two_absent_vocab() -> Vocabulary:
    return Vocabulary.from_json({"labels": {
        "big": {"index": 1, "synonyms": ["large block"]},
        "small": {"index": 2, "synonyms": ["small cube"]},
        "easy": {"index": 3, "synonyms": ["missing easy thing"]},
        "hard": {"index": 4, "synonyms": ["missing hard thing"]},
    }})


@pytest.mark.parametrize("mode", ["uniform", "found"])
def test_found_absent_sampling_rarely_prompts_a_label_the_model_does_not_find(mode):
    """Both "easy" (running loss 0.1: absent weight 0.9) and "hard" (0.99: the floor, 0.1)
    are absent from the patch; one absent prompt a patch. "found" draws them 9 : 1,
    "uniform" 1 : 1; the present prompts are drawn as before."""
    lab = _case().label
    sampler = PatchSampler([_case()], _two_absent_vocab(), (16, 16, 16), 2.0, seed=2, augment=False,
                           focus_sampling="adaptive", distinct_prompts=True, absent_sampling=mode)
    sampler.difficulty.values.update({"easy": 0.1, "hard": 0.99})
    draws = [[e.name for e in sampler.draw_prompts(lab, "CT", 4, absent_fraction=1.0, focus=2)[0]]
             for _ in range(600)]
    absent = [n for names in draws for n in names if n in ("easy", "hard")]
    assert all(names[0] == "small" for names in draws) and len(absent) == 2 * 600  # both, once each
    first = [names[1] for names in draws]  # the first absent draw is the weighted one
    share_hard = first.count("hard") / len(first)
    if mode == "found":
        assert 0.1 - 0.04 < share_hard < 0.1 + 0.04
    else:
        assert 0.5 - 0.07 < share_hard < 0.5 + 0.07


def test_found_absent_sampling_needs_adaptive_focus_sampling():
    with pytest.raises(ValueError, match="adaptive"):
        PatchSampler([_case()], _vocab(), (16, 16, 16), 2.0, absent_sampling="found")
    with pytest.raises(ValueError, match="absent_sampling"):
        PatchSampler([_case()], _vocab(), (16, 16, 16), 2.0, absent_sampling="sometimes")


def test_balanced_absent_sampling_prompts_a_label_absent_at_most_as_often_as_present():
    """"small" (present only in the patches centred on it) and "other" (never present) are
    absent from most patches. "uniform" prompts "small" absent far more often than present;
    "balanced" never more often, and never prompts a label absent that was not first
    prompted present, while a patch still has a present label to prompt."""
    case = _case()
    only_big = torch.where(case.label == 1, case.label, torch.zeros_like(case.label))
    counts = {}
    for mode in ("uniform", "balanced"):
        sampler = PatchSampler([case], _vocab(), (16, 16, 16), 2.0, seed=4, augment=False,
                               distinct_prompts=True, absent_sampling=mode)
        sampler.draw_prompts(case.label, "CT", 2, absent_fraction=0.0, focus=2)  # stage 1: not counted
        assert sampler.prompt_counts == {}
        for i in range(300):
            centred = i % 5 == 0  # a fifth of the patches hold "small"
            lab, focus = (case.label, 2) if centred else (only_big, 0)
            names = [e.name for e in sampler.draw_prompts(lab, "CT", 3, absent_fraction=0.9, focus=focus)[0]]
            if mode == "balanced":
                c = sampler.prompt_counts
                assert all(c[n][1] <= c[n][0] for n in names)
                assert "other" not in names  # never present, so never absent
        counts[mode] = sampler.prompt_counts
    present, absent = counts["uniform"]["small"]
    assert present == 60 and absent > 2 * present
    present, absent = counts["balanced"]["small"]
    assert present == 60 and present - 1 <= absent <= present
    assert counts["balanced"]["big"] == [300, 0]


def test_balanced_absent_sampling_stays_within_credit_when_drawing_with_replacement():
    """Without distinct prompts a patch may repeat a present label, but a label with one
    credit is prompted absent once."""
    sampler = PatchSampler([_case()], _vocab(), (16, 16, 16), 2.0, seed=0, augment=False,
                           absent_sampling="balanced")
    only_big = torch.where(_case().label == 1, _case().label, torch.zeros_like(_case().label))
    sampler.prompt_counts.update({"small": [1, 0], "other": [1, 0]})
    names = [e.name for e in sampler.draw_prompts(only_big, "CT", 8, absent_fraction=0.9)[0]]
    assert names.count("small") == 1 and names.count("other") == 1 and len(names) == 8
    assert sampler.prompt_counts["small"] == [1, 1] and sampler.prompt_counts["other"] == [1, 1]


def test_balanced_absent_sampling_still_prompts_a_patch_without_present_labels():
    """A background patch has no present label: it gets the absent label with the most
    credit even when none has any left, instead of no prompt at all."""
    sampler = PatchSampler([_case()], _vocab(), (16, 16, 16), 2.0, seed=0, augment=False,
                           distinct_prompts=True, absent_sampling="balanced")
    empty = torch.zeros_like(_case().label)
    sampler.prompt_counts.update({"big": [5, 1], "small": [1, 3]})
    names = [e.name for e in sampler.draw_prompts(empty, "CT", 3, absent_fraction=0.4)[0]]
    assert names == ["big"]  # the one eligible label; "small" and "other" have no credit
    sampler.prompt_counts.update({"big": [5, 5], "other": [0, 1]})
    names = [e.name for e in sampler.draw_prompts(empty, "CT", 3, absent_fraction=0.4)[0]]
    assert names == ["big"]  # none eligible: the one with the most credit (0, against -2 and -1)


def test_label_centres_are_fractions_of_each_axis():
    from lib.training.data import label_centres

    lab = torch.zeros(10, 20, 4, dtype=torch.int16)
    lab[0:2, 10:20, 0:4] = 3  # voxel centres 0.5, 1.5 of 10; 10.5 .. 19.5 of 20; all of 4
    centres = label_centres(lab)
    assert set(centres) == {3}
    np.testing.assert_allclose(centres[3], (0.1, 0.75, 0.5))


def _site_cases() -> list[Case]:
    """Four 40x40x32 cases: the big block in all, the small cube in three (at 30:33 in x and
    y, 20:23 in z), and label 3 only in the first (a lesion-like rarity)."""
    cases = []
    for i in range(4):
        lab = _case().label.clone()
        if i == 2:
            lab[lab == 2] = 1  # the third case lacks "small"
        if i == 0:
            lab[10:12, 10:12, 10:12] = 3
        cases.append(Case(id=f"c{i}", image=torch.full((1, 40, 40, 32), float(i)), label=lab, modality="CT"))
    return cases


def test_absent_sites_are_the_usual_places_of_structures_most_cases_have():
    from lib.training.data import absent_sites

    cases = _site_cases()
    values = [set(torch.unique(c.label).tolist()) - {0} for c in cases]
    sites = absent_sites(cases, values, _vocab())
    # "big" is in every case (nothing lacks it), "other" in one of four (a rarity): no sites
    assert [s.entry.name for s in sites] == ["small"]
    assert sites[0].cases == (2,)
    np.testing.assert_allclose(sites[0].centre, (31.5 / 40, 31.5 / 40, 21.5 / 32))
    cases[3].label[cases[3].label == 2] = 1  # in two of four now: too rare for a usual place
    values = [set(torch.unique(c.label).tolist()) - {0} for c in cases]
    assert absent_sites(cases, values, _vocab()) == []


def test_absent_site_patches_prompt_the_missing_structure_first_where_it_usually_lies():
    cases = _site_cases()
    sampler = PatchSampler(cases, _vocab(), (16, 16, 16), 2.0, seed=0, augment=False, absent_site=1.0,
                           distinct_prompts=True)
    for _ in range(10):
        x, prompts, targets, names = sampler.sample(3, absent_fraction=0.4)
        assert names[0] == "small" and not bool(targets[0].any())
        assert bool((x[0, 0] == 2.0).all())  # the third case's patch (its image is all 2)
        # centred on (31, 31, 21) up to a quarter-patch shift, then kept inside the volume
        start = [sampler._crop(cases[2], 0, [31, 31, 21])[2] for _ in range(20)]
        assert all(19 <= a <= 24 and 19 <= b <= 24 and 9 <= c <= 16 for a, b, c in start)
    assert sampler.site_counts == {"small": 10}
    for _ in range(10):  # stage 1 (positive-only): no absent-site patch
        sampler.sample(3, absent_fraction=0.0)
    assert sampler.site_counts == {"small": 10}
    off = PatchSampler(cases, _vocab(), (16, 16, 16), 2.0, seed=0, augment=False)
    assert off.sites == [] and all(off._pick_site(0.4) is None for _ in range(5))
    with pytest.raises(ValueError, match="absent_site"):
        PatchSampler(cases, _vocab(), (16, 16, 16), 2.0, absent_site=1.5)


def test_absent_site_patches_respect_balanced_credit():
    cases = _site_cases()
    sampler = PatchSampler(cases, _vocab(), (16, 16, 16), 2.0, seed=0, augment=False, absent_site=1.0,
                           distinct_prompts=True, absent_sampling="balanced")
    assert sampler._pick_site(0.4) is None  # "small" was never prompted present in stage 2
    sampler.prompt_counts["small"] = [2, 0]
    for _ in range(2):
        names = sampler.sample(3, absent_fraction=0.4)[3]
        assert names[0] == "small"
    assert sampler.prompt_counts["small"][1] == 2 and sampler._pick_site(0.4) is None  # credit spent


def test_a_structure_in_the_patch_cannot_be_forced_absent():
    sampler = PatchSampler([_case()], _vocab(), (16, 16, 16), 2.0, seed=0, augment=False)
    small = next(e for e in _vocab() if e.name == "small")
    with pytest.raises(ValueError, match="cannot be prompted absent"):
        sampler.draw_prompts(_case().label, "CT", 3, 0.4, forced_absent=small)
