#!/usr/bin/env bash
# The small-scale reproduction of all five figures on a CPU: the tiny GPT on the quick-start corpus
# (complete Shakespeare), the papers' batches 512 / 128 scaled down 4:1 to 16 / 4 sequences of 128 tokens,
# every variant the figures need, SEEDS seeds each; then the figures and the summary table.
#
#     bash scripts/reproduce_small.sh                       # sweep + figures into results/small
#     STEPS=100 SEEDS="0 1" bash scripts/reproduce_small.sh # a shorter check
#     DRY_RUN=1 bash scripts/reproduce_small.sh             # print the plan only
#
# Re-running skips finished runs and resumes interrupted ones (scripts/sweep.py), so it can be stopped and
# restarted at will. Unique runs: 10 variants x seeds (Gluon at B=16 serves figs. 1, 3 and 4); the MVR2/MVR3
# variants take two gradient passes a step. Time one run before changing the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"

RESULTS=${RESULTS:-results/small}
SEEDS=${SEEDS:-0 1 2}
STEPS=${STEPS:-120}
VAL_EVERY=${VAL_EVERY:-20}
VAL_TOKENS=${VAL_TOKENS:-16384}   # 128 validation sequences: the full 131072 would cost ~20 training steps per eval
LARGE=${LARGE:-16}                 # stands for B=512
SMALL=${SMALL:-4}                  # stands for B=128
PARALLEL=${PARALLEL:-2}            # concurrent runs; OMP threads are split between them

SWEEP=(--results "$RESULTS" --seeds $SEEDS --large-batch "$LARGE" --small-batch "$SMALL" --parallel "$PARALLEL" --drop-ckpt
       -- model=tiny data=shakespeare "data.val_tokens=$VAL_TOKENS" "train.steps=$STEPS"
       "train.val_every=$VAL_EVERY" "train.ckpt_every=$VAL_EVERY" train.max_micro_seqs=16 train.log_every=25)

if [ -n "${DRY_RUN:-}" ]; then
    exec $PY scripts/sweep.py --dry-run "${SWEEP[@]}"
fi
start=$(date +%s)
$PY -m data.shakespeare --out data_cache/shakespeare
$PY scripts/sweep.py "${SWEEP[@]}"
$PY scripts/make_figures.py --results "$RESULTS" --seeds $SEEDS --large-batch "$LARGE" --small-batch "$SMALL"
echo "[reproduce_small] done in $(( $(date +%s) - start )) s: $RESULTS/figures/{fig1,fig2,fig3,fig4,muon_mvr}.{png,pdf}, summary.csv, summary.md"
