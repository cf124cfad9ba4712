#!/usr/bin/env bash
# Continue finished long-grid cells past the grid's budget (issue 25, item 7: does a cell's
# behaviour at 100k updates settle with more?). Each cell runs/long-grid/<dataset>/<algo>/s<seed>
# is copied to runs/extend/ and resumed there from its last checkpoint with `offrl train
# --resume --allow-change steps` up to STEPS, with the grid's evaluation settings; the first 100k
# updates are the grid cell's own, so nothing is recomputed. The extended cells' config, metrics
# and final evaluation go to benchmarks/results/budget/extend/ (committed).
#
#   CELLS=hopper-medium-expert-v0/td3bc/s0,hopper-medium-expert-v0/td3bc/s1 STEPS=300000 \
#       bash benchmarks/extend.sh
#
# Safe to kill: re-running resumes each cell from its last checkpoint (every 10k updates).
# Cost: TD3+BC about 100-150 updates/s at one thread, so 200k more updates take 25-35 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
CELLS=${CELLS:?CELLS=dataset/algo/sSEED,... (finished cells of runs/long-grid)}
STEPS=${STEPS:-300000}
SRC=${SRC:-runs/long-grid}
OUT=${OUT:-runs/extend}
ARCHIVE=benchmarks/results/budget/extend
for cell in ${CELLS//,/ }; do
    IFS=/ read -r dataset algo seed <<< "$cell"
    run=$OUT/$cell
    if [ ! -d "$run" ]; then
        [ -d "$SRC/$cell/checkpoints" ] || { echo "$SRC/$cell: no checkpoints to extend"; exit 1; }
        mkdir -p "$(dirname "$run")"
        cp -r "$SRC/$cell" "$run.tmp" && rm -f "$run.tmp/.lock" "$run.tmp/final.json"
        mv "$run.tmp" "$run"
    fi
    if ! grep -q "\"step\": $STEPS, \"kind\": \"final_eval\"" "$run/metrics.jsonl" 2>/dev/null; then
        .venv/bin/offrl train --algo "$algo" --dataset "$dataset" --out "$run" --seed "${seed#s}" \
            --steps "$STEPS" --eval-every 10000 --eval-episodes 10 --final-eval-episodes 100 \
            --checkpoint-every 10000 --threads 1 --resume --allow-change steps --no-progress
    fi
    mkdir -p "$ARCHIVE/$cell"
    cp "$run/config.json" "$run/metrics.jsonl" "$run/final.json" "$ARCHIVE/$cell/"
    echo "[done] $cell to $STEPS"
done
