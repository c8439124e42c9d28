#!/usr/bin/env bash
# The wheels volseg needs on a lent GPU machine that its image lacks, downloaded here into .gpu_wheels/ (ignored
# by git) to travel with the call (`carry: [".gpu_wheels"]`) and be installed there without an index: that
# machine reaches no registry. Its image has Python 3.12 with PyTorch (CUDA), numpy, scipy, scikit-image,
# typer, rich, PyYAML and matplotlib; it lacks MONAI, nibabel, pydicom, ISA-L and nnU-Net's network library.
# SimpleITK (53 MB) stays behind: the check reads NIfTI only, and volseg imports SimpleITK only for
# NRRD/MHA/DICOM. The versions are this checkout's own (.venv), so the GPU runs what the suite tested.
#
#   bash benchmarks/gpu_wheels.sh    # then: docs/gpu.md, "Running the check"
#
# Last, the size the call carries (tracked files + the wheels; the limit is 64 MiB), written to
# benchmarks/results/gpu_carry.json for docs/gpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
packages=(monai nibabel pydicom isal dynamic_network_architectures)
pins=()
for p in "${packages[@]}"; do
    pins+=("$p==$("$python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$p")")
done
rm -rf .gpu_wheels
"$python" -m pip download --quiet --no-deps --only-binary=:all: --dest .gpu_wheels \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform any "${pins[@]}"
"$python" benchmarks/gpu_carry.py
