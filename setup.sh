#!/usr/bin/env bash
# Set up volseg in ./.venv: torch first (the build that fits this machine), then volseg and its tools.
# Idempotent and quick on a second run. Override the torch requirement with TORCH_SPEC, e.g.
#   TORCH_SPEC="torch==2.13.0" ./setup.sh           (default)
# On a CPU-only machine where pip would otherwise pull a CUDA build, install torch's CPU wheel into
# .venv first (PyTorch's install page gives the CPU index); this script then leaves it alone.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    pip install "$TORCH_SPEC"
fi
pip install -e ".[dev]"
.venv/bin/python -c "import torch, volseg; print(f'volseg ready: torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}')"
