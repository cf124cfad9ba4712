#!/usr/bin/env bash
# Issue 24's results: offline-to-online fine-tuning on two of offrl's MuJoCo datasets (one medium,
# one medium-replay), each algorithm 3 seeds: OFFLINE_STEPS offline updates, then ONLINE_STEPS
# environment steps, evaluated every EVAL_EVERY steps; then the table in CORL's before -> after
# shape (benchmarks/results/finetune/RESULTS.md). Safe to kill: re-running the same command
# resumes every unfinished run from its checkpoint (finished ones are skipped).
#
#   bash benchmarks/finetune/grid.sh [OUT]            # default runs/finetune-grid (git-ignored)
#   ALGOS=iql,awac SEEDS=0 bash benchmarks/finetune/grid.sh   # a part
#
# The per-run results (config, metrics, final.json; no checkpoints) are copied to
# benchmarks/results/finetune/runs/ after each run, so they can be committed as they finish.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/finetune-grid}
DATASETS=${DATASETS:-hopper-medium-v0,walker2d-medium-replay-v0}
ALGOS=${ALGOS:-awac,iql,rebrac,calql,balanced_replay}
SEEDS=${SEEDS:-0,1,2}
OFFLINE_STEPS=${OFFLINE_STEPS:-100000}
ONLINE_STEPS=${ONLINE_STEPS:-100000}
EVAL_EVERY=${EVAL_EVERY:-5000}
KEEP=benchmarks/results/finetune/runs
mkdir -p "$OUT" "$KEEP"
for ds in ${DATASETS//,/ }; do
    .venv/bin/offrl dataset make "$ds"
    for algo in ${ALGOS//,/ }; do
        for seed in ${SEEDS//,/ }; do
            run="$OUT/$algo-$ds-s$seed"
            [ -f "$run/final.json" ] && continue
            resume=()
            [ -d "$run/checkpoints" ] && resume=(--resume)
            .venv/bin/offrl finetune --algo "$algo" --dataset "$ds" --seed "$seed" \
                --offline-steps "$OFFLINE_STEPS" --steps "$ONLINE_STEPS" \
                --eval-every "$EVAL_EVERY" --offline-eval-every "$EVAL_EVERY" \
                --buffer-size "$ONLINE_STEPS" --threads 1 --no-progress --out "$run" \
                "${resume[@]}" || echo "failed: $run"
            mkdir -p "$KEEP/$(basename "$run")"
            cp "$run"/{config.json,metrics.jsonl,final.json,curve.png} "$KEEP/$(basename "$run")/" \
                2>/dev/null || true
        done
    done
done
.venv/bin/python benchmarks/finetune/table.py "$KEEP" > benchmarks/results/finetune/RESULTS.md
echo "table: benchmarks/results/finetune/RESULTS.md"
