#!/usr/bin/env bash
# Create .venv and install ssl_ctx (plus the example plug-ins and test tools) with the torch / torchvision pair
# pinned in constraints.txt (on x86_64 Linux pip's build of that pair is the CUDA one; it runs on the CPU too).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test]" -e plugins/rotation_pretext -e plugins/knn_probe -e plugins/mae_pretext
echo "installed: $(.venv/bin/python -c "from importlib.metadata import version as v; print('torch', v('torch'), 'torchvision', v('torchvision'))")"
