#!/usr/bin/env bash
# Every cell that issues 24 (fine-tuning grid) and 25 (long-budget grid) still need, in one
# fixed order, resumable. Start it once per core; the copies share the work cell by cell (a
# running cell holds a lock, so the other copy skips it and takes the next):
#
#   for i in 1 2; do setsid nohup bash benchmarks/remaining.sh >> runs/remaining-$i.log 2>&1 & done
#
# The order puts cheap cells that complete a column first, then the expensive ones:
#   1. fine-tuning: ReBRAC (about 13 min a cell at one thread), Cal-QL (about 70), Balanced
#      Replay (about 2.5 h: five offline CQL members);
#   2. the long grid, algorithm by algorithm over the nine datasets: BC and TD3+BC (3-18 min a
#      cell), IQL (17-29), ReBRAC (about 55), then d3rlpy's TD3+BC and IQL beside them.
# Each grid exports its finished cells to its committed archive every 10 minutes; commit
# benchmarks/results/ before a session ends. A killed copy loses only the cells in flight, which
# continue from their last checkpoint when it is started again.
set -uo pipefail
cd "$(dirname "$0")/.."
export OFFRL_DATA_DIR=${OFFRL_DATA_DIR:-$PWD/.grid-data}
export WORKERS=1

ALGOS=rebrac bash benchmarks/finetune/grid.sh
ALGOS=calql bash benchmarks/finetune/grid.sh
ALGOS=balanced_replay bash benchmarks/finetune/grid.sh
# Medium and medium-replay first (issue 25, item 7 asks about those), then medium-expert.
LONG=hopper-medium-v0,hopper-medium-replay-v0,walker2d-medium-v1,walker2d-medium-replay-v1
LONG+=,halfcheetah-medium-v1,halfcheetah-medium-replay-v1
LONG+=,hopper-medium-expert-v0,walker2d-medium-expert-v1,halfcheetah-medium-expert-v1
for algos in bc,td3bc iql rebrac; do
    ALGOS=$algos PEER_ALGOS= DATASETS=$LONG bash benchmarks/long_grid.sh
done
# d3rlpy's columns: offrl's BC cells are all done by then, so only the peers' cells run.
ALGOS=bc PEER_ALGOS=td3plusbc,iql DATASETS=$LONG bash benchmarks/long_grid.sh
