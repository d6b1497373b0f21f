#!/usr/bin/env bash
# Coral Dev Board (Mendel Linux): the edge-pcam runtime with the Edge TPU delegate, no TensorFlow.
#   devices/coral-dev-board/setup.sh [--with-miniforge] [--runtime litert|tflite-runtime]
#        [--watch-service INBOX OUT | --no-watch-service]
#
# Mendel 5.3 ships Python 3.7; edge-pcam needs 3.10+ and ai-edge-litert / tflite-runtime 2.14 have no
# 3.7 wheels. With --with-miniforge this script installs Miniforge's Python 3.11 for aarch64 in
# ~/miniforge3 (about 300 MB; the board's eMMC has 8 GB) and builds the venv from it; without it,
# it stops and says so.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MINIFORGE=0
if [ "${1:-}" = --with-miniforge ]; then MINIFORGE=1; shift; fi
[ "$(uname -m)" = aarch64 ] || { echo "run this on the Dev Board (aarch64), not $(uname -m)" >&2; exit 2; }
sudo apt-get update
# libedgetpu1-std comes with Mendel from Coral's repository; make sure it is there and current
sudo apt-get install -y libedgetpu1-std curl
PYTHON=python3
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  if [ "$MINIFORGE" != 1 ]; then
    cat >&2 <<MSG
Mendel's Python is $(python3 -V 2>&1 | cut -d' ' -f2): too old for edge-pcam (needs 3.10+).
Run again with --with-miniforge to install Python 3.11 from Miniforge in ~/miniforge3, or
install any Python 3.10/3.11 for aarch64 yourself and pass it: ../install_runtime.sh --python /path/to/python3.11
MSG
    exit 2
  fi
  if [ ! -x "$HOME/miniforge3/bin/python3" ]; then
    curl -fsSL -o /tmp/miniforge.sh https://github.com/conda-forge/miniforge/releases/latest/download/Miniforge3-Linux-aarch64.sh
    bash /tmp/miniforge.sh -b -p "$HOME/miniforge3"
    "$HOME/miniforge3/bin/conda" install -y -q python=3.11
  fi
  PYTHON=$HOME/miniforge3/bin/python3
fi
"$HERE/../install_runtime.sh" --python "$PYTHON" "$@"
echo "then: edge-pcam predict --model MODEL_edgetpu.tflite --device pci PATCHES..."
