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
