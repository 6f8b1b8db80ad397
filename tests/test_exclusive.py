"""The exclusivity clean-up: hosts and competitors learnt from label maps, dropping a lesion
mask's pieces that a neighbouring organ claims, and the predictor applying it (opt-in)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from lib.data.label_neighbours import Neighbours, label_neighbours, neighbours_from_json, neighbours_to_json, shell_labels
from lib.data.label_stats import label_stats
from lib.data.vocab import Vocabulary
from lib.inference.postprocess import drop_claimed_pieces

VOCAB = Vocabulary.from_json({"labels": {
    "liver": {"index": 1}, "gallbladder": {"index": 2}, "spleen": {"index": 3}, "liver lesion": {"index": 4},
    "brain": {"index": 5, "modality": "MR"}}})


def _maps(n: int = 4) -> list[np.ndarray]:
    """Liver with two lesions inside (so the lesion label is not one piece), a gallbladder
    touching the liver, a spleen far from it, an MR label touching the liver."""
    maps = []
    for i in range(n):
        lab = np.zeros((30, 30, 20), np.int16)
        lab[2:16, 2:16, 2:12] = 1
        lab[4:6, 4:6, 4:6] = 4
        lab[10:12, 10:12, 4:6] = 4
        lab[16:19, 5:9, 3:7] = 2          # touches the liver's x = 15 face
        lab[24:28, 24:28, 10:14] = 3      # far away
        if i == 0:
            lab[2:6, 16:18, 2:6] = 5      # another modality's label touching the liver once
        maps.append(lab)
    return maps


def test_shell_labels_are_shares_of_the_one_voxel_shell():
    lab = np.zeros((9, 9, 9), np.int16)
    lab[2:7, 2:7, 2:7] = 1
    lab[4, 4, 4] = 4                                       # a single voxel deep in the liver
    assert shell_labels(lab, 4) == {1: 1.0}                # its 26 neighbours are all liver
    lab[6:9, 4, 4] = 4                                     # now also a piece on the liver's edge
    shares = shell_labels(lab, 4)
    assert set(shares) == {0, 1} and sum(shares.values()) == pytest.approx(1.0) and shares[1] > 0.5
    assert shell_labels(lab, 7) == {}


def test_hosts_and_competitors_come_from_contact_in_the_label_maps():
    maps = _maps()
    stats = label_stats(maps, VOCAB, voxel_mm3=8.0)
    nb = label_neighbours(maps, VOCAB, stats)
    assert set(nb) == {"liver lesion"}                     # the one enclosed label; organs are one piece
    assert nb["liver lesion"] == Neighbours(hosts=("liver",), competitors=("gallbladder",))  # not the far spleen, not MR
    assert neighbours_from_json(neighbours_to_json(nb)) == nb


def test_a_one_piece_label_inside_another_is_not_enclosed():
    maps = [m.copy() for m in _maps()]
    for m in maps:
        m[10:12, 10:12, 4:6] = 1                           # one lesion per case: one piece, like an organ
    nb = label_neighbours(maps, VOCAB, label_stats(maps, VOCAB, voxel_mm3=8.0))
    assert nb == {}


def test_a_host_must_hold_half_the_shell_in_enough_cases():
    maps = _maps(10)
    for m in maps:
        m[m == 4] = 1
        m[0:2, 20:22, 15:17] = 4                           # lesions outside any organ
        m[0:2, 24:26, 15:17] = 4
    stats = label_stats(maps, VOCAB, voxel_mm3=8.0)
    assert stats["liver lesion"].single_component == 0.0
    assert label_neighbours(maps, VOCAB, stats) == {}      # no host, so nothing to exclude


def test_drop_claimed_pieces_drops_only_pieces_claimed_beyond_the_share():
    p = torch.zeros(12, 12, 12)
    p[1:4, 1:4, 1:4] = 0.9                                 # piece A: 27 voxels
    p[7:10, 7:10, 7:10] = 0.8                              # piece B: 27 voxels
    claimed = np.zeros((12, 12, 12), bool)
    claimed[1:4, 1:4, 1:2] = True                          # a third of A
    claimed[7:10, 7:8, 7:8] = True                         # 3 of B's 27 voxels (11%)
    out = drop_claimed_pieces(p, 0.5, claimed, 0.2)
    assert not (out[1:4, 1:4, 1:4] > 0).any()              # A dropped whole
    assert torch.equal(out[7:10, 7:10, 7:10], p[7:10, 7:10, 7:10])  # B kept whole
    assert torch.equal(p[1:4, 1:4, 1:4], torch.full((3, 3, 3), 0.9))  # the input is not changed
    assert drop_claimed_pieces(p, 0.5, claimed, 0.5) is p  # neither piece is half claimed
    assert drop_claimed_pieces(p, 0.5, np.zeros_like(claimed), 0.2) is p
    with pytest.raises(ValueError, match="share"):
        drop_claimed_pieces(p, 0.5, claimed, 0.0)


@pytest.fixture
def crafted(crafted_predictor):
    """A liver lesion mask with one piece inside the liver and one on the gallbladder."""
    def draw(shape):
        maps = {name: torch.zeros(shape) for name in ("liver", "gallbladder", "liver lesion", "spleen")}
        maps["liver"][2:14, 2:14, 2:10] = 0.9
        maps["gallbladder"][14:18, 4:8, 3:7] = 0.9
        maps["liver lesion"][5:8, 5:8, 4:7] = 0.8              # a true lesion inside the liver
        maps["liver lesion"][14:17, 4:7, 3:6] = 0.7            # a false one on the gallbladder
        maps["spleen"][shape[0] - 8:shape[0] - 3, 2:6, 2:6] = 0.9
        return maps

    predictor, encoded, calls, maps = crafted_predictor(draw, single_component={"liver lesion": 0.2})
    predictor.label_neighbours = {"liver lesion": Neighbours(hosts=("liver",), competitors=("gallbladder",))}
    return predictor, encoded, calls, maps


def _pieces(mask: np.ndarray) -> int:
    from scipy import ndimage

    return ndimage.label(mask, structure=np.ones((3, 3, 3)))[1]


def test_exclusivity_is_off_by_default(crafted):
    predictor, encoded, calls, maps = crafted
    assert predictor.cfg.exclusive_share == 0.0
    (lesion,) = predictor.predict(encoded, ["liver lesion"])
    assert calls == [["liver lesion"]] and _pieces(lesion.mask) == 2


def test_exclusivity_drops_the_piece_on_the_competitor_and_keeps_the_one_in_the_host(crafted):
    predictor, encoded, calls, maps = crafted
    predictor.cfg = replace(predictor.cfg, exclusive_share=0.2)
    (lesion,) = predictor.predict(encoded, ["liver lesion"])
    assert calls == [["liver lesion"], ["gallbladder"]]    # the competitor computed once, the host never
    assert lesion.present and _pieces(lesion.mask) == 1
    both = predictor.predict(encoded, ["gallbladder", "liver lesion"])
    assert calls[-1] == ["gallbladder", "liver lesion"]    # a competitor in the request is reused
    assert _pieces(both[1].mask) == 1 and np.array_equal(both[1].mask, lesion.mask)
    assert both[0].present                                 # the competitor itself is untouched
    assert not (lesion.mask & both[0].mask).any()          # the kept piece is the one in the liver


def test_exclusivity_costs_nothing_without_a_lesion_mask(crafted):
    predictor, encoded, calls, maps = crafted
    predictor.cfg = replace(predictor.cfg, exclusive_share=0.2)
    (spleen,) = predictor.predict(encoded, ["spleen"])
    assert calls == [["spleen"]] and spleen.present


def test_exclusivity_can_empty_a_lesion_mask_that_lies_only_on_the_competitor(crafted):
    predictor, encoded, calls, maps = crafted
    predictor.cfg = replace(predictor.cfg, exclusive_share=0.2)
    maps["liver lesion"][5:8, 5:8, 4:7] = 0.0              # only the false piece is left
    (lesion,) = predictor.predict(encoded, ["liver lesion"])
    assert not lesion.present and not lesion.mask.any()


def test_exclusive_share_is_validated():
    from lib.config import ModelConfig

    with pytest.raises(ValueError, match="exclusive_share"):
        ModelConfig(exclusive_share=1.5)


def test_the_app_setting_sets_the_served_models_clean_up(tmp_path, tiny_checkpoint, caplog):
    from lib.app_config import AppSettings
    from lib.infers.model_store import ModelStore

    assert AppSettings().exclusive_share == 0.0
    assert AppSettings.from_conf({"exclusive_share": "0.2"}).exclusive_share == 0.2
    with pytest.raises(ValueError, match="exclusive_share"):
        AppSettings.from_conf({"exclusive_share": "2"})
    store = ModelStore(tmp_path / "textseg.pt", tiny_checkpoint, exclusive_share=0.2)
    predictor, _ = store.predictor()
    assert predictor.cfg.exclusive_share == 0.2
    assert "no label neighbours" in caplog.text               # the untrained tiny checkpoint has none
    assert ModelStore(tmp_path / "textseg.pt", tiny_checkpoint).predictor()[0].cfg.exclusive_share == 0.0
