# Shared skeleton of offrl's long benchmark grids (long_grid.sh, finetune/grid.sh,
# minatar/grid.sh); sourced, not run. Each grid builds its datasets one at a time, restores its
# committed archive of finished cells, exports finished cells to that archive every 10 minutes
# while it runs (so a killed session loses at most the cells in flight), and publishes the
# archive and the report after each phase. Every function is safe to re-run.
#
#   source benchmarks/grid_common.sh
#   grid_make_datasets hopper-medium-v0,walker2d-medium-replay-v0
#   grid_restore runs/grid benchmarks/results/x/cells
#   grid_export_loop runs/grid benchmarks/results/x/cells
#   STEPS=100000 EVAL_EVERY=10000 WORKERS=2 grid_run runs/grid bc,iql hopper-medium-v0 [--flag ...]
#   grid_publish runs/grid benchmarks/results/x/cells benchmarks/results/x [NOTES_FILE]
#
# Expects the repository root as the working directory and the project's .venv.
OFFRL=${OFFRL:-.venv/bin/offrl}

grid_make_datasets() {  # $1: comma-separated dataset names; one at a time, so workers never race
    # Under a machine-wide lock: two grids started together (benchmarks/remaining.sh, once per
    # core) build a dataset once; the second finds it made.
    local ds
    for ds in ${1//,/ }; do
        if command -v flock > /dev/null; then
            flock /tmp/offrl-dataset-make.lock $OFFRL dataset make "$ds"
        else
            $OFFRL dataset make "$ds"
        fi
    done
}

grid_restore() {  # $1: grid directory, $2: its committed archive of finished cells
    if [ -f "$2/grid.json" ]; then
        $OFFRL bench export "$2" "$1" > /dev/null
    fi
}

grid_export_loop() {  # pairs of (grid directory, archive); exported every 10 minutes until exit
    local pairs=("$@")
    while sleep 600; do
        local i
        for ((i = 0; i < ${#pairs[@]}; i += 2)); do
            $OFFRL bench export "${pairs[i]}" "${pairs[i + 1]}" > /dev/null 2>&1 || true
        done
    done 2> /dev/null &  # (quiet: no "Terminated" line when the trap ends it)
    GRID_EXPORT_PID=$!
    # At exit, the loop's sleep first (else it would hold the caller's stdout open for up to 10
    # minutes), which ends the loop.
    trap 'pkill -P "$GRID_EXPORT_PID" 2>/dev/null; kill "$GRID_EXPORT_PID" 2>/dev/null || true' EXIT
}

grid_run() {  # $1: grid directory, $2: algorithms, $3: datasets, then extra `bench run` flags
    # The budget comes from STEPS, EVAL_EVERY and WORKERS; SEEDS (default 0,1,2), 10 evaluation
    # episodes (100 at the end, `bench run`'s default), a checkpoint at every evaluation. A failed
    # cell does not stop the grid: the report lists it.
    $OFFRL bench run --algos "$2" --datasets "$3" --seeds "${SEEDS:-0,1,2}" --steps "$STEPS" \
        --eval-every "$EVAL_EVERY" --eval-episodes 10 --checkpoint-every "$EVAL_EVERY" \
        --workers "$WORKERS" --out "$1" "${@:4}" \
        || echo "some cells failed (listed in the report)"
}

grid_publish() {  # $1: grid directory, $2: its archive, $3: report directory, [$4: notes file]
    # The report's notes come from $4, by default NOTES.md in the report directory (created empty
    # if missing, for the grid's author to fill).
    local notes=${4:-$3/NOTES.md}
    $OFFRL bench export "$1" "$2" > /dev/null
    mkdir -p "$3"
    touch "$notes"
    $OFFRL bench report "$1" --notes "$notes" --to "$3" > /dev/null
}
