"""Tally lesions found by size and by contrast (scripts/lesion_sizes.py JSONs) for sz2_40_cal, win2_40_cal and win3_40_cal (the latter added in the eighteenth session).

Usage (repository root): python docs/results/cpu_window_20261207/lesion_tally.py
"""
import json, sys
def load(m, d):
    return json.load(open(f"{d}/lesions_{m}_val.json")) + json.load(open(f"{d}/lesions_{m}_dev.json"))
models = {"sz2_40_cal": load("sz2_40_cal", "docs/results/cpu_blob_20261207"),
          "win2_40_cal": load("win2_40_cal", "docs/results/cpu_window_20261207"),
          "win3_40_cal": load("win3_40_cal", "docs/results/cpu_window3_20261207")}
bins = [("liver lesion under 12.5 mm", lambda r: r["label"] == "liver lesion" and r["diameter_mm"] < 12.5),
        ("liver lesion 12.5-20 mm", lambda r: r["label"] == "liver lesion" and 12.5 <= r["diameter_mm"] < 20),
        ("liver lesion 20-50 mm", lambda r: r["label"] == "liver lesion" and r["diameter_mm"] >= 20),
        ("kidney cyst under 12.5 mm", lambda r: r["label"] == "kidney cyst" and r["diameter_mm"] < 12.5),
        ("kidney cyst 12.5-50 mm", lambda r: r["label"] == "kidney cyst" and r["diameter_mm"] >= 12.5),
        ("contrast under 1.5 s.d.", lambda r: -1.5 < r["contrast_sd"] <= 0),
        ("contrast 1.5-3 s.d.", lambda r: -3 < r["contrast_sd"] <= -1.5),
        ("contrast over 3 s.d.", lambda r: r["contrast_sd"] <= -3)]
for name, f in bins:
    cells = []
    for m, rows in models.items():
        sel = [r for r in rows if f(r)]
        found = sum(r["covered"] > 0.1 for r in sel)
        cells.append(f"{found} / {sum(r['covered'] for r in sel) / max(len(sel), 1):.2f}")
    print(f"| {name} | {len(sel)} | " + " | ".join(cells) + " |")
