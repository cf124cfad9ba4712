#!/bin/bash
# Train (or continue) the SAC behaviour policy of one MuJoCo task for offrl's dataset factory.
#
#   bash benchmarks/behaviour/train.sh HalfCheetah-v5 300000 [RUN_ROOT]
#   SEED=1 bash benchmarks/behaviour/train.sh Walker2d-v5 1000000   # -> RUN_ROOT/Walker2d-v5-s1
#
# Single-threaded (two of these share a 2-core machine best), seed SEED (default 0; a seed other
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
RUN="$ROOT/$ENV"
if [ "$SEED" != 0 ]; then RUN="$ROOT/$ENV-s$SEED"; fi
cd "$(dirname "$0")/../.."
exec .venv/bin/offrl online --env "$ENV" --steps "$STEPS" --seed "$SEED" --threads 1 \
    --out "$RUN" --resume --no-progress --eval-episodes 10
