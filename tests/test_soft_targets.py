"""Soft training targets: each structure's share of every working voxel, resampled like
the image (``soft_label_maps``), carried through cropping, augmentation and prompt
drawing, and relabelled with the online trainer's segment mapping."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import SpatialResample

from lib.config import Config
from lib.data.preprocess import prepare, soft_label_maps, to_working_grid
from lib.data.vocab import Vocabulary
from lib.trainers.textseg import map_shares
from lib.training.data import Case, PatchSampler
from lib.training.difficulty import LabelDifficulty

GRIDS = {
    "anisotropic CT (0.7 x 0.7 x 3.1 mm)": (np.diag([0.7, 0.7, 3.1, 1.0]), (60, 56, 14)),
    "LAS MRI with offsets": (np.array([[-1.3, 0, 0, 30], [0, 1.3, 0, -26], [0, 0, 1.3, -12], [0, 0, 0, 1]]), (40, 44, 36)),
    "oblique (its directions kept)": (np.array([[0.96, -0.28, 0, 0], [0.28, 0.96, 0, 0], [0, 0, 1.5, 0], [0, 0, 0, 1]]),
                                    (40, 40, 24)),
}


def _label(shape, affine):
    """An ellipsoid (1) and a smaller ball (2) well inside the volume, in physical units."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(float)
    centre = (np.array(shape) - 1) / 2
    mm = (idx - centre) @ np.asarray(affine)[:3, :3].T
    size = np.abs((np.array(shape) - 1) @ np.asarray(affine)[:3, :3].T)
    lab = np.zeros(shape, np.int16)
    lab[(((mm / (size * 0.3)) ** 2).sum(-1)) <= 1] = 1
    lab[(((mm - size * 0.12) ** 2).sum(-1)) <= (size.min() * 0.1) ** 2] = 2
    return MetaTensor(torch.as_tensor(lab)[None], affine=torch.as_tensor(affine, dtype=torch.float64))


@pytest.mark.parametrize("name", list(GRIDS))
def test_shares_are_the_indicator_resampled_like_the_image(name):
    affine, shape = GRIDS[name]
    lab = _label(shape, affine)
    img = MetaTensor(torch.zeros(1, *shape) - 500.0, affine=lab.affine)
    vol = prepare(img, 2.0, "CT")
    shares = soft_label_maps(lab, vol)
    assert sorted(shares) == [1, 2]
    nearest = to_working_grid(lab, 2.0, label=True)[0].round()
    for v, share in shares.items():
        assert type(share) is torch.Tensor and share.dtype == torch.uint8 and tuple(share.shape) == tuple(vol.image.shape[1:])
        reference = SpatialResample(mode="bilinear", padding_mode="zeros", dtype=torch.float32)(
            MetaTensor((lab == v).float(), affine=lab.affine), dst_affine=vol.affine,
            spatial_size=tuple(vol.image.shape[1:]))[0]
        np.testing.assert_allclose(share.float().numpy() / 255, reference.numpy(), atol=1 / 255 + 1e-4)
        # soft boundaries exist, and thresholded they are the nearest-neighbour map up to
        # the boundary voxels
        assert bool(((share > 0) & (share < 255)).any())
        inside, near = share >= 128, nearest == v
        assert 2 * float((inside & near).sum()) / float(inside.sum() + near.sum()) > 0.85


def test_a_grid_at_an_angle_uses_monai_and_keeps_the_volume():
    from lib.data.preprocess import WorkingVolume

    affine, shape = GRIDS["anisotropic CT (0.7 x 0.7 x 3.1 mm)"]
    lab = _label(shape, affine)
    c, s_ = np.cos(0.5), np.sin(0.5)
    work = torch.tensor([[2 * c, -2 * s_, 0, -10], [2 * s_, 2 * c, 0, -10], [0, 0, 2, -5], [0, 0, 0, 1]], dtype=torch.float64)
    vol = WorkingVolume(image=torch.zeros(1, 40, 40, 30), affine=work, original_affine=torch.as_tensor(lab.affine),
                        original_shape=shape, modality="CT")
    shares = soft_label_maps(lab, vol)
    for v, share in shares.items():
        assert type(share) is torch.Tensor and share.dtype == torch.uint8 and tuple(share.shape) == (40, 40, 30)
        true_mm3 = float((lab == v).sum()) * 0.7 * 0.7 * 3.1
        assert abs(float(share.float().sum()) / 255 * 8.0 - true_mm3) < 0.1 * true_mm3


def _case() -> Case:
    """A block (1) whose shares also spill 40 % into a one-voxel rim outside it, and a
    small cube (2)."""
    lab = torch.zeros(40, 40, 32, dtype=torch.int16)
    lab[5:35, 5:35, 4:28] = 1
    lab[30:33, 30:33, 20:23] = 2
    big = torch.zeros(40, 40, 32, dtype=torch.uint8)
    big[4:36, 4:36, 3:29] = 102
    big[lab == 1] = 255
    return Case(id="c", image=torch.randn(1, 40, 40, 32), label=lab, modality="CT",
                soft={1: big, 2: ((lab == 2) * 255).to(torch.uint8)})


def _vocab() -> Vocabulary:
    return Vocabulary.from_json({"labels": {
        "big": {"index": 1, "synonyms": ["large block"]},
        "small": {"index": 2, "synonyms": ["small cube"]},
        "other": {"index": 3, "synonyms": ["missing thing"]},
        "both": {"parts": [1, 2], "synonyms": ["block and cube"]},
    }})


def test_prompts_get_the_shares_and_absent_ones_stay_empty():
    sampler = PatchSampler([_case()], _vocab(), (40, 40, 32), 2.0, seed=0, augment=False)
    x, lab, _, _, soft = sampler.patch()
    assert sorted(soft) == sorted(set(torch.unique(lab).tolist()) - {0})
    seen = set()
    for _ in range(20):
        entries, targets = sampler.draw_prompts(lab, "CT", 4, absent_fraction=0.5, focus=1, soft=soft)
        for e, t in zip(entries, targets):
            seen.add(e.name)
            if e.name == "other":
                assert not bool(t.any())
            if e.name == "big":
                assert torch.allclose(t[4, 20, 16], torch.tensor(0.4), atol=0.01)  # the rim, label 0
                assert float(t[20, 20, 16]) == 1.0
            if e.name == "both":  # a union adds its parts' shares, at most 1
                assert float(t[31, 31, 21]) == 1.0 and float(t.max()) == 1.0
                assert torch.allclose(t[4, 20, 16], torch.tensor(0.4), atol=0.01)
    assert {"big", "other", "both"} <= seen


def test_augmented_shares_move_with_the_label_map():
    sampler = PatchSampler([_case()], _vocab(), (32, 32, 24), 2.0, seed=1)
    sampler.affine.prob = 1.0
    for _ in range(5):
        x, lab, _, _, soft = sampler.patch()
        for v, share in soft.items():
            assert float(share.min()) >= 0.0 and float(share.max()) <= 1.0
            hard = lab == v
            if int(hard.sum()) > 50:
                assert float((share[hard] >= 0.5).float().mean()) > 0.95


def test_sampler_without_shares_gives_binary_targets():
    case = replace(_case(), soft=None)
    sampler = PatchSampler([case], _vocab(), (40, 40, 32), 2.0, seed=0, augment=False)
    *_, soft = sampler.patch()
    assert soft is None
    targets = sampler.sample(3, 0.3)[2]
    assert set(torch.unique(targets).tolist()) <= {0.0, 1.0}


def test_map_shares_drops_unmapped_values_and_adds_merged_ones():
    a = torch.tensor([200, 100, 0], dtype=torch.uint8)
    b = torch.tensor([100, 50, 7], dtype=torch.uint8)
    out = map_shares({1: a, 2: b, 5: a}, {1: 3, 2: 3})
    assert sorted(out) == [3]
    assert out[3].tolist() == [255, 150, 7]


def test_edge_shares_alone_do_not_count_as_present_for_the_difficulty():
    d = LabelDifficulty()
    rim = torch.full((1, 4, 4, 4), 0.3)
    d.update(["big"], torch.tensor([0.2]), rim)
    assert d.value("big") == 1.0
    d.update(["big"], torch.tensor([0.2]), rim.clamp(min=0.6))
    assert d.value("big") < 1.0


def test_the_soft_targets_config_differs_from_the_2mm_config_only_by_that_key():
    root = Path(__file__).resolve().parents[1] / "configs"
    base = Config.load(root / "spacing2.yaml")
    soft = Config.load(root / "soft_targets.yaml")
    assert not base.train.soft_targets and not Config.load(root / "default.yaml").train.soft_targets
    assert soft == replace(base, train=replace(base.train, soft_targets=True))

