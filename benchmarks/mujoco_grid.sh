#!/usr/bin/env bash
# offrl's first committed results: every registered algorithm on three of offrl's MuJoCo
# datasets (one medium, one medium-replay, one medium-expert, one per environment: Walker2d's
# weak behaviour run gives the replay data, Hopper's strong one the medium-expert mix), 3 seeds,
# one step budget for all, plus d3rlpy 2.8.1's TD3+BC / IQL / CQL on the same files, seeds and
# budget. About 10-15 hours on a 2-core machine; safe to kill: re-running the same command
# re-runs only unfinished cells (each cell also resumes from its own last checkpoint).
# Phase 3 adds MOPO, COMBO and MOBILE (about 5 more hours, mostly COMBO's and MOBILE's updates
# and one dynamics model per dataset).
# One override: UWAC draws 5 MC-dropout passes instead of the official code's 100 (T = 100 costs
# ~90 BEAR updates per update on a CPU; see offrl/algos/uwac.py).
#
#   bash benchmarks/mujoco_grid.sh [GRID_DIR]       # default runs/mujoco-grid (git-ignored)
#   WORKERS=1 DATASETS=halfcheetah-medium-v0 bash benchmarks/mujoco_grid.sh  # a part (datasets
#                                                   # may be added to a grid later)
#
# After each phase the report is copied to benchmarks/results/mujoco/ (REPORT.md, report.json,
# curves and aggregate PNGs); cells not yet run are listed in it as missing. A report with fewer
# finished cells than the one already there is not copied (a grid being rebuilt never shrinks it).
#
# The grid directory is git-ignored and a fresh machine starts without it, so every finished
# cell's results (config, metrics, final score; no checkpoints: ~5 KB a cell) are also exported
# to $ARCHIVE, which is committed; the script restores the grid from it before running, so on a
# fresh clone only the cells it lacks run again. ARCHIVE= (empty) turns both off.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/mujoco-grid}
# Cheapest first, so that an interrupted grid already has a table: phase 1 (~2.5 h here) runs,
# dataset by dataset, eight offrl algorithms and then d3rlpy's TD3+BC and IQL on the same file
# (so the side-by-side comparison fills in early); phase 2, dataset by dataset too, the
# algorithms that cost 10-60x more per update (BCQ's VAE, BEAR's MMD, CQL's sampled actions, the
# ensembles) and d3rlpy's CQL.
CHEAP=awac,awr,bc,bc_pct,crr,iql,sac,td3bc
COSTLY=bcq,bear,sac_n,edac,cql,uwac
DATASETS=${DATASETS:-halfcheetah-medium-v0,walker2d-medium-replay-v0,hopper-medium-expert-v0}
WORKERS=${WORKERS:-2}
# 7,500 gradient steps per cell: the budget at which the whole grid (126 offrl cells + 27 d3rlpy
# cells, 2 single-threaded workers) takes about 13 hours here, from the per-update costs that
# `offrl bench speed --threads 1` measured (CQL, EDAC, SAC-N, BEAR, UWAC dominate).
STEPS=${STEPS:-7500}
ARCHIVE=${ARCHIVE-benchmarks/results/mujoco/cells}

# Build (or find cached) the datasets first, one at a time, so workers never race to build.
for ds in ${DATASETS//,/ }; do
    .venv/bin/offrl dataset make "$ds"
done

offrl_part() {  # offrl cells: algorithms $1 on datasets $2 (each part of one grid directory)
    .venv/bin/offrl bench run --algos "$1" --datasets "$2" --seeds 0,1,2 \
        --steps "$STEPS" --eval-every 2500 --eval-episodes 10 --checkpoint-every 2500 \
        --set uwac.num_dropout_samples=5 --workers "$WORKERS" --out "$OUT" "${@:3}" \
        || echo "some offrl cells failed (listed in the report)"
}
d3rlpy_part() {  # d3rlpy 2.8.1's cells: algorithms $1 on datasets $2, same files, seeds, budget
    if [ -x benchmarks/.venv-d3rlpy/bin/python ]; then  # $3: workers (default $WORKERS)
        .venv/bin/python benchmarks/d3rlpy/grid.py --grid "$OUT" --algos "$1" --datasets "$2" \
            --workers "${3:-$WORKERS}" || echo "some d3rlpy cells failed (listed in the report)"
    else
        echo "no d3rlpy venv: run bash benchmarks/d3rlpy/setup.sh for the side-by-side columns"
    fi
}
covers() {  # does report $1 have every finished cell (offrl's and d3rlpy's) that report $2 has?
    [ -f "$2" ] || return 0
    .venv/bin/python - "$1" "$2" <<'PYEOF'
import json
import sys

def finished(path):
    report = json.load(open(path))
    cells = {(c["algo"], c["dataset"], c["seed"]) for c in report["cells"] if c["status"] == "done"}
    for ds, columns in report.get("external", {}).get("table", {}).items():
        cells |= {(name, ds, s) for name, col in columns.items() for s in col["seeds"]}
    return cells

missing = finished(sys.argv[2]) - finished(sys.argv[1])
if missing:
    print(f"not publishing: this report lacks {len(missing)} cells the published one has")
sys.exit(1 if missing else 0)
PYEOF
}
publish() {  # write the report and copy it into the repo (partial results are labelled so)
    mkdir -p benchmarks/results/mujoco
    if [ -n "$ARCHIVE" ]; then .venv/bin/offrl bench export "$OUT" "$ARCHIVE"; fi
    # NOTES.md: the team's explanations (e.g. where offrl is behind d3rlpy, and why).
    .venv/bin/offrl bench report "$OUT" --notes benchmarks/results/mujoco/NOTES.md > /dev/null
    if covers "$OUT"/report.json benchmarks/results/mujoco/report.json; then
        cp "$OUT"/REPORT.md "$OUT"/report.json "$OUT"/*.png benchmarks/results/mujoco/ 2>/dev/null || true
    fi
}

# A fresh clone has no grid directory: the committed results of finished cells count as done.
if [ -n "$ARCHIVE" ] && [ -f "$ARCHIVE/grid.json" ]; then
    .venv/bin/offrl bench export "$ARCHIVE" "$OUT"
fi
# Between publishes (hours apart in phase 2), finished cells go to the archive every 10 min, so
# a session cut short still leaves them in the working tree.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
if [ -n "$ARCHIVE" ]; then
    while sleep 600; do .venv/bin/offrl bench export "$OUT" "$ARCHIVE" > /dev/null || true; done &
fi

# The manifest first (every algorithm and dataset), so that partial reports list what has not
# run yet; then, dataset by dataset, the cheap offrl cells and d3rlpy's TD3+BC and IQL.
offrl_part "$CHEAP,$COSTLY" "$DATASETS" --dry-run
for ds in ${DATASETS//,/ }; do
    offrl_part "$CHEAP" "$ds"
    d3rlpy_part td3plusbc,iql "$ds"
    publish
done
# Phase 2: the costly offrl cells on every dataset in one run (dataset by dataset, in order),
# with d3rlpy's CQL beside it as a third single-threaded process. Run per dataset, as phase 1 is,
# each part ended with one core idle while its last long cell (a UWAC or a d3rlpy CQL one,
# 20-40 min) finished; this way only the end of the grid has such a tail.
d3rlpy_part cql "$DATASETS" 1 &
d3rlpy_cql=$!
offrl_part "$COSTLY" "$DATASETS"
wait "$d3rlpy_cql"
publish
# Phase 3 (issue 23): the model-based family, each cell with its algorithm's per-task settings
# (OfflineRL-Kit's / the official MOBILE configs' horizon and penalty for the dataset's D4RL
# task: --task-defaults). The three share one dynamics model per dataset (trained once, under a
# lock, by the first cell that needs it; Kit's MOBILE cap of 30 epochs, about 45-65 min per
# 1M-transition dataset here), so their model options must stay equal.
MODEL_BASED=mopo,combo,mobile
offrl_part "$MODEL_BASED" "$DATASETS" --task-defaults "$MODEL_BASED" \
    --set mopo.model_max_epochs=30 combo.model_max_epochs=30 mobile.model_max_epochs=30
publish
echo "report: benchmarks/results/mujoco/REPORT.md"
