"""Pool the lesion-wise rows of several `evaluate` reports into one detection summary.

Usage: PYTHONPATH=. python docs/results/cpu_lesions_20261207/pool_detection.py OUT.json REPORT.json [REPORT.json ...]
"""
import json
import sys

from lib.lesion_detection import detection_markdown, detection_summary

rows = [r for path in sys.argv[2:] for r in json.load(open(path))["lesions"]]
summary = detection_summary(rows)
json.dump({"reports": sys.argv[2:], "lesion_detection": summary}, open(sys.argv[1], "w"), indent=1)
print(detection_markdown(summary), end="")
