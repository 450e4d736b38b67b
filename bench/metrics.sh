#!/usr/bin/env bash
# AUROC on 10M binary and 1M x 10 multi-class samples: danling, then torchmetrics on the same data
# when a Python with torch and torchmetrics is available (set PYTHON to choose it).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo bench -q -p danling --bench metrics -- "$dir"
python=${PYTHON:-python3}
if "$python" -c "import torch, torchmetrics" 2>/dev/null; then
    for threads in 1 2; do
        "$python" bench/metrics_torchmetrics.py "$dir" --threads "$threads"
    done
else
    echo "torchmetrics is not importable by $python: its side was skipped" >&2
fi
