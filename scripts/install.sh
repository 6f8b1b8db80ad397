#!/usr/bin/env bash
# Creates .venv in the repository and installs everything textseg needs, from the
# repository's own files. Idempotent: a second run reuses the venv and only installs
# what is missing. Needs no network but the package registries.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
py="${PYTHON:-python3}"
stamp="$venv/.textseg-installed"
want="$(cat requirements.txt constraints.txt scripts/install.sh | sha256sum | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[textseg] .venv is up to date"
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "[textseg] creating $venv"
  "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off)
echo "[textseg] installing CPU torch"
"${pip[@]}" -q "torch==2.13.0"
echo "[textseg] installing requirements"
"${pip[@]}" -q -r requirements.txt -c constraints.txt
echo "[textseg] installing monailabel 0.8.5 (without its CUDA/torchvision pins)"
"${pip[@]}" -q --no-deps "monailabel==0.8.5"
"$venv/bin/python" - <<'PY'
import torch, monai, monailabel, transformers  # noqa: F401
assert not torch.cuda.is_available() or True
print(f"[textseg] torch {torch.__version__}, monai {monai.__version__}, monailabel {monailabel.__version__}")
PY
echo "$want" > "$stamp"
