"""Label-wise contrast augmentation: each structure moves by one offset, a structure inside
another moves with its host (its contrast with the host is kept), background never moves,
and only CT patches get it."""

import numpy as np
import pytest
import torch

from lib.config import TrainConfig
from lib.data.vocab import Vocabulary
from lib.training.contrast import host_labels, hu_to_normalized, label_contrast_shift
from lib.training.data import Case, PatchSampler


def _labels() -> torch.Tensor:
    """A 30x30x20 map: an organ (1) holding a lesion (2), a second organ (3) in background."""
    lab = torch.zeros(30, 30, 20, dtype=torch.int16)
    lab[2:16, 2:16, 2:18] = 1
    lab[6:10, 6:10, 8:12] = 2
    lab[20:28, 20:28, 4:16] = 3
    return lab


def test_hu_offsets_are_on_the_ct_window_scale():
    assert hu_to_normalized(650.0) == pytest.approx(2.0)  # the whole -250..400 HU window
    assert hu_to_normalized(-65.0) == pytest.approx(-0.2)


def test_a_structure_inside_another_has_it_as_host():
    lab = _labels()
    assert host_labels(lab) == {2: 1}
    # a lesion on the organ's edge, half in background, has no host
    lab[14:20, 6:10, 8:12] = 2  # a third of its neighbours are the organ
    lab[6:10, 6:10, 8:12] = 1
    assert 2 not in host_labels(lab)


def test_each_structure_moves_by_one_offset_and_a_lesion_with_its_host():
    lab = _labels()
    img = torch.randn(1, *lab.shape)
    rng = np.random.default_rng(0)
    limit = hu_to_normalized(100.0)
    for _ in range(10):
        out = label_contrast_shift(img, lab, rng, limit)
        diff = (out - img)[0]
        assert torch.equal(diff[lab == 0], torch.zeros_like(diff[lab == 0]))
        offsets = {}
        for v in (1, 2, 3):
            d = diff[lab == v]
            assert torch.allclose(d, d[0].expand_as(d)) and abs(float(d[0])) <= limit + 1e-6
            offsets[v] = float(d[0])
        assert offsets[2] == pytest.approx(offsets[1])  # the lesion keeps its contrast with the organ
        assert offsets[3] != pytest.approx(offsets[1])
    assert label_contrast_shift(img, lab, rng, 0.0) is img
    assert label_contrast_shift(img, torch.zeros_like(lab), rng, limit) is img


def _sampler(modality: str, prob: float) -> PatchSampler:
    case = Case(id="c", image=torch.full((1, 30, 30, 20), 0.25), label=_labels(), modality=modality)
    vocab = Vocabulary.from_json({"labels": {
        "organ": {"index": 1, "synonyms": ["an organ"], "modality": modality},
        "lesion": {"index": 2, "synonyms": ["a lesion"], "modality": modality},
        "second organ": {"index": 3, "synonyms": ["another organ"], "modality": modality},
    }})
    sampler = PatchSampler([case], vocab, (32, 32, 24), 2.0, seed=0, affine_prob=0.0,
                           label_contrast_hu=100.0, label_contrast_prob=prob)
    sampler.intensity = []  # only the contrast augmentation changes intensities
    return sampler


def test_sampler_shifts_ct_structures_only():
    for modality, prob, shifted in (("CT", 1.0, True), ("CT", 0.0, False), ("MR", 1.0, False)):
        sampler = _sampler(modality, prob)
        for _ in range(3):
            x, lab, _, _, _ = sampler.patch()
            img = x[0, 0]
            inside = (lab > 0)
            # the patch is padded at the far side (replicate), which keeps background at 0.25
            assert torch.allclose(img[~inside], torch.full_like(img[~inside], 0.25))
            assert bool((img[inside] - 0.25).abs().max() > 1e-4) == shifted


def test_contrast_settings_are_validated():
    with pytest.raises(ValueError, match="label_contrast_hu"):
        TrainConfig(label_contrast_hu=-1.0)
    with pytest.raises(ValueError, match="label_contrast_prob"):
        TrainConfig(label_contrast_prob=1.5)
    case = Case(id="c", image=torch.zeros(1, 16, 16, 16), label=torch.zeros(16, 16, 16, dtype=torch.int16),
                modality="CT")
    with pytest.raises(ValueError, match="label_contrast"):
        PatchSampler([case], Vocabulary.from_json({"labels": {"a": {"index": 1, "synonyms": ["a"]}}}),
                     (16, 16, 16), 2.0, label_contrast_hu=-5.0)
