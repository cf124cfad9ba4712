#!/bin/bash
# Train (or continue) the SAC behaviour policy of one MuJoCo task for offrl's dataset factory.
#
#   bash benchmarks/behaviour/train.sh HalfCheetah-v5 300000 [RUN_ROOT]
#
# Single-threaded (two of these share a 2-core machine best), seed 0, snapshots every 20k steps,
# evaluation every 10k steps over 10 episodes. Safe to kill: re-running the same command resumes
# from the last checkpoint (every 10k steps). When it has finished:
#
#   offrl dataset pack RUN_ROOT/ENV --out offrl/data/behaviour/<env>.pt
set -euo pipefail
ENV=$1
STEPS=$2
ROOT=${3:-runs/behaviour}
cd "$(dirname "$0")/../.."
exec .venv/bin/offrl online --env "$ENV" --steps "$STEPS" --seed 0 --threads 1 \
    --out "$ROOT/$ENV" --resume --no-progress --eval-episodes 10
