#!/usr/bin/env bash
# Raspberry Pi 4 (64-bit Raspberry Pi OS bookworm): install the edge-pcam runtime, no TensorFlow.
#   devices/raspberry-pi-4/setup.sh [--runtime litert|tflite-runtime] [--venv DIR] [--watch-service INBOX OUT | --no-watch-service]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
if [ "$(uname -m)" != aarch64 ]; then
  echo "this is $(uname -m), not aarch64: flash the 64-bit Raspberry Pi OS (32-bit armv7l has no ai-edge-litert wheels;" \
       "there, use --runtime tflite-runtime if your Python is 3.8-3.11)" >&2
  [ "$(uname -m)" = armv7l ] || exit 2
fi
sudo apt-get update
sudo apt-get install -y python3-venv python3-pip
"$HERE/../install_runtime.sh" "$@"
echo "for steady benchmark figures: sudo apt-get install -y linux-cpupower && sudo cpupower frequency-set --governor performance"
echo "(a Pi 4 throttles above 80 °C: use a heatsink or fan for long runs)"
