#!/usr/bin/env bash
# The README's test command: the whole test suite (slow tests included) on the CPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HF_HUB_OFFLINE=1 MONAI_LABEL_TRACKING_ENABLED=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m pytest -q "$@"
