#!/usr/bin/env bash
# The README's first command: set everything up (idempotent) and start the MONAI Label
# server for the textseg app on the built-in sample studies at http://127.0.0.1:8000.
#   STUDIES=DIR  use another studies folder     PORT=N  another port
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install.sh
py="$root/.venv/bin/python"
studies="${STUDIES:-$root/studies}"
port="${PORT:-8000}"
if [ -z "${STUDIES:-}" ]; then
  "$py" -m lib.cli sample-studies --out "$studies"
fi
if [ ! -f models/textseg_default.pt ]; then
  echo "[textseg] no bundled model: training one on the sample studies (a few minutes)"
  "$py" -m lib.cli train --studies "$studies" --out models/textseg_default.pt --config configs/default.yaml
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export MONAI_LABEL_TRACKING_ENABLED=false
export HF_HUB_OFFLINE=1
echo "[textseg] starting MONAI Label on http://127.0.0.1:$port (studies: $studies)"
exec "$py" -m monailabel.main start_server --app "$root/apps/textseg" --studies "$studies" \
  --conf models all --host 127.0.0.1 --port "$port"
