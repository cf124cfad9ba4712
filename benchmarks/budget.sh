#!/usr/bin/env bash
# Issue 25, item 7's budget check: does a 1M-update budget separate TD3+BC and IQL from BC on a
# dataset whose behaviour pack already meets the issue's levels (hopper-medium-v0: expert 104.7,
# medium 32.6 normalised), where 100k updates left all three level?  One seed (0), evaluated every
# 50k updates over 10 episodes and at the end over 100. The longest cells first: with two workers
# side by side IQL takes about 2.6 hours here, TD3+BC 1.8, then BC about 35 minutes on the freed
# worker (measured 2026-12-07), so start it at once; ALGOS= runs some of the cells.
#
#   bash benchmarks/budget.sh [GRID_DIR]        # default runs/budget (git-ignored)
#   DATASETS=walker2d-medium-v1 SEEDS=0,1 bash benchmarks/budget.sh runs/budget-walker
#   ALGOS=iql,bc bash benchmarks/budget.sh       # some of the cells
#
# Safe to kill: re-running resumes the unfinished cells from their last checkpoint (every 50k);
# finished cells are archived every 10 minutes in benchmarks/results/budget/cells (committed) and
# the report is written to benchmarks/results/budget/REPORT.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/budget}
DATASETS=${DATASETS:-hopper-medium-v0}
ALGOS=${ALGOS:-iql,td3bc,bc}
SEEDS=${SEEDS:-0}
STEPS=${STEPS:-1000000}
EVAL_EVERY=${EVAL_EVERY:-50000}
WORKERS=${WORKERS:-2}
RESULTS=benchmarks/results/budget
ARCHIVE=$RESULTS/cells

source benchmarks/grid_common.sh
grid_make_datasets "$DATASETS"
grid_restore "$OUT" "$ARCHIVE"
grid_export_loop "$OUT" "$ARCHIVE"
grid_run "$OUT" "$ALGOS" "$DATASETS"
grid_publish "$OUT" "$ARCHIVE" "$RESULTS"
echo "report: $RESULTS/REPORT.md"
