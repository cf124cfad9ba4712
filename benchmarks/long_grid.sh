#!/usr/bin/env bash
# Issue 25's longer-budget table: BC, TD3+BC, IQL and ReBRAC at 100k gradient steps (STEPS), 3
# seeds, on offrl's medium / medium-replay / medium-expert datasets, with d3rlpy 2.8.1's TD3+BC
# and IQL on the same files, seeds and budget; evaluated every 10k steps over 10 episodes and at
# the end over 100 (the report's last / best / final columns). ReBRAC takes its per-task
# coefficients (CORL's, for the dataset's D4RL name: --task-defaults); the others their defaults.
#
# Which datasets: DATASETS, default the nine medium / medium-replay / medium-expert sets of the
# packs that meet issue 25's levels (BEHAVIOUR.md): Hopper's -v0 (expert 104.7 normalised),
# HalfCheetah's and Walker2d's retrained -v1 (92.7 and 99.5), one dataset at a time, Hopper first:
#
#   bash benchmarks/long_grid.sh [GRID_DIR]        # default runs/long-grid (git-ignored)
#   DATASETS=hopper-medium-v0 bash benchmarks/long_grid.sh   # fewer datasets, same grid
#   ALGOS=bc,td3bc PEER_ALGOS= bash benchmarks/long_grid.sh  # fewer algorithms, no d3rlpy
#
# Cost per dataset, from `offrl bench speed` at one thread (SPEED.md): BC ~3 min a cell, TD3+BC
# ~7, IQL ~12, ReBRAC ~55 (batch 1024, a 3-layer LayerNorm critic), d3rlpy's two about as much
# again as offrl's TD3+BC and IQL; about 5 core-hours a dataset, 2.5 hours here with WORKERS=2.
# Cheapest first, dataset by dataset, so an interrupted grid already has a table.
#
# Safe to kill: re-running the same command runs only the unfinished cells, each from its last
# checkpoint, and builds only the datasets that still have cells to run. Finished cells (no
# checkpoints) are exported to benchmarks/results/long/cells, which is committed and restored
# from, every 10 minutes and after each dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/long-grid}
NINE=hopper-medium-v0,hopper-medium-replay-v0,hopper-medium-expert-v0
NINE+=,halfcheetah-medium-v1,halfcheetah-medium-replay-v1,halfcheetah-medium-expert-v1
NINE+=,walker2d-medium-v1,walker2d-medium-replay-v1,walker2d-medium-expert-v1
DATASETS=${DATASETS:-$NINE}
ALGOS=${ALGOS:-bc,td3bc,iql,rebrac}
PEER_ALGOS=${PEER_ALGOS-td3plusbc,iql}  # PEER_ALGOS= (empty): offrl's cells only
STEPS=${STEPS:-100000}
EVAL_EVERY=${EVAL_EVERY:-10000}
WORKERS=${WORKERS:-2}
SEEDS=${SEEDS:-0,1,2}  # grid_run's seeds, which finished() checks
RESULTS=benchmarks/results/long
ARCHIVE=$RESULTS/cells

source benchmarks/grid_common.sh
grid_restore "$OUT" "$ARCHIVE"
grid_export_loop "$OUT" "$ARCHIVE"
run() {  # offrl's cells: algorithms $1 on datasets $2, then extra flags
    grid_run "$OUT" "$1" "$2" --task-defaults rebrac "${@:3}"
}
finished() {  # every cell of dataset $1, offrl's and d3rlpy's, has its final.json
    local algo seed
    local peers=${PEER_ALGOS:+$(printf 'd3rlpy-%s ' ${PEER_ALGOS//,/ })}
    for algo in ${ALGOS//,/ } $peers; do
        for seed in ${SEEDS//,/ }; do
            [ -f "$OUT/$1/$algo/s$seed/final.json" ] || return 1
        done
    done
}
# The manifest first, so that partial reports list what has not run yet.
run "$ALGOS" "$DATASETS" --dry-run > /dev/null
for ds in ${DATASETS//,/ }; do
    # A dataset is built (minutes, on a bare machine) only when some of its cells are left.
    if finished "$ds"; then continue; fi
    grid_make_datasets "$ds"
    run "$ALGOS" "$ds"
    if [ -z "$PEER_ALGOS" ]; then
        :
    elif [ -x benchmarks/.venv-d3rlpy/bin/python ]; then
        .venv/bin/python benchmarks/d3rlpy/grid.py --grid "$OUT" --algos "$PEER_ALGOS" \
            --datasets "$ds" --workers "$WORKERS" || echo "some d3rlpy cells failed"
    else
        echo "no d3rlpy venv: bash benchmarks/d3rlpy/setup.sh adds d3rlpy's columns"
    fi
    grid_publish "$OUT" "$ARCHIVE" "$RESULTS"
done
echo "report: $RESULTS/REPORT.md"
