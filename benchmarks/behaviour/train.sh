#!/bin/bash
# Train (or continue) the SAC behaviour policy of one MuJoCo task for offrl's dataset factory.
#
#   bash benchmarks/behaviour/train.sh HalfCheetah-v5 300000 [RUN_ROOT]
#   SEED=1 bash benchmarks/behaviour/train.sh Walker2d-v5 1000000   # -> RUN_ROOT/Walker2d-v5-s1
#
# THREADS torch threads (default 1: two of these share a 2-core machine best; THREADS=2 runs one
# alone about 1.5x faster, ~130 steps/s on Walker2d), seed SEED (default 0; a seed other
# than 0 runs into RUN_ROOT/ENV-s<SEED>), snapshots every 20k steps,
# evaluation every 10k steps over 10 episodes. Safe to kill: re-running the same command resumes
# from the last checkpoint (every 10k steps). When it has finished:
#
#   offrl dataset pack RUN_ROOT/ENV --out offrl/data/behaviour/<env>.pt
set -euo pipefail
ENV=$1
STEPS=$2
ROOT=${3:-runs/behaviour}
SEED=${SEED:-0}
THREADS=${THREADS:-1}
RUN="$ROOT/$ENV"
if [ "$SEED" != 0 ]; then RUN="$ROOT/$ENV-s$SEED"; fi
cd "$(dirname "$0")/../.."
exec .venv/bin/offrl online --env "$ENV" --steps "$STEPS" --seed "$SEED" --threads "$THREADS" \
    --out "$RUN" --resume --no-progress --eval-episodes 10
