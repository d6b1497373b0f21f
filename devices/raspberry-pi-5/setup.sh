#!/usr/bin/env bash
# Raspberry Pi 5 (64-bit Raspberry Pi OS bookworm): install the edge-pcam runtime, no TensorFlow.
#   devices/raspberry-pi-5/setup.sh [--runtime litert|tflite-runtime] [--venv DIR] [--watch-service INBOX OUT | --no-watch-service]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
[ "$(uname -m)" = aarch64 ] || { echo "this is $(uname -m): the Pi 5 needs the 64-bit Raspberry Pi OS" >&2; exit 2; }
sudo apt-get update
sudo apt-get install -y python3-venv python3-pip
"$HERE/../install_runtime.sh" "$@"
echo "for steady benchmark figures: sudo apt-get install -y linux-cpupower && sudo cpupower frequency-set --governor performance"
echo "(the Pi 5 throttles without its active cooler under sustained load)"
