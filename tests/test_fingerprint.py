"""Content fingerprints of volumes: how ``evaluate`` recognises a training scan under
another file name (phantom pools drawn with different seeds share their file names)."""

import torch
from monai.data import MetaTensor

from lib.data.preprocess import volume_fingerprint


def test_fingerprint_follows_the_voxels_not_the_container():
    g = torch.Generator().manual_seed(0)
    values = torch.rand(1, 12, 10, 8, generator=g) * 1000 - 500
    a = MetaTensor(values.clone(), affine=torch.diag(torch.tensor([0.8, 0.8, 2.5, 1.0], dtype=torch.float64)))
    b = MetaTensor(values.clone().double(), meta={"filename_or_obj": "other_name.nii.gz"})
    assert volume_fingerprint(a) == volume_fingerprint(b) == volume_fingerprint(values)
    changed = values.clone()
    changed[0, 3, 4, 5] += 1.0
    assert volume_fingerprint(changed) != volume_fingerprint(values)
    assert volume_fingerprint(values.reshape(1, 10, 12, 8)) != volume_fingerprint(values)  # same bytes, other shape
    assert len(volume_fingerprint(values)) == 16


def test_trained_cases_by_content_and_by_name_without_fingerprints(phantom_studies):
    from lib.data.preprocess import load_volume
    from lib.data.studies_index import labelled_pairs
    from lib.evaluation import trained_cases

    pairs = labelled_pairs(phantom_studies)
    one = pairs[1]
    meta = {"train_cases": [pairs[0][0]], "train_fingerprints": [volume_fingerprint(load_volume(one[1]))]}
    assert trained_cases(meta, pairs) == [one[0]]  # the fingerprints decide, not the listed name
    assert trained_cases({"train_cases": [pairs[0][0]]}, pairs) == [pairs[0][0]]  # older checkpoints
