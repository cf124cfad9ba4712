#!/usr/bin/env bash
# The S4RL ablation (issue 26): TD3+BC with and without S4RL's Gaussian state noise on the 1 %
# and 10 % episode subsamples of hopper-medium-v0, 3 seeds: the small-data regime where S4RL
# (Sinha et al., 2021) reports augmentation helps most. 2 datasets x 2 arms x 3 seeds = 12 cells
# of 15,000 gradient steps; about 30 minutes of one core (15 minutes with 2 workers) after the
# dataset is built (~5 minutes the first time). Safe to kill: re-running the same command re-runs
# only unfinished cells, each from its last checkpoint.
#
#   bash benchmarks/augment/run.sh [OUT]          # default runs/augment (git-ignored)
#   STEPS=200 EVAL_EVERY=100 EPISODES=1 RESULTS= bash benchmarks/augment/run.sh /tmp/aug-try
#   AUGMENTS="gaussian mixup scale" bash benchmarks/augment/run.sh   # more arms (each 6 cells)
#
# Each arm is one grid directory, OUT/<arm>/ ("none", then one per spec of AUGMENTS), with its
# REPORT.md; OUT/SUMMARY.md puts the arms side by side. Unless RESULTS is empty, the summary and
# every finished cell's results (no checkpoints, ~5 KB a cell) are copied to $RESULTS, which is
# meant to be committed.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/augment}
DATASET=${DATASET:-hopper-medium-v0}
FRACTIONS=${FRACTIONS:-"0.01 0.1"}
AUGMENTS=${AUGMENTS:-gaussian}          # S4RL's best transform on D4RL (std 3e-4, raw states)
SEEDS=${SEEDS:-0,1,2}
STEPS=${STEPS:-15000}
EVAL_EVERY=${EVAL_EVERY:-5000}
EPISODES=${EPISODES:-10}
WORKERS=${WORKERS:-2}
RESULTS=${RESULTS-benchmarks/results/augment}
OFFRL=${OFFRL:-.venv/bin/offrl}
PYTHON=${PYTHON:-.venv/bin/python}

# The subsamples: seeded episode subsets (seed 0), built once, before any worker needs them.
"$OFFRL" dataset make "$DATASET"
mkdir -p "$OUT/data"
datasets=()
for fraction in $FRACTIONS; do
    pct=$("$PYTHON" -c "print(f'{100 * $fraction:g}')")
    file="$OUT/data/${DATASET%-v*}-${pct}pct.npz"
    [ -f "$file" ] || "$OFFRL" dataset subsample "$DATASET" --fraction "$fraction" --seed 0 \
        --out "$file"
    datasets+=("$file")
done
datasets=$(IFS=,; echo "${datasets[*]}")

arm() {  # arm NAME [--augment SPEC]: one grid, TD3+BC at its defaults on every subsample
    local name=$1
    shift
    "$OFFRL" bench run --algos td3bc --datasets "$datasets" --seeds "$SEEDS" --steps "$STEPS" \
        --eval-every "$EVAL_EVERY" --eval-episodes "$EPISODES" --checkpoint-every "$EVAL_EVERY" \
        --workers "$WORKERS" --out "$OUT/$name" "$@" \
        || echo "some cells of $name failed (listed in its report)"
    "$OFFRL" bench report "$OUT/$name" >/dev/null || echo "no report for $name yet"
}
arm none
for spec in $AUGMENTS; do
    arm "${spec//[:=,]/-}" --augment "$spec"
done

"$PYTHON" benchmarks/augment/summarize.py "$OUT" | tee "$OUT/SUMMARY.md"
if [ -n "$RESULTS" ]; then
    mkdir -p "$RESULTS"
    cp "$OUT/SUMMARY.md" "$RESULTS/SUMMARY.md"
    for grid in "$OUT"/*/grid.json; do
        "$OFFRL" bench export "$(dirname "$grid")" "$RESULTS/$(basename "$(dirname "$grid")")"
    done
fi
