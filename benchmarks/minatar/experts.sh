#!/usr/bin/env bash
# Issue 22's experts: QR-DQN (Dabney et al., 2018; offrl's `qrdqn`) trained online on five
# MinAtar games, whose epsilon-greedy rollouts (eps = 0.2, the second seed's recipe) become the
# discrete datasets. Training follows MinAtar's DQN setup (Young & Tian, 2019): batch 32, replay
# 100k, replay start 5000, one update per step, target copied every 1000 updates, epsilon 1 ->
# 0.1 over the first 100k steps, lr 2.5e-4 (Adam here, RMSprop there); QR-DQN's 200 quantiles
# and kappa 1 (the paper's). STEPS per game (default 300k, about 45 min a game on an idle core here;
# Seaquest 1M, about 2 hours: it scores under 1 per episode for its first 550k steps; MinAtar's
# paper trains 5M frames).
# Resumable: each run checkpoints every 25k steps and a re-run continues it (--resume).
#
#   bash benchmarks/minatar/experts.sh [OUT]          # default runs/minatar-experts
#   GAMES=Breakout STEPS=200000 bash benchmarks/minatar/experts.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/minatar-experts}
GAMES=${GAMES:-Breakout,SpaceInvaders,Asterix,Freeway,Seaquest}
for game in ${GAMES//,/ }; do
    steps=${STEPS:-300000}
    if [ "$game" = Seaquest ]; then steps=${STEPS:-1000000}; fi
    run="$OUT/$game"
    resume=()
    if [ -f "$run/checkpoints/latest.pt" ]; then resume=(--resume --allow-change steps); fi
    if [ -f "$run/final.json" ] && grep -q "\"steps\": $steps," "$run/final.json"; then
        echo "$game: done"; continue
    fi
    .venv/bin/offrl online --algo qrdqn --env "offrl/MinAtar-$game-v1" --out "$run" \
        --steps "$steps" --start-steps 5000 --buffer-size 100000 --eval-every 50000 \
        --eval-episodes 10 --snapshot-every 0 --checkpoint-every 25000 --log-every 5000 \
        --threads 1 --progress 0 "${resume[@]}" \
        --set lr=2.5e-4 target_update_every=1000 eps_start=1.0 eps_end=0.1 \
              eps_decay_updates=100000 num_quantiles=200
done
