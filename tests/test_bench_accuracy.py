"""bench-accuracy's pools: the harder training mix, its folder, and the check that a given
checkpoint was trained on that pool only (by content: the pools share file names)."""

import filecmp

import pytest

from lib.bench import accuracy
from lib.bench.accuracy import HARD_POOL_FRACTION, TRAIN_SEED, check_pool_model, training_pool
from lib.data.phantoms import DEFAULT_HARD_FRACTION, write_phantoms
from lib.data.preprocess import load_volume, volume_fingerprint
from lib.data.studies_index import labelled_pairs


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench")
    return work, training_pool(work, 2, 1)


def test_pool_draws_the_first_phantoms_from_the_hard_mix_and_the_rest_from_the_default(pool, tmp_path):
    work, folder = pool
    assert folder == work / "train_hard1"
    assert [p[0] for p in labelled_pairs(folder)] == ["phantom_0000", "phantom_0001"]
    write_phantoms(tmp_path / "hard", 1, TRAIN_SEED, hard_fraction=HARD_POOL_FRACTION, progress=False)
    write_phantoms(tmp_path / "easy", 1, TRAIN_SEED, start=1, progress=False)
    assert filecmp.cmp(folder / "phantom_0000.nii.gz", tmp_path / "hard" / "phantom_0000.nii.gz", shallow=False)
    assert filecmp.cmp(folder / "phantom_0001.nii.gz", tmp_path / "easy" / "phantom_0001.nii.gz", shallow=False)


def test_pool_asks_the_generator_for_the_hard_mix_then_the_default(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(accuracy, "write_phantoms",
                        lambda folder, count, seed, start=0, hard_fraction=DEFAULT_HARD_FRACTION:
                        calls.append((count, seed, start, hard_fraction)))
    assert training_pool(tmp_path, 160, 80) == tmp_path / "train_hard80"
    assert calls == [(80, TRAIN_SEED, 0, HARD_POOL_FRACTION), (80, TRAIN_SEED, 80, DEFAULT_HARD_FRACTION)]
    calls.clear()
    assert training_pool(tmp_path, 40, 0) == tmp_path / "train"  # the pool of earlier reports
    assert calls == [(40, TRAIN_SEED, 0, DEFAULT_HARD_FRACTION)]


def test_pool_is_written_once_and_its_size_is_checked(pool):
    work, folder = pool
    stamp = (folder / "phantom_0001.nii.gz").stat().st_mtime_ns
    assert training_pool(work, 2, 1) == folder
    assert (folder / "phantom_0001.nii.gz").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="hard phantoms"):
        training_pool(work, 2, 3)


def test_a_checkpoint_must_have_been_trained_on_this_pool_only(pool, tmp_path):
    _, folder = pool
    pairs = labelled_pairs(folder)
    prints = [volume_fingerprint(load_volume(p[1])) for p in pairs]
    meta = {"train_cases": ["phantom_0000", "phantom_0001", "mni152_t1"], "train_fingerprints": prints + ["mri"]}
    check_pool_model(meta, tmp_path / "m.pt", pairs, test_pairs=[])  # the MRI sample aside: accepted
    # same names, another pool's content: refused
    other = {**meta, "train_fingerprints": [prints[0], "not-this-pool"]}
    with pytest.raises(ValueError, match="only 1 of them"):
        check_pool_model(other, tmp_path / "m.pt", pairs, test_pairs=[])
    # a test scan among the training volumes: refused
    with pytest.raises(ValueError, match="test phantoms"):
        check_pool_model(meta, tmp_path / "m.pt", pairs, test_pairs=pairs[1:])
    # older checkpoints without fingerprints: by name
    check_pool_model({"train_cases": ["phantom_0001"]}, tmp_path / "m.pt", pairs, test_pairs=[])
    with pytest.raises(ValueError, match="other cases"):
        check_pool_model({"train_cases": ["phantom_0007"]}, tmp_path / "m.pt", pairs, test_pairs=[])
    with pytest.raises(ValueError, match="no training cases"):
        check_pool_model({}, tmp_path / "m.pt", pairs, test_pairs=[])
