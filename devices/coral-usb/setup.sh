#!/usr/bin/env bash
# Coral USB Accelerator on a Raspberry Pi (64-bit OS): libedgetpu from Coral's apt repository + the
# edge-pcam runtime, no TensorFlow.
#   devices/coral-usb/setup.sh [--max] [--runtime litert|tflite-runtime] [--venv DIR] [--watch-service INBOX OUT | --no-watch-service]
# --max installs libedgetpu1-max (full clock: faster, and the accelerator gets hot) instead of -std.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
FLAVOUR=std
if [ "${1:-}" = --max ]; then FLAVOUR=max; shift; fi
[ "$(uname -m)" = aarch64 ] || [ "$(uname -m)" = x86_64 ] || { echo "unsupported: $(uname -m)" >&2; exit 2; }
sudo apt-get update
sudo apt-get install -y curl gnupg python3-venv python3-pip
KEYRING=/usr/share/keyrings/coral-edgetpu.gpg
curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo gpg --dearmor --yes -o "$KEYRING"
echo "deb [signed-by=$KEYRING] https://packages.cloud.google.com/apt coral-edgetpu-stable main" \
  | sudo tee /etc/apt/sources.list.d/coral-edgetpu.list >/dev/null
sudo apt-get update
sudo apt-get install -y "libedgetpu1-$FLAVOUR"
"$HERE/../install_runtime.sh" "$@"
cat <<'MSG'
Unplug the USB Accelerator and plug it in again (the udev rule that libedgetpu installed applies on
the next connection; use a USB 3.0 port). The model must be compiled for the Edge TPU on an x86-64
Linux machine (Coral's edgetpu_compiler) from the int8 file; then:
  edge-pcam predict --model MODEL_edgetpu.tflite --device usb PATCHES...
  edge-pcam bench --models MODELS_DIR --data DATA --device coral-usb --out bench-coral-usb
MSG
