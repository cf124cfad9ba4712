#!/bin/bash
# Train (or continue) the SAC behaviour policy of one MuJoCo task for offrl's dataset factory.
#
#   bash benchmarks/behaviour/train.sh HalfCheetah-v5 300000 [RUN_ROOT]
#   SEED=1 bash benchmarks/behaviour/train.sh Walker2d-v5 1000000   # -> RUN_ROOT/Walker2d-v5-s1
#   ALGO=tqc THREADS=2 bash benchmarks/behaviour/train.sh HalfCheetah-v5 1000000 runs/behaviour-tqc
#
# ALGO is sac (default: the paper's settings) or tqc, at SB3-contrib's size (2 critics of
# (256, 256), 25 atoms, 2 dropped per critic: 1.2x SAC's time an update; rl-baselines3-zoo's
# 1M-step runs score 12,090 on HalfCheetah-v3 and 4,381 on Walker2d-v3, SAC's 9,535 and 3,863).
# The run directory does not name the algorithm: give each algorithm its own RUN_ROOT.
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
ALGO=${ALGO:-sac}
case $ALGO in
    sac) SETS=() ;;
    tqc) SETS=(--set num_critics=2 "critic_hidden=[256,256]") ;;
    *) echo "ALGO must be sac or tqc, got $ALGO" >&2; exit 2 ;;
esac
RUN="$ROOT/$ENV"
if [ "$SEED" != 0 ]; then RUN="$ROOT/$ENV-s$SEED"; fi
cd "$(dirname "$0")/../.."
exec .venv/bin/offrl online --algo "$ALGO" --env "$ENV" --steps "$STEPS" --seed "$SEED" \
    --threads "$THREADS" --out "$RUN" --resume --no-progress --eval-episodes 10 "${SETS[@]}"
