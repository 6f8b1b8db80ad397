"""The image-guided upsampling of probability maps (lib/inference/guided.py)."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from lib.config import ModelConfig
from lib.data.preprocess import normalize_intensity, prepare, to_original_grid, to_working_grid
from lib.inference import guided
from lib.inference.guided import band_box, box_mean, guided_coefficients, guided_upsample

FINE = (0.8, 0.8, 2.5)  # an anisotropic CT grid, three times finer in-plane than the working grid


def _ball_ct(shape=(90, 90, 24), centre=(37.3, 41.9, 30.2), radius_mm=19.0, noise=0.0, seed=0):
    """A bright ball (60 HU) in fat (-100 HU) on the fine grid; returns (MetaTensor, truth)."""
    idx = np.indices(shape).astype(np.float64)
    mm = [idx[a] * FINE[a] for a in range(3)]
    inside = sum((m - c) ** 2 for m, c in zip(mm, centre)) <= radius_mm ** 2
    hu = np.where(inside, 60.0, -100.0)
    if noise:
        hu = hu + np.random.default_rng(seed).normal(0, noise, shape)
    img = MetaTensor(torch.as_tensor(hu, dtype=torch.float32)[None], affine=torch.as_tensor(np.diag([*FINE, 1.0])))
    return img, inside


def _dice(a, b):
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def _working_probability(truth, affine):
    """The truth's share of each working voxel (2.5 mm), as a perfect coarse model would give:
    (1, X, Y, Z)."""
    img = MetaTensor(torch.as_tensor(truth, dtype=torch.float32)[None], affine=affine)
    return to_working_grid(img, 2.5).as_tensor().clamp(0, 1)


def test_box_mean_matches_an_explicit_window_mean():
    x = torch.rand(2, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    out = box_mean(x, 1)
    assert out.shape == x.shape
    assert torch.allclose(out[1, 2, 3, 4], x[1, 1:4, 2:5, 3:6].mean(), atol=1e-6)
    assert torch.equal(box_mean(x, 0), x)


def test_coefficients_reproduce_a_linear_map_and_ignore_a_flat_image():
    g = torch.Generator().manual_seed(1)
    guide = torch.rand(8, 8, 8, generator=g) * 2 - 1
    p = (0.3 * guide + 0.5).unsqueeze(0)  # exactly linear in the image
    a, b = guided_coefficients(p, guide, radius=1, eps=1e-8)
    assert torch.allclose(a, torch.full_like(a, 0.3), atol=1e-3)
    assert torch.allclose(a * guide + b, p, atol=1e-3)
    flat = torch.zeros(8, 8, 8)  # no contrast: slope 0, offset the (twice) window-averaged map
    p2 = torch.rand(1, 8, 8, 8, generator=g)
    a2, b2 = guided_coefficients(p2, flat, radius=1, eps=3e-4)
    assert torch.equal(a2, torch.zeros_like(a2))
    assert torch.allclose(b2, box_mean(box_mean(p2, 1), 1), atol=1e-6)


def test_band_box_covers_the_band_and_nothing_for_a_binary_map():
    p = torch.zeros(20, 20, 20)
    assert band_box(p, margin=3) is None
    p[5:9, 6:8, 10] = 0.5
    p[2, 2, 2] = 1.0  # a confident voxel is not band
    box = band_box(p, margin=2)
    assert box == (slice(3, 11), slice(4, 10), slice(8, 13))


@pytest.mark.parametrize("noise", [0.0, 20.0])
def test_guided_upsampling_follows_the_fine_edge(noise):
    """A perfect 2.5 mm model's probabilities, brought to a 0.8 mm grid: linear
    interpolation blurs the ball's edge; the guided filter follows the image's edge,
    also through CT-like noise."""
    img, truth = _ball_ct(noise=noise)
    vol = prepare(img, 2.5, "CT")
    p = _working_probability(truth, img.affine)
    linear = to_original_grid(p, vol)
    guide = normalize_intensity(img[0].as_tensor(), "CT")
    out = guided_upsample(p, linear.clone(), vol, guide, radius=1, eps=3e-4)
    assert out.shape == linear.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    d_linear, d_guided = _dice(linear[0].numpy() >= 0.5, truth), _dice(out[0].numpy() >= 0.5, truth)
    assert d_guided > d_linear + 0.01, (d_linear, d_guided)
    assert d_guided > 0.97
    # away from the boundary nothing changes
    far = (p[0] < guided.BAND) | (p[0] > 1 - guided.BAND)
    far_orig = to_original_grid(box_mean(far[None].float(), 4), vol)[0] > 0.999
    assert torch.equal(out[0][far_orig], linear[0][far_orig])


def test_box_path_equals_the_whole_volume_path(monkeypatch):
    """Filtering and resampling only the box around the band gives what resampling the
    whole coefficient maps gives (the path taken for grids at an angle)."""
    img, truth = _ball_ct(noise=10.0, seed=3)
    vol = prepare(img, 2.5, "CT")
    p = torch.cat([_working_probability(truth, img.affine), torch.zeros(1, *vol.image.shape[1:])])
    linear = to_original_grid(p, vol)
    guide = normalize_intensity(img[0].as_tensor(), "CT")
    boxed = guided_upsample(p, linear.clone(), vol, guide, radius=1, eps=3e-4)
    monkeypatch.setattr(guided, "axis_aligned_map", lambda *a, **k: None)
    whole = guided_upsample(p, linear.clone(), vol, guide, radius=1, eps=3e-4)
    assert torch.allclose(boxed, whole, atol=1e-4)
    assert torch.equal(boxed[1], linear[1])  # an empty map stays empty


def test_config_validates_the_guided_options():
    assert ModelConfig().guided_modalities == ("CT",)
    assert ModelConfig(guided_modalities=["CT", "MR"]).guided_modalities == ("CT", "MR")
    with pytest.raises(ValueError, match="guided_modalities"):
        ModelConfig(guided_modalities=("PET",))
    with pytest.raises(ValueError, match="guided_radius"):
        ModelConfig(guided_radius=-1)
    with pytest.raises(ValueError, match="guided_eps"):
        ModelConfig(guided_eps=0.0)


@pytest.mark.slow
def test_segresnet_baseline_is_scored_with_and_without_the_guided_filter(phantom_studies):
    """bench-accuracy gives the closed-set baseline the same post-processing: one pass over
    a real phantom scores its argmax both from linear and from guided probabilities."""
    from lib.bench.segresnet import build_segresnet, evaluate_segresnet
    from lib.data.studies_index import labelled_pairs
    from lib.data.vocab import Vocabulary

    vocab = Vocabulary.load(phantom_studies)
    indices = sorted(vocab.index_to_name())[:4]
    torch.manual_seed(0)
    net = build_segresnet(len(indices), init_filters=8).eval()
    pairs = labelled_pairs(phantom_studies)[:1]
    result = evaluate_segresnet(net, indices, pairs, vocab, 4.0, (32, 32, 32), progress=False, guided=(1, 3e-4))
    assert len(result["rows"]) == len(result["guided_rows"]) > 0
    assert [r["label"] for r in result["rows"]] == [r["label"] for r in result["guided_rows"]]
    assert set(result["guided_summary"]) == set(result["summary"])
