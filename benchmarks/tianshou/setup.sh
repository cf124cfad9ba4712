#!/usr/bin/env bash
# Create benchmarks/.venv-tianshou: a separate virtual environment holding Tianshou 2.0.1, the
# peer whose replay buffers (ReplayBuffer.save_hdf5: the second seed's `--save-buffer-name
# expert.hdf5`) offrl reads; the tests write real files with it. It also holds MinAtar, so that
# Tianshou's discrete algorithms are scored in the same environments as offrl's
# (benchmarks/tianshou/grid.py).
#
# torch is installed FIRST and pinned, so that Tianshou's torch requirement is already
# satisfied by the CPU build and pip never pulls a multi-GB CUDA build.
# Idempotent: does nothing when the venv already imports the expected versions.
# Usage (from anywhere): bash benchmarks/tianshou/setup.sh   [TORCH_VERSION=... to change the pin]
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
TIANSHOU_VERSION="2.0.1"
MINATAR_VERSION="1.0.15"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$(dirname "$HERE")/.venv-tianshou"
PY="$VENV/bin/python"

check() {
    "$PY" - "$TIANSHOU_VERSION" "$TORCH_VERSION" <<'PYEOF' >/dev/null 2>&1
import sys

import minatar  # noqa: F401
import tianshou
import torch

assert tianshou.__version__ == sys.argv[1], tianshou.__version__
assert torch.__version__.split("+")[0] == sys.argv[2], torch.__version__
PYEOF
}

if [ -x "$PY" ] && check; then
    echo "tianshou venv ready: $VENV"
    exit 0
fi
python3 -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q "torch==$TORCH_VERSION"
"$PY" -m pip install -q "tianshou==$TIANSHOU_VERSION" "minatar==$MINATAR_VERSION"
check || { echo "tianshou venv: the expected versions do not import" >&2; exit 1; }
echo "tianshou venv ready: $VENV"
