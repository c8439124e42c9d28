#!/usr/bin/env bash
# Train the default model: 3D U-Net on MSD Task04 hippocampus (220 cases; the 10 bundled test cases
# held out), evaluate it on those 10, and install it as volseg/pretrained/hippocampus-mri/model.pt.
# Usage: pipelines/train_default_model.sh [MSD_TASK04_FOLDER] [RUN_DIR]     (about 40 min on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-../shared/data/msd_task04_hippocampus}
RUN=${2:-runs/default_hippocampus_3d}
VOLSEG=${VOLSEG:-.venv/bin/volseg}
PY=${PY:-.venv/bin/python}

mkdir -p "$RUN"
$PY pipelines/hippocampus_manifest.py "$SRC" "$RUN/manifest.csv"
start=$(date +%s)
$VOLSEG train --config configs/hippocampus_3d.yaml --manifest "$RUN/manifest.csv" --output "$RUN/train" \
    $( [ -f "$RUN/train/last.pt" ] && echo --resume )
echo "training wall time: $(( $(date +%s) - start )) s" | tee "$RUN/train_time.txt"
$VOLSEG infer "$RUN/manifest.csv" --split test --model "$RUN/train" -o "$RUN/test_pred" --overwrite
$VOLSEG evaluate --pred "$RUN/test_pred" --manifest "$RUN/manifest.csv" --split test \
    --config configs/hippocampus_3d.yaml -o "$RUN/test_metrics.csv"
$PY -c "from volseg.runtime.checkpoint import slim_checkpoint; slim_checkpoint('$RUN/train', 'volseg/pretrained/hippocampus-mri/model.pt')"
echo "installed volseg/pretrained/hippocampus-mri/model.pt"
