"""labels.json vocabulary: lookup, composites, validation."""

import numpy as np
import pytest

from lib.data.vocab import LabelEntry, Vocabulary, normalize_prompt

DATA = {"version": 1, "labels": {
    "left kidney": {"index": 3, "modality": "CT", "synonyms": ["kidney (left)", "L kidney"], "eval_synonyms": ["sinistral kidney"]},
    "right kidney": {"index": 4, "modality": "CT", "synonyms": ["kidney (right)"]},
    "kidneys": {"parts": [3, 4], "modality": "CT", "synonyms": ["both kidneys"]},
    "left hippocampus": {"index": 101, "modality": "MR"},
}}


def test_resolve_names_synonyms_and_held_out_paraphrases():
    v = Vocabulary.from_json(DATA)
    assert v.resolve("Kidney (LEFT)").name == "left kidney"
    assert v.resolve("  l kidney. ").name == "left kidney"
    assert v.resolve("sinistral kidney").name == "left kidney"
    assert v.resolve("spleen") is None
    assert normalize_prompt("  Left_Kidney ;") == "left kidney"


def test_composite_mask_and_index_table():
    v = Vocabulary.from_json(DATA)
    lab = np.array([0, 3, 4, 101])
    assert v["kidneys"].mask(lab).tolist() == [False, True, True, False]
    assert v.index_to_name() == {3: "left kidney", 4: "right kidney", 101: "left hippocampus"}
    assert v.present(lab) == ["left kidney", "right kidney", "kidneys", "left hippocampus"]
    assert v.names(modality="CT", composite=False) == ["left kidney", "right kidney"]
    assert v["left kidney"].train_prompts == ("left kidney", "kidney (left)", "L kidney")


def test_round_trip_and_merge(tmp_path):
    v = Vocabulary.from_json(DATA)
    v.save(tmp_path)
    assert Vocabulary.load(tmp_path).to_json() == v.to_json()
    extra = Vocabulary({"spleen": LabelEntry("spleen", (2,), "CT")})
    assert len(Vocabulary.merge([v, extra])) == 5
    clash = Vocabulary({"spleen": LabelEntry("spleen", (9,), "CT")})
    with pytest.raises(ValueError, match="spleen"):
        Vocabulary.merge([extra, clash])


@pytest.mark.parametrize("bad, match", [
    ({"labels": {"x": {"modality": "CT"}}}, "exactly one"),
    ({"labels": {"x": {"index": 0}}}, "positive"),
    ({"labels": {"x": {"index": 1, "modality": "PET"}}}, "modality"),
    ({"labels": {"x": {"index": 1}, "y": {"index": 1}}}, "share"),
    ({"nolabels": {}}, "labels"),
])
def test_invalid_files_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        Vocabulary.from_json(bad)
