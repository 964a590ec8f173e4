#!/usr/bin/env bash
# The small-scale reproduction of all five figures on a CPU (results/small/study.yaml says which runs): the
# tiny GPT on complete Shakespeare, the papers' batches 512 / 128 scaled down to 16 / 4 sequences of 128
# tokens, every variant the figures need, three seeds; then the figures and the summary tables.
#
#     bash scripts/reproduce_small.sh               # runs what is missing, then results/small/figures/
#     DRY_RUN=1 bash scripts/reproduce_small.sh     # the plan only
#
# Re-running skips finished runs and resumes interrupted ones. Another size: copy the study file, edit it,
# and run `python scripts/run_study.py <your copy>`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
if [ -n "${DRY_RUN:-}" ]; then
    exec $PY scripts/run_study.py results/small/study.yaml --dry-run
fi
$PY -m data.shakespeare --out data_cache/shakespeare
$PY scripts/run_study.py results/small/study.yaml --parallel "${PARALLEL:-2}"
