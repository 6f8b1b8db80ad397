"""Pool evaluation JSONs and print their summary, the absent prompts that fired and every lesion row.

Usage (repository root): PYTHONPATH=. python docs/results/cpu_cut_20261206/pool_rows.py A.json B.json ...
Case ids are prefixed with their file name, so that pools sharing phantom names stay apart.
"""
import json, sys
from lib.evaluation import summarize, LESION_LABELS
rows = []
for f in sys.argv[1:]:
    for r in json.load(open(f))["rows"]:
        rows.append({**r, "case": f.split("/")[-1] + ":" + str(r.get("case"))})
s = summarize(rows)
print(json.dumps({k: v for k, v in s.items() if k != "per_prompt"}, indent=1))
print("per_prompt", {k: (round(v["dice"], 3), v["n"]) for k, v in s["per_prompt"].items()})
absent = [r for r in rows if not r["present"]]
print("firings", sum(r["predicted_present"] for r in absent), "/", len(absent))
for r in absent:
    if r["predicted_present"]:
        print("  FIRE", r["case"], r["label"], r["kind"], round(r["uncertainty"], 3))
for r in rows:
    if r["present"] and r["label"] in LESION_LABELS and r["kind"] == "canonical":
        print("  LES", r["case"], r["label"], round(r["dice"], 3), r["predicted_present"], round(r["uncertainty"], 3))
