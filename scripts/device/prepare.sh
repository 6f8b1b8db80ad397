#!/bin/bash
# Fill .gpu/ (git-ignored through .git/info/exclude) with what scripts/device/screen.sh needs on a
# GPU machine that has PyTorch but neither MONAI, nibabel nor the text encoder's weights:
# their wheels, the prompts' text features and the MRI sample. Run here, from the repo root.
set -euo pipefail
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
mkdir -p .gpu/whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl monai==1.6.1 nibabel==5.4.2
export PYTHONPATH=. HF_HUB_OFFLINE=1
[ -d bench/mri ] || .venv/bin/python -m lib.cli mri-sample --out bench/mri
[ -d bench/val_data ] || .venv/bin/python -m lib.cli phantoms --out bench/val_data --count 10 --seed 3000
rm -rf .gpu/mri && cp -r bench/mri .gpu/mri
.venv/bin/python scripts/device/make_text_cache.py .gpu/text_cache.pt bench/val_data bench/mri
