"""The intensity completion of lesion masks: the growth rule on crafted volumes, the choice
of a setting, the predictor applying a calibrated setting, and ``calibrate`` scoring it."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from lib.data.label_neighbours import Neighbours
from lib.inference.completion import (Growth, choose_growth, grow, grow_into_host, growth_from_json, growth_to_json,
                                      host_view)

SP = (1.0, 1.0, 2.0)


def _ball(shape, centre, radius_mm, spacing=SP) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing))
    return d2 <= radius_mm ** 2


@pytest.fixture
def organ():
    """(image, host, lesion): a 40 x 40 x 20 organ of intensity 100 with noise of s.d. 4 and
    texture, holding a lesion of 7 mm radius at 80 (5 s.d. darker), and a second dark
    spot of 3 mm radius 14 mm away from the lesion's edge."""
    rng = np.random.default_rng(0)
    shape = (40, 40, 20)
    host = np.zeros(shape, bool)
    host[2:38, 2:38, 1:19] = True
    lesion = _ball(shape, (14, 20, 10), 7.0)
    spot = _ball(shape, (34, 20, 10), 3.0)
    image = np.where(host, 100.0, -50.0) + rng.normal(0, 4, shape)
    image[lesion] -= 20.0
    image[spot] -= 20.0
    return image.astype(np.float32), host & ~lesion & ~spot, lesion  # the host's mask leaves the lesions out


def test_a_partly_found_lesion_grows_to_its_edge_and_no_further(organ):
    image, host, lesion = organ
    mask = _ball(lesion.shape, (14, 20, 10), 3.5)
    before = mask.copy()
    grown = grow_into_host(mask, image, host, SP, Growth(k=2.0, radius_mm=6.0))
    assert np.array_equal(mask, before)  # the input is not changed
    dice = lambda a, b: 2 * (a & b).sum() / (a.sum() + b.sum())  # noqa: E731
    assert dice(before, lesion) < 0.3 and dice(grown, lesion) > 0.85
    assert (grown & before).sum() == before.sum()  # it only adds
    edge = ndimage.binary_dilation(lesion, np.ones((3, 3, 3), bool), iterations=2)
    assert not (grown & ~edge).any()  # nothing beyond the lesion's edge (smoothing blurs it by a voxel or two)
    assert not grown[30:38].any()  # the dark spot, out of reach, stays out


def test_the_radius_bounds_the_growth_and_bright_voxels_never_join(organ):
    image, host, lesion = organ
    mask = _ball(lesion.shape, (14, 20, 10), 3.5)
    near = grow_into_host(mask, image, host, SP, Growth(k=2.0, radius_mm=1.0))
    dist = ndimage.distance_transform_edt(~mask, sampling=SP)
    assert near.sum() > mask.sum() and dist[near].max() <= 1.0
    far = grow_into_host(mask, image, host, SP, Growth(k=2.0, radius_mm=30.0))
    assert not far[30:38].any()  # the spot is not connected to the mask through dark voxels
    bright = image.copy()
    bright[lesion] += 40.0  # the same lesion 20 brighter than the organ
    assert np.array_equal(grow_into_host(mask, bright, host, SP, Growth(k=2.0, radius_mm=6.0)), mask)
    # a stricter k adds less
    strict = grow_into_host(mask, image, host, SP, Growth(k=8.0, radius_mm=6.0))
    assert strict.sum() < grow_into_host(mask, image, host, SP, Growth(k=2.0, radius_mm=6.0)).sum()


def test_nothing_to_grow_from_or_to_describe_leaves_the_mask(organ):
    image, host, lesion = organ
    empty = np.zeros_like(lesion)
    assert not grow_into_host(empty, image, host, SP, Growth(2.0, 6.0)).any()
    mask = _ball(lesion.shape, (14, 20, 10), 3.5)
    assert np.array_equal(grow_into_host(mask, image, empty, SP, Growth(2.0, 6.0)), mask)  # host too small
    flat = np.full_like(image, 100.0)
    assert np.array_equal(grow_into_host(mask, flat, host, SP, Growth(2.0, 6.0)), mask)  # uniform host
    with pytest.raises(ValueError, match="share a grid"):
        grow_into_host(mask, image[:-1], host, SP, Growth(2.0, 6.0))
    with pytest.raises(ValueError, match="spacing"):
        grow_into_host(mask, image, host, (1.0, 0.0, 1.0), Growth(2.0, 6.0))


def test_one_host_view_serves_every_setting(organ):
    """Calibration computes the host's statistics once per scan and grows at each setting
    from them: the same masks as ``grow_into_host`` setting by setting."""
    image, host, lesion = organ
    mask = _ball(lesion.shape, (14, 20, 10), 3.5)
    view = host_view(mask, image, host, SP)
    assert view is not None and view.inner < view.median
    for g in (Growth(1.5, 2.0), Growth(2.0, 6.0), Growth(3.0, 8.0)):
        assert np.array_equal(grow(view, g), grow_into_host(mask, image, host, SP, g))
    assert host_view(mask, np.full_like(image, 100.0), host, SP) is None  # nothing any setting could add
    assert host_view(np.zeros_like(mask), image, host, SP) is None


def test_growth_settings_are_validated_and_round_trip():
    for bad in [(0.0, 4.0), (2.0, -1.0), (float("nan"), 4.0), (2.0, float("inf"))]:
        with pytest.raises(ValueError, match="growth"):
            Growth(*bad)
    settings = {"liver lesion": Growth(2.5, 6.0)}
    assert growth_from_json(json.loads(json.dumps(growth_to_json(settings)))) == settings
    assert growth_from_json(None) == {}


def test_choose_growth_keeps_the_best_setting_only_when_it_gains():
    a, b, c = Growth(2.0, 4.0), Growth(3.0, 4.0), Growth(2.0, 8.0)
    base = [0.5, 0.6, 0.7]
    assert choose_growth(base, {a: [0.6, 0.7, 0.8], b: [0.55, 0.6, 0.7], c: [0.4, 0.5, 0.9]}, 3, 0.01) == a
    assert choose_growth(base, {a: [0.505, 0.6, 0.7]}, 3, 0.01) is None  # gains 0.002 < 0.01
    assert choose_growth(base, {a: [0.6, 0.7, 0.8]}, 4, 0.01) is None  # fewer scans than min_cases
    # a tie goes to the smaller radius, then the larger k
    assert choose_growth(base, {c: [0.7] * 3, a: [0.7] * 3, b: [0.7] * 3}, 3, 0.01) == b
    assert choose_growth(base, {}, 3, 0.01) is None
    with pytest.raises(ValueError, match="scores"):
        choose_growth(base, {a: [0.6]}, 3, 0.01)


@pytest.fixture
def lesion_scan(crafted_predictor):
    """(predictor, encoded, calls, dark): a crafted predictor whose 'liver' covers the middle
    of a real phantom and whose 'liver lesion' is a small block in it, with the input-grid
    image replaced by a uniform organ holding a dark region 2 voxels wider than the lesion's
    served mask (``dark``)."""

    def draw(shape):
        X, Y, Z = shape
        liver = torch.zeros(shape)
        liver[X // 4: 3 * X // 4, Y // 4: 3 * Y // 4, Z // 4: 3 * Z // 4] = 0.9
        lesion = torch.zeros(shape)
        lesion[X // 2 - 2: X // 2 + 2, Y // 2 - 2: Y // 2 + 2, Z // 2 - 1: Z // 2 + 2] = 0.9
        return {"liver": liver, "liver lesion": lesion, "spleen": torch.zeros(shape)}

    predictor, encoded, calls, _ = crafted_predictor(draw, single_component={"liver lesion": 0.3})
    encoded.guide = torch.zeros(encoded.volume.original_shape)  # as if the input image had been kept
    served, = predictor.predict(encoded, ["liver lesion"])
    assert served.present
    dark = ndimage.binary_dilation(served.mask, np.ones((3, 3, 3), bool), iterations=2)
    rng = np.random.default_rng(1)
    guide = 0.5 + 0.05 * rng.standard_normal(dark.shape)
    guide[dark] = 0.2
    encoded.guide = torch.as_tensor(guide, dtype=torch.float32)
    predictor.label_neighbours = {"liver lesion": Neighbours(hosts=("liver",), competitors=())}
    calls.clear()
    return predictor, encoded, calls, dark, served.mask


def test_the_predictor_completes_a_calibrated_label_from_its_host(lesion_scan):
    predictor, encoded, calls, dark, served = lesion_scan
    same, = predictor.predict(encoded, ["liver lesion"])  # no calibrated completion: unchanged
    assert np.array_equal(same.mask, served) and calls == [["liver lesion"]]
    predictor.label_growth = {"liver lesion": Growth(k=2.0, radius_mm=6.0)}
    calls.clear()
    grown, = predictor.predict(encoded, ["liver lesion"])
    assert calls == [["liver lesion"], ["liver"]]  # the host's mask from the same encoding
    assert not (served & ~grown.mask).any() and (grown.mask & dark).sum() > 0.9 * dark.sum() > served.sum()
    reach = ndimage.distance_transform_edt(~served, sampling=encoded.input_spacing())
    assert reach[grown.mask].max() <= 6.0  # the radius
    assert (grown.mask & ~dark).sum() < 0.5 * (grown.mask & dark).sum()  # mostly the dark region
    assert grown.volume_mm3 == pytest.approx(grown.mask.sum() * encoded.volume.voxel_volume_mm3)
    calls.clear()
    liver, with_host = predictor.predict(encoded, ["liver", "liver lesion"])
    assert calls == [["liver", "liver lesion"]] and np.array_equal(with_host.mask, grown.mask)  # reused
    assert not liver.extra and liver.present
    # no completion where the encoding kept no input image (a modality without the guided filter)
    encoded.guide = None
    assert np.array_equal(predictor.predict(encoded, ["liver lesion"])[0].mask, served)


def test_an_absent_lesion_costs_no_host_prompt(lesion_scan):
    predictor, encoded, calls, _, _ = lesion_scan
    predictor.label_growth = {"liver lesion": Growth(k=2.0, radius_mm=30.0), "spleen": Growth(k=2.0, radius_mm=4.0)}
    result, = predictor.predict(encoded, ["spleen"])  # spleen has no hosts, and no mask
    assert not result.present and calls == [["spleen"]]
    with pytest.raises(ValueError, match="Growth"):
        type(predictor)(predictor.net, predictor.text, predictor.vocab, label_growth={"liver lesion": {"k": 2}})


def test_growth_curves_score_each_setting_on_the_scans_holding_the_label(lesion_scan, phantom_studies, monkeypatch):
    from lib.data.studies_index import labelled_pairs
    from lib.data.vocab import Vocabulary
    from lib.inference import calibration

    predictor, encoded, _, dark, served = lesion_scan
    liver = predictor.vocab.resolve("liver")
    # every scan is the crafted one, and its 'liver lesion' truth is the dark region
    monkeypatch.setattr(predictor, "encode", lambda image: encoded)
    monkeypatch.setattr(type(liver), "mask", lambda self, lab: dark if self.name == "liver lesion" else lab > 0)
    pairs = labelled_pairs(phantom_studies)[:3]
    settings = [Growth(2.0, 30.0), Growth(2.0, 1.0)]
    vocab = Vocabulary.merge([predictor.vocab])
    curves = calibration.growth_curves(predictor, pairs, vocab, settings, progress=False)
    assert set(curves) == {"liver lesion"}
    base, scores = curves["liver lesion"]
    assert len(base) == 3 and base[0] < 0.8 and scores[settings[0]][0] > 0.95 > scores[settings[1]][0] > base[0]
    assert choose_growth(base, scores, 3, 0.01) == settings[0]
    assert predictor.label_growth == {}  # scored without the served completion, which is restored
