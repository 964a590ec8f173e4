#!/usr/bin/env bash
# The README's quick start (`make quickstart`): tiny GPT on complete Shakespeare, Muon vs MuonMVR (MVR1),
# both curves in runs/quickstart/loss.png. Its measured time: README, "Quick start". Re-running skips
# finished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
start=$(date +%s)
$PY -m data.shakespeare --out data_cache/shakespeare
for opt in muon muon_mvr1; do
    if [ -f "runs/quickstart/${opt}_s0/summary.json" ]; then
        echo "[quickstart] runs/quickstart/${opt}_s0 is complete: skipped"
    else
        $PY train.py experiment=quickstart optimizer="$opt" train.log_every=25 run_dir="runs/quickstart/${opt}_s0"
    fi
done
$PY scripts/compare.py runs/quickstart/muon_s0 runs/quickstart/muon_mvr1_s0 --out runs/quickstart/loss
echo "[quickstart] done in $(( $(date +%s) - start )) s: runs/quickstart/{muon_s0,muon_mvr1_s0}/metrics.jsonl, runs/quickstart/loss.{png,pdf,md}"
