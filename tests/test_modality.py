"""Telling CT from MR by intensities: whole phantoms, phantoms cropped inside the body, MR
in scanner units and z-scored."""

from __future__ import annotations

import torch

from lib.data.preprocess import guess_modality, load_volume


def _phantom(studies):
    return load_volume(str(sorted(studies.glob("*.nii.gz"))[0]))[0]


def test_a_whole_phantom_is_ct(phantom_studies):
    assert guess_modality(_phantom(phantom_studies)) == "CT"


def test_a_ct_cropped_inside_the_body_is_still_ct(phantom_studies):
    v = _phantom(phantom_studies)
    X, Y, Z = v.shape
    crop = v[X * 3 // 8 : X * 5 // 8, Y * 3 // 8 : Y * 5 // 8, Z // 4 : 3 * Z // 4]
    assert float(torch.quantile(crop.flatten().float(), 0.01)) > -500  # no air left: the old rule said MR
    assert guess_modality(crop) == "CT"


def test_mr_is_mr_in_scanner_units_and_z_scored():
    g = torch.Generator().manual_seed(0)
    head = torch.zeros(60, 60, 60)
    head[10:50, 10:50, 10:50] = 300 + 80 * torch.randn(40, 40, 40, generator=g).abs()
    assert guess_modality(head) == "MR"
    z = (head - head.mean()) / head.std()  # negative values, but by units, not tens
    assert float(z.min()) < 0
    assert guess_modality(z) == "MR"
    assert guess_modality(head * 10) == "MR"  # bright, but never negative
