"""The evaluation summary on hand-made rows: organ and lesion means, the absent-prompt rate
and which absent prompts fired, the paraphrase gap."""

import pytest

from lib.evaluation import summarize


def row(case, label, present, fired=True, dice=None, kind="canonical", prompt=None, u=0.1):
    r = {"case": case, "label": label, "prompt": prompt or label, "kind": kind, "present": present,
         "predicted_present": fired, "uncertainty": u, "composite": False}
    if present:
        r["dice"], r["nsd"] = dice, dice
    return r


def test_summary_names_the_absent_prompts_that_fired():
    rows = [row("a", "liver", True, dice=0.9), row("b", "liver", True, dice=0.7),
            row("a", "liver", True, dice=0.8, kind="paraphrase", prompt="hepar"),
            row("a", "liver lesion", True, dice=0.5),
            row("b", "liver lesion", False, fired=True, u=0.21), row("a", "spleen", False, fired=False)]
    s = summarize(rows)
    assert s["mean_dice"] == pytest.approx(0.8) and s["lesion_dice"] == pytest.approx(0.5)
    assert s["absent_prompts"] == 2 and s["absent_fp_rate"] == pytest.approx(0.5)
    assert s["absent_firings"] == [{"case": "b", "prompt": "liver lesion", "uncertainty": 0.21}]
    assert s["paraphrase_gap"] == pytest.approx(0.1)
    assert summarize([r for r in rows if r["present"]])["absent_firings"] == []
    assert "lesion_detection" not in s  # only with lesion rows (tests/test_lesion_detection.py)
