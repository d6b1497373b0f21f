#!/usr/bin/env bash
# The edge-pcam device runtime in a virtual environment: no TensorFlow. Used by each board's setup.sh.
#
#   devices/install_runtime.sh [--venv DIR] [--runtime litert|tflite-runtime] [--python PYTHON] [--source PATH]
#                              [--watch-service INBOX OUT | --no-watch-service]
#
# At the end it offers to install the watch-folder service (devices/watch-service/install.sh): asked on a
# terminal, or given with --watch-service INBOX OUT (or refused with --no-watch-service).
#
# litert (default): ai-edge-litert with numpy 2 (Linux aarch64/x86-64, macOS).
# tflite-runtime: tflite-runtime 2.14 with numpy<2 (pycoral's stack; Python 3.8-3.11 only; it cannot run
# dynamic-range files made by TensorFlow 2.21).
set -euo pipefail
VENV=$HOME/edge-pcam-venv
RUNTIME=litert
PYTHON=python3
SOURCE=$(cd "$(dirname "$0")/.." && pwd)
WATCH=ask WATCH_INBOX= WATCH_OUT=
while [ $# -gt 0 ]; do
  case $1 in
    --watch-service) WATCH=yes; WATCH_INBOX=$2; WATCH_OUT=$3; shift 3 ;;
    --no-watch-service) WATCH=no; shift ;;
    --venv) VENV=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --python) PYTHON=$2; shift 2 ;;
    --source) SOURCE=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "edge-pcam needs Python 3.10 or newer; $PYTHON is $version (see this board's README.md)" >&2
  exit 2
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --disable-pip-version-check -q --upgrade pip
case $RUNTIME in
  litert)
    "$VENV/bin/pip" install --disable-pip-version-check -q "$SOURCE" ;;
  tflite-runtime)
    # The slide readers have wheels for x86-64 and aarch64 only (elsewhere: apt install python3-openslide).
    case $(uname -m) in x86_64|aarch64) READERS="openslide-bin openslide-python imagecodecs" ;; *) READERS= ;; esac
    "$VENV/bin/pip" install --disable-pip-version-check -q 'numpy<2' 'tflite-runtime==2.14.*' pillow h5py tifffile typer rich $READERS
    "$VENV/bin/pip" install --disable-pip-version-check -q --no-deps "$SOURCE" ;;
  *) echo "--runtime must be litert or tflite-runtime" >&2; exit 2 ;;
esac
"$VENV/bin/python" - <<'PY'
import importlib.util
from edge_pcam.runtime.interpreter import resolve_runtime
backend = resolve_runtime("auto")
assert importlib.util.find_spec("tensorflow") is None, "TensorFlow got installed: the device side must not need it"
print(f"edge-pcam runtime ready: {backend.name} {backend.version}, no TensorFlow")
PY
echo "activate with: source $VENV/bin/activate   (then: edge-pcam predict --model MODEL.tflite PATCHES...)"
if [ "$WATCH" = ask ] && [ -t 0 ]; then
  read -r -p "Install the watch-folder service (scan each slide copied into a folder, at boot too)? [y/N] " answer
  if [ "${answer:-n}" = y ] || [ "${answer:-n}" = Y ]; then
    read -r -p "  inbox folder [/srv/edge-pcam/inbox]: " WATCH_INBOX
    read -r -p "  results folder [/srv/edge-pcam/results]: " WATCH_OUT
    WATCH=yes WATCH_INBOX=${WATCH_INBOX:-/srv/edge-pcam/inbox} WATCH_OUT=${WATCH_OUT:-/srv/edge-pcam/results}
  fi
fi
if [ "$WATCH" = yes ]; then
  sudo "$SOURCE/devices/watch-service/install.sh" --inbox "$WATCH_INBOX" --out "$WATCH_OUT" --user "$(id -un)" --venv "$VENV"
else
  echo "watch-folder service: sudo $SOURCE/devices/watch-service/install.sh --inbox DIR --out DIR (see README, In the lab)"
fi
