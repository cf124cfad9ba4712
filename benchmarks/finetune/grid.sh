#!/usr/bin/env bash
# Issue 24's results: offline-to-online fine-tuning through `offrl bench run --online-steps`, on
# two of offrl's MuJoCo datasets (one medium, one medium-replay), each algorithm 3 seeds:
# OFFLINE_STEPS offline updates, then ONLINE_STEPS environment steps evaluated every EVAL_EVERY;
# the report (benchmarks/results/finetune/REPORT.md) has the before -> after table, the initial
# drop and the regret. Cost per dataset and seed, measured at one thread (see
# benchmarks/results/finetune/NOTES.md): IQL and AWAC ~8 min, ReBRAC ~13, Cal-QL ~70 (CQL's ten
# sampled actions make ~7 GFLOP an update, and there are 30k), Balanced Replay ~2.5 h (its five
# offline CQL members are 50k such updates). About 20 core-hours in all: 10 hours here with
# WORKERS=2, run across sessions.
# Safe to kill: re-running the same command runs only the unfinished cells, each resuming from
# its own checkpoints (offline phase and online phase). Finished cells' results (no
# checkpoints) go to benchmarks/results/finetune/cells, which is committed and restored from.
#
#   bash benchmarks/finetune/grid.sh [GRID_DIR]     # default runs/finetune-grid (git-ignored)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/finetune-grid}
DATASETS=${DATASETS:-hopper-medium-v0,walker2d-medium-replay-v1}
ALGOS=${ALGOS:-iql,awac,rebrac,calql,balanced_replay}
OFFLINE_STEPS=${OFFLINE_STEPS:-10000}
ONLINE_STEPS=${ONLINE_STEPS:-20000}
EVAL_EVERY=${EVAL_EVERY:-2000}
WORKERS=${WORKERS:-1}
ARCHIVE=benchmarks/results/finetune/cells
RESULTS=benchmarks/results/finetune

source benchmarks/grid_common.sh
grid_make_datasets "$DATASETS"
grid_restore "$OUT" "$ARCHIVE"
grid_export_loop "$OUT" "$ARCHIVE"
# Cheapest algorithms first, on both datasets, so an interrupted grid already has a table.
for algo in ${ALGOS//,/ }; do
    STEPS=$OFFLINE_STEPS grid_run "$OUT" "$algo" "$DATASETS" --online-steps "$ONLINE_STEPS"
    grid_publish "$OUT" "$ARCHIVE" "$RESULTS"
done
echo "report: $RESULTS/REPORT.md"
