#!/usr/bin/env bash
# offrl's first committed results: every registered algorithm on three of offrl's MuJoCo
# datasets (one medium, one medium-replay, one medium-expert, one per environment: Walker2d's
# weak behaviour run gives the replay data, Hopper's strong one the medium-expert mix), 3 seeds,
# one step budget for all, plus d3rlpy 2.8.1's TD3+BC / IQL / CQL on the same files, seeds and
# budget. About 10-15 hours on a 2-core machine; safe to kill: re-running the same command
# re-runs only unfinished cells (each cell also resumes from its own last checkpoint).
# One override: UWAC draws 5 MC-dropout passes instead of the official code's 100 (T = 100 costs
# ~90 BEAR updates per update on a CPU; see offrl/algos/uwac.py).
#
#   bash benchmarks/mujoco_grid.sh [GRID_DIR]       # default runs/mujoco-grid (git-ignored)
#   WORKERS=1 DATASETS=halfcheetah-medium-v0 bash benchmarks/mujoco_grid.sh  # a part (datasets
#                                                   # may be added to a grid later)
#
# After each phase the report is copied to benchmarks/results/mujoco/ (REPORT.md, report.json,
# curves and aggregate PNGs); cells not yet run are listed in it as missing.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/mujoco-grid}
# Cheapest first, so that an interrupted grid already has a table: phase 1 (~2 h here) gives
# nine offrl algorithms and d3rlpy's TD3+BC and IQL on every dataset; phase 2 the algorithms
# that cost 10-60x more per update (BCQ's VAE, the MMD, CQL's sampled actions, the ensembles).
CHEAP=awac,awr,bc,bc_pct,crr,iql,sac,td3bc
COSTLY=bcq,bear,sac_n,edac,cql,uwac
DATASETS=${DATASETS:-halfcheetah-medium-v0,walker2d-medium-replay-v0,hopper-medium-expert-v0}
WORKERS=${WORKERS:-2}
# 7,500 gradient steps per cell: the budget at which the whole grid (126 offrl cells + 27 d3rlpy
# cells, 2 single-threaded workers) takes about 13 hours here, from the per-update costs that
# `offrl bench speed --threads 1` measured (CQL, EDAC, SAC-N, BEAR, UWAC dominate).
STEPS=${STEPS:-7500}

# Build (or find cached) the datasets first, one at a time, so workers never race to build.
for ds in ${DATASETS//,/ }; do
    .venv/bin/offrl dataset make "$ds"
done

offrl_part() {  # the offrl cells of the algorithms in $1 (each part of one grid directory)
    .venv/bin/offrl bench run --algos "$1" --datasets "$DATASETS" --seeds 0,1,2 \
        --steps "$STEPS" --eval-every 2500 --eval-episodes 10 --checkpoint-every 2500 \
        --set uwac.num_dropout_samples=5 --workers "$WORKERS" --out "$OUT" \
        || echo "some offrl cells failed (listed in the report)"
}
d3rlpy_part() {  # d3rlpy 2.8.1's cells of the algorithms in $1, same files, seeds and budget
    if [ -x benchmarks/.venv-d3rlpy/bin/python ]; then
        .venv/bin/python benchmarks/d3rlpy/grid.py --grid "$OUT" --algos "$1" \
            --workers "$WORKERS" || echo "some d3rlpy cells failed (listed in the report)"
    else
        echo "no d3rlpy venv: run bash benchmarks/d3rlpy/setup.sh for the side-by-side columns"
    fi
}
publish() {  # write the report and copy it into the repo (partial results are labelled so)
    .venv/bin/offrl bench report "$OUT"
    mkdir -p benchmarks/results/mujoco
    cp "$OUT"/REPORT.md "$OUT"/report.json "$OUT"/*.png benchmarks/results/mujoco/ 2>/dev/null || true
}

offrl_part "$CHEAP"
d3rlpy_part td3plusbc,iql
publish
offrl_part "$COSTLY"
d3rlpy_part cql
publish
echo "report: benchmarks/results/mujoco/REPORT.md"
