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
# nnU-Net model folders are built with dynamic_network_architectures, as nnU-Net builds them. Its U-Nets need
# only torch; its declared timm dependency (for vision transformers volseg does not build) would pull torchvision
# and with it a different torch build, so it is installed without dependencies.
.venv/bin/python -c "import dynamic_network_architectures" 2>/dev/null \
    || pip install --no-deps "dynamic-network-architectures==0.4.4"
# The tests of `volseg serve` drive it with MONAI Label's own clients (MONAILabelClient and the Slicer module's
# client.py, shipped in this wheel), which need only requests: the wheel without MONAI Label's server stack.
.venv/bin/python -c "import monailabel" 2>/dev/null || pip install --no-deps "monailabel==0.8.5"

# Debian tools the tests run for real: dciodvfy (dicom3tools) checks every DICOM SEG volseg writes,
# Orthanc with its DICOMweb plugin is the PACS of the PACS tests, chromium opens the review page and OHIF,
# npm fetches their viewers, nginx serves OHIF beside Orthanc's DICOMweb. Installed where this is root with
# apt; elsewhere those tests skip and say why (install them as the README says), and under CI=true they fail, naming the tool (tests/conftest.py).
DEBIAN_PACKAGES=()
command -v dciodvfy >/dev/null || DEBIAN_PACKAGES+=(dicom3tools)
command -v Orthanc >/dev/null || DEBIAN_PACKAGES+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || DEBIAN_PACKAGES+=(orthanc-dicomweb)
command -v chromium >/dev/null || DEBIAN_PACKAGES+=(chromium)
command -v npm >/dev/null || DEBIAN_PACKAGES+=(npm)
command -v nginx >/dev/null || DEBIAN_PACKAGES+=(nginx-light)
if [ ${#DEBIAN_PACKAGES[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${DEBIAN_PACKAGES[*]} (apt)"
        apt-get install -y -q "${DEBIAN_PACKAGES[@]}" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${DEBIAN_PACKAGES[@]}" >/dev/null; } \
            || echo "warning: could not install ${DEBIAN_PACKAGES[*]}; the tests that need them will skip (under CI=true: fail, naming the tool)"
        # the packages may start a system Orthanc and nginx on the default ports; the tests start their own elsewhere
        { systemctl disable --now orthanc || service orthanc stop; } >/dev/null 2>&1 || true
        { systemctl disable --now nginx || service nginx stop; } >/dev/null 2>&1 || true
    else
        echo "note: ${DEBIAN_PACKAGES[*]} missing and not root with apt; the tests that need them will skip (under CI=true: fail, naming the tool)"
    fi
fi
# The review page's viewer (NiiVue, pinned, checksum checked) into ~/.cache/volseg; pages without it show pictures
.venv/bin/python -m volseg.report.viewer
# OHIF, the PACS viewer the DICOM outputs are checked in (pinned, checksum checked) into ~/.cache/volseg
.venv/bin/python pipelines/ohif_orthanc.py fetch \
    || echo "warning: OHIF not fetched; tests/test_ohif.py will skip (under CI=true: fail, naming it)"
.venv/bin/python -c "import torch, volseg; print(f'volseg ready: torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}')"
