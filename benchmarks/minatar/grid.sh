#!/usr/bin/env bash
# Issue 22's results, in the second seed's shape, on three MinAtar games (GAMES):
#
#   1. each game's QR-DQN expert (benchmarks/minatar/experts.sh) exported to the expert file
#      that ships (offrl/data/behaviour/minatar-<game>-qrdqn.pt), unless it is there already; a
#      game whose expert is still training is skipped, and a later run adds it to the grids;
#   2. its dataset, minatar-<game>-noisy-v0: 1M transitions of the expert at eps 0.2;
#   3. the main grid (OUT/main): BC, discrete BCQ, CQL, CRR and CRR+CQL, 3 seeds, STEPS updates,
#      evaluated every EVAL_EVERY updates over 10 episodes (and 100 at the end);
#   4. the buffer-size ablation (OUT/ablation): BC and CQL on 10 % and 1 % of each dataset's
#      episodes (`offrl dataset subsample`, seed 0), as the seed's reduced-buffer tables;
#   5. Tianshou 2.0.1's BCQ, CQL, CRR and CRR+CQL (TS_ALGOS) on the first game's dataset, same
#      budget and seeds (benchmarks/tianshou/grid.py), in the same grid: the report's
#      "offrl vs tianshou";
#   6. the reports and the seed's table (benchmarks/minatar/table.py) in
#      benchmarks/results/minatar/.
#
# Safe to kill: re-running runs only unfinished cells. Finished cells (no checkpoints) go to
# benchmarks/results/minatar/cells-{main,ablation}, which are committed and restored from.
#
#   bash benchmarks/minatar/grid.sh [OUT] [EXPERTS]   # defaults runs/minatar-grid, runs/minatar-experts
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/minatar-grid}
EXPERTS=${2:-runs/minatar-experts}
GAMES=${GAMES:-Breakout,SpaceInvaders,Asterix}
STEPS=${STEPS:-50000}
EVAL_EVERY=${EVAL_EVERY:-10000}
WORKERS=${WORKERS:-1}
ALGOS=bc,discrete_bcq,discrete_cql,discrete_crr,discrete_crr_cql
RESULTS=benchmarks/results/minatar
DATA=runs/minatar-data   # the ablation's subsampled files (rebuilt identically: seeded)
OFFRL=.venv/bin/offrl

main_sets=() small_sets=()
for game in ${GAMES//,/ }; do
    lower=$(echo "$game" | tr '[:upper:]' '[:lower:]')
    expert="offrl/data/behaviour/minatar-$lower-qrdqn.pt"
    if [ ! -f "$expert" ]; then
        if [ ! -f "$EXPERTS/$game/final.json" ]; then
            echo "$game: skipped for now (no expert file, no finished run in $EXPERTS/$game)" >&2
            continue
        fi
        $OFFRL dataset expert "$EXPERTS/$game" --out "$expert"
    fi
    name="minatar-$lower-noisy-v0"
    $OFFRL dataset make "$name"
    main_sets+=("$name")
    mkdir -p "$DATA"
    for pct in 10 1; do
        file="$DATA/$name-${pct}pct.npz"
        if [ ! -f "$file" ]; then
            fraction=$(python3 -c "print($pct / 100)")
            $OFFRL dataset subsample "$name" --fraction "$fraction" --seed 0 --out "$file"
        fi
        small_sets+=("$file")
    done
done
join() { local IFS=,; echo "$*"; }
if [ ${#main_sets[@]} = 0 ]; then echo "no game has an expert yet" >&2; exit 1; fi

source benchmarks/grid_common.sh
publish() {  # $1: grid directory, $2: its archive, $3: report directory; then the seed's table
    grid_publish "$1" "$2" "$3" "$RESULTS/NOTES.md"
    .venv/bin/python benchmarks/minatar/table.py --main "$RESULTS/report.json" \
        --ablation "$RESULTS/ablation/report.json" > "$RESULTS/TABLE.md"
}
grid_restore "$OUT/main" "$RESULTS/cells-main"
grid_restore "$OUT/ablation" "$RESULTS/cells-ablation"
grid_export_loop "$OUT/main" "$RESULTS/cells-main" "$OUT/ablation" "$RESULTS/cells-ablation"
run() {  # $1: algorithms, $2: datasets, $3: grid directory, then extra flags
    grid_run "$3" "$1" "$2" "${@:4}"
}
# The manifest first, so that partial reports list what has not run yet; then offrl's cells game
# by game, the ablation, and last Tianshou's cells beside offrl's on the first game (the slowest
# cells: a CQL cell takes about an hour). TS_ALGOS picks Tianshou's algorithms.
run "$ALGOS" "$(join "${main_sets[@]}")" "$OUT/main" --dry-run > /dev/null
for name in "${main_sets[@]}"; do
    run "$ALGOS" "$name" "$OUT/main"
    publish "$OUT/main" "$RESULTS/cells-main" "$RESULTS"
done
run bc,discrete_cql "$(join "${small_sets[@]}")" "$OUT/ablation"
publish "$OUT/ablation" "$RESULTS/cells-ablation" "$RESULTS/ablation"
.venv/bin/python benchmarks/tianshou/grid.py --grid "$OUT/main" --datasets "${main_sets[0]}" \
    --algos "${TS_ALGOS:-bcq,cql,crr,crr_cql}" --workers "$WORKERS" \
    || echo "some Tianshou cells failed (listed in the report)"
publish "$OUT/main" "$RESULTS/cells-main" "$RESULTS"
echo "results: $RESULTS/TABLE.md, $RESULTS/REPORT.md, $RESULTS/ablation/REPORT.md"
