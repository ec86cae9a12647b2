#!/usr/bin/env bash
# Build a separate environment for the mmsegmentation backbone: mmseg 1.2.2 needs mmcv 2.1 compiled with
# its ops, and mmcv 2.1 does not compile against torch >= 2.14 (its setup.py forces C++17, newer torch
# headers need C++20). So this environment takes torch 2.13 and no torchvision (mmcv, mmengine and mmseg
# do not use it). Compiling mmcv takes ~25-30 min on 2 cores; pip caches the wheel for later runs.
#
#   backbones/mmseg/install_env.sh [ENV_DIR]      (default: .venv-mmseg in the repository root)
#   ENV_DIR/bin/python -m pytest tests/backbones/mmseg
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
env_dir="${1:-$root/.venv-mmseg}"
python3 -m venv "$env_dir"
pip=("$env_dir/bin/python" -m pip install --progress-bar off)
"${pip[@]}" "setuptools<81" wheel ninja packaging "torch==2.13.0"
MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" "${pip[@]}" --no-build-isolation "mmcv==2.1.0"
"${pip[@]}" -e "$root[mmseg]" pytest
