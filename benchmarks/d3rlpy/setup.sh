#!/usr/bin/env bash
# Create benchmarks/.venv-d3rlpy: a separate virtual environment holding d3rlpy 2.8.1
# (it pins gymnasium 1.0.0, so it must not share offrl's environment), plus mujoco (the same
# version as offrl's environment) and imageio, which gymnasium 1.0.0's MuJoCo environments
# import, so that benchmarks/d3rlpy/train.py can evaluate on Hopper-v5 & co.
#
# torch is installed FIRST and pinned, so that d3rlpy's unpinned torch requirement is
# already satisfied by the CPU build and pip never pulls a multi-GB CUDA build.
# Idempotent: does nothing when the venv already imports the expected versions.
# Usage (from anywhere): bash benchmarks/d3rlpy/setup.sh   [TORCH_VERSION=... to change the pin]
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
D3RLPY_VERSION="2.8.1"
MUJOCO_VERSION="${MUJOCO_VERSION:-4.0.0}"
IMAGEIO_VERSION="${IMAGEIO_VERSION:-2.38.1}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$(dirname "$HERE")/.venv-d3rlpy"
PY="$VENV/bin/python"

check() {
    "$PY" - "$D3RLPY_VERSION" "$TORCH_VERSION" "$MUJOCO_VERSION" <<'PYEOF' >/dev/null 2>&1
import sys

import d3rlpy
import gymnasium
import mujoco
import torch

assert d3rlpy.__version__ == sys.argv[1], d3rlpy.__version__
assert torch.__version__.split("+")[0] == sys.argv[2], torch.__version__
assert mujoco.__version__ == sys.argv[3], mujoco.__version__
gymnasium.make("Hopper-v5").reset(seed=0)  # gymnasium's MuJoCo envs work with this mujoco
PYEOF
}

if [ -x "$PY" ] && check; then
    echo "d3rlpy venv already set up at $VENV"
    "$PY" -c "import d3rlpy, mujoco, torch; print('d3rlpy', d3rlpy.__version__, 'torch', torch.__version__, 'mujoco', mujoco.__version__)"
    exit 0
fi

if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
"$PY" -m pip install "torch==${TORCH_VERSION}"
# Repeat the torch pin so that resolving d3rlpy can never replace the CPU build.
"$PY" -m pip install "d3rlpy==${D3RLPY_VERSION}" "torch==${TORCH_VERSION}"
"$PY" -m pip install "mujoco==${MUJOCO_VERSION}" "imageio==${IMAGEIO_VERSION}"

"$PY" -c "import d3rlpy, mujoco, torch; print('d3rlpy', d3rlpy.__version__, 'torch', torch.__version__, 'mujoco', mujoco.__version__)"
check || { echo "the d3rlpy venv does not pass its check" >&2; exit 1; }
