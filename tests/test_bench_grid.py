"""bench-grid: the ground truth through the working grid and back, for both kinds of
training target."""

import json

from lib.cli import main


def test_bench_grid_reports_both_ceilings_and_the_shares_lose_less(tmp_path, phantom_studies):
    out = tmp_path / "grid.json"
    assert main(["bench-grid", "--studies", str(phantom_studies), "--out", str(out), "--limit", "1"]) == 0
    report = json.loads(out.read_text())
    assert report["working_spacing"] == 2.5 and len(report["cases"]) == 1  # configs/default.yaml
    nearest, linear = report["nearest"], report["linear"]
    assert set(nearest["per_prompt"]) == set(linear["per_prompt"]) and "liver" in linear["per_prompt"]
    assert 0.8 < nearest["mean_dice"] < linear["mean_dice"] <= 1.0
    assert nearest["mean_nsd"] > 0.9
