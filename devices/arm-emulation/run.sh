#!/usr/bin/env bash
# ARM proof on an x86-64 machine: the device runtime (edge-pcam predict and gradcam) on
# aarch64 under qemu user-mode emulation, with ai-edge-litert and tflite-runtime, compared
# with the same commands on this machine. Correctness, not speed.
#
#   sudo devices/arm-emulation/run.sh            # or: make arm-check
#
# Steps (each reused from the cache when present):
#  1. qemu-user-static 10 from bookworm-backports (bookworm's 7.2 crashes ai-edge-litert: it
#     hands over the host's /proc/cpuinfo), registered with binfmt_misc ("F" flag, so the root
#     needs no qemu binary inside) before anything runs an aarch64 binary; where binfmt_misc
#     cannot be registered (an unprivileged container), proot -q runs the root's binaries
#     through qemu-aarch64 instead (EDGE_PCAM_ARM_RUNNER=proot forces it);
#  2. an arm64 Debian bookworm root built with debootstrap in two stages (--foreign on the
#     host, --second-stage inside the root through the runner of step 1; about 4-10 minutes and
#     480 MB the first time), kept as ${CACHE}/arm64-bookworm.tar outside the repository;
#     QEMU_CPU pins cortex-a72 (Raspberry Pi 4) and cortex-a76 (Raspberry Pi 5); /proc, /sys
#     and /dev are mounted inside the root;
#  3. aarch64 wheels downloaded on this machine with pip download (pip inside the emulated root
#     cannot verify TLS here) and installed offline: ai-edge-litert 2.3.0 (manylinux_2_27) with
#     numpy 2 in one venv; tflite-runtime 2.14.0 (manylinux_2_34) in a second venv made with
#     --system-site-packages, on Debian's numpy 1.24 (tflite-runtime needs numpy<2);
#  4. edge-pcam predict and gradcam on synthetic patches with both interpreters, both CPUs, and
#     every model given, compared with this machine: identical labels, int8 probabilities
#     within one output quantization step, float probabilities within 1e-5.
#
# Environment: EDGE_PCAM_ARM_CACHE (default ~/.cache/edge-pcam), ARM_CPUS (default
# "cortex-a72 cortex-a76"), ARM_MODELS (folders; default: tests/fixtures/models, the bundled
# edge_pcam/models and benchmarks/results/conversion/*/), ARM_REPORT (default benchmarks/results/arm64-emulated.md), PYTHON (the x86
# venv with ai-edge-litert, default .venv/bin/python), TFLITE_PYTHON (x86 tflite-runtime venv,
# default .venv-tflite/bin/python, skipped when absent).
set -euo pipefail

REPO=${EDGE_PCAM_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
CACHE=${EDGE_PCAM_ARM_CACHE:-$HOME/.cache/edge-pcam}
ROOT_TAR=$CACHE/arm64-bookworm.tar
WHEELS=$CACHE/wheels-aarch64
CPUS=${ARM_CPUS:-cortex-a72 cortex-a76}
REPORT=${ARM_REPORT:-$REPO/benchmarks/results/arm64-emulated.md}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
TFLITE_PYTHON=${TFLITE_PYTHON:-$REPO/.venv-tflite/bin/python}
RUNNER=${EDGE_PCAM_ARM_RUNNER:-auto}
# Debian's archive as this machine's apt knows it (override with DEBIAN_MIRROR)
debian_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -n -e 's/^URIs: *//p' -e 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\) bookworm.*/\2/p' "$f"
  done | grep -v -e security -e '^$' | sed -n 1p || true
}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-$(debian_mirror)}
ROOT_PACKAGES=python3,python3-venv,python3-pip,python3-numpy,python3-pil,python3-h5py,ca-certificates
LITERT_VERSION=2.3.0
TFLITE_RUNTIME_VERSION=2.14.0

log() { printf 'arm-check: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(uname -m)" = x86_64 ] || die "run this on an x86-64 machine (it emulates aarch64)"
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts); run it with sudo"
[ -x "$PYTHON" ] || die "$PYTHON not found: run 'make install' first"
[ -n "$DEBIAN_MIRROR" ] || die "no Debian mirror in /etc/apt/sources.list*: set DEBIAN_MIRROR"
mkdir -p "$CACHE"

# --- 1. tools -----------------------------------------------------------------------------
qemu_major() { qemu-aarch64-static --version 2>/dev/null | sed -n 's/.*version \([0-9]*\).*/\1/p'; }
install_tools() {
  export DEBIAN_FRONTEND=noninteractive
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    log "adding bookworm-backports to apt sources (for qemu 10)"
    echo "deb $DEBIAN_MIRROR bookworm-backports main" > /etc/apt/sources.list.d/bookworm-backports.list
  fi
  apt-get update -qq
  apt-get install -y -qq debootstrap binfmt-support >/dev/null
  apt-get install -y -qq -t bookworm-backports qemu-user-static >/dev/null
}
if ! command -v debootstrap >/dev/null || [ "$(qemu_major)" = "" ] || [ "$(qemu_major)" -lt 10 ]; then
  install_tools
fi
[ "$(qemu_major)" -ge 10 ] || die "qemu-aarch64-static $(qemu_major) is too old (ai-edge-litert needs qemu >= 10)"
log "$(qemu-aarch64-static --version | head -1)"

# --- 2. how aarch64 binaries run, chosen before anything runs them -------------------------
# binfmt_misc: register qemu-aarch64 (with the F flag the kernel keeps the interpreter open,
# so it works inside a chroot with no qemu binary). Falls back to proot when registration is
# impossible (an unprivileged container). debootstrap's second stage already runs aarch64
# binaries, so this comes first: on a fresh machine nothing is registered yet.
register_binfmt() {
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || return 1
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register 2>/dev/null || return 1
  fi
  grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || return 1
  interp=$(sed -n 's/^interpreter //p' /proc/sys/fs/binfmt_misc/qemu-aarch64)
  # the registered interpreter must be qemu 10 (an older registration would crash ai-edge-litert)
  case "$interp" in /usr/libexec/qemu-binfmt/*|/usr/bin/qemu-aarch64*) ;; *) return 1 ;; esac
}
if [ "$RUNNER" = auto ]; then
  if register_binfmt; then RUNNER=binfmt; else RUNNER=proot; fi
elif [ "$RUNNER" = binfmt ]; then
  register_binfmt || die "cannot register qemu-aarch64 with binfmt_misc (try EDGE_PCAM_ARM_RUNNER=proot)"
fi
if [ "$RUNNER" = proot ] && ! command -v proot >/dev/null; then
  apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq proot >/dev/null
fi
log "running aarch64 binaries through: $RUNNER"

# run_aarch64 ROOT CPU CMD...: run CMD (a path inside ROOT) as root inside ROOT on the emulated CPU
run_aarch64() {
  local root=$1 cpu=$2; shift 2
  if [ "$RUNNER" = binfmt ]; then
    QEMU_CPU=$cpu chroot "$root" /usr/bin/env -i QEMU_CPU="$cpu" HOME=/root LANG=C.UTF-8 \
      PATH=/usr/sbin:/usr/bin:/sbin:/bin PYTHONPATH=/src "$@"
  else
    proot -0 -q "qemu-aarch64-static -cpu $cpu" -r "$root" -b /proc -b /sys -b /dev -w / /usr/bin/env -i \
      HOME=/root LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin PYTHONPATH=/src "$@"
  fi
}

# mount_system ROOT FS...: mount proc, sys and/or dev inside ROOT (binfmt; proot binds them
# itself); unmount_system undoes them, at the latest on exit
MOUNTS=()
mount_system() {
  [ "$RUNNER" = binfmt ] || return 0
  local root=$1 fs; shift
  for fs in "$@"; do
    case $fs in
      proc) mount -t proc proc "$root/proc" ;;
      sys) mount -t sysfs sysfs "$root/sys" ;;
      dev) mount --bind /dev "$root/dev" ;;
    esac
    MOUNTS+=("$root/$fs")
  done
}
unmount_system() {
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
  MOUNTS=()
}
trap unmount_system EXIT

# --- 3. the arm64 root --------------------------------------------------------------------
# Two stages: the first only downloads and unpacks (nothing of the target runs on the host),
# the second configures the packages inside the root through the runner chosen above.
if [ ! -s "$ROOT_TAR" ]; then
  build=$CACHE/build-root
  rm -rf "$build"
  log "debootstrap arm64 bookworm into $build (minutes; cached afterwards as $ROOT_TAR)"
  debootstrap --foreign --arch=arm64 --variant=minbase --include="$ROOT_PACKAGES" bookworm "$build" "$DEBIAN_MIRROR" \
    > "$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap (first stage) failed"; }
  log "debootstrap second stage inside the root ($RUNNER)"
  mount_system "$build" proc sys  # maintainer scripts need /proc; debootstrap makes /dev itself
  run_aarch64 "$build" cortex-a72 /debootstrap/debootstrap --second-stage --keep-debootstrap-dir \
    >> "$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap (second stage) failed"; }
  cat "$build/debootstrap/debootstrap.log" >> "$CACHE/debootstrap.log"
  # debootstrap retries a failed configuration five times and then reports success anyway: check
  unconfigured=$(run_aarch64 "$build" cortex-a72 /usr/bin/dpkg --audit 2>&1 || true)
  unmount_system
  [ -z "$unconfigured" ] || { printf '%s\n' "$unconfigured" | tail -20 >&2
                              die "debootstrap left packages unconfigured (see $CACHE/debootstrap.log)"; }
  rm -rf "$build/debootstrap"
  tar -C "$build" -cf "$ROOT_TAR.tmp" . && mv "$ROOT_TAR.tmp" "$ROOT_TAR"
  rm -rf "$build"
fi
WORK=$(mktemp -d "$CACHE/run.XXXXXX")
ROOT=$WORK/root
cleanup() {
  unmount_system
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$ROOT_TAR"
log "root: $ROOT (from $ROOT_TAR)"
mount_system "$ROOT" proc sys dev

# in_root CPU CMD...: run CMD inside the root on the emulated CPU
in_root() { run_aarch64 "$ROOT" "$@"; }
in_root cortex-a72 /bin/true || die "cannot run aarch64 binaries in $ROOT through $RUNNER"

# --- 4. wheels, downloaded here, installed offline inside ---------------------------------
mkdir -p "$WHEELS/litert" "$WHEELS/tflrt"
PIP=("$PYTHON" -m pip download --disable-pip-version-check -q --only-binary=:all: --python-version 3.11)
if ! ls "$WHEELS"/litert/ai_edge_litert-"$LITERT_VERSION"-*.whl >/dev/null 2>&1; then
  log "downloading aarch64 wheels for ai-edge-litert $LITERT_VERSION"
  "${PIP[@]}" --platform manylinux_2_27_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
    -d "$WHEELS/litert" "ai-edge-litert==$LITERT_VERSION" pillow h5py tifffile typer rich
fi
if ! ls "$WHEELS"/tflrt/tflite_runtime-"$TFLITE_RUNTIME_VERSION"-*.whl >/dev/null 2>&1; then
  log "downloading the aarch64 wheel of tflite-runtime $TFLITE_RUNTIME_VERSION"
  "${PIP[@]}" --platform manylinux_2_34_aarch64 --no-deps -d "$WHEELS/tflrt" "tflite-runtime==$TFLITE_RUNTIME_VERSION"
fi
mkdir -p "$ROOT/wheels" "$ROOT/src" "$ROOT/work"
cp -r "$WHEELS"/litert "$WHEELS"/tflrt "$ROOT/wheels/"
# the committed code (or the working tree outside git), on PYTHONPATH: no build step inside
if git -C "$REPO" rev-parse --verify -q HEAD >/dev/null; then
  git -C "$REPO" archive HEAD edge_pcam | tar -x -C "$ROOT/src"
  SOURCE="commit $(git -C "$REPO" rev-parse --short HEAD)"
else
  cp -a "$REPO/edge_pcam" "$ROOT/src/"
  SOURCE="working tree"
fi
CPU0=${CPUS%% *}
# pip under emulation takes minutes: the two venvs are cached too, keyed by the wheels they hold
VENV_TAR=$CACHE/arm64-venvs-$( (cd "$WHEELS" && ls litert tflrt) | sha256sum | cut -c1-12).tar
if [ -s "$VENV_TAR" ]; then
  tar -C "$ROOT/opt" -xf "$VENV_TAR"
  log "venvs: from $VENV_TAR"
else
  log "installing ai-edge-litert $LITERT_VERSION (numpy 2 venv) inside the root"
  in_root "$CPU0" /usr/bin/python3 -m venv /opt/venv-litert
  in_root "$CPU0" /opt/venv-litert/bin/pip install -q --no-index --find-links /wheels/litert \
    "ai-edge-litert==$LITERT_VERSION" pillow h5py tifffile typer rich
  log "installing tflite-runtime $TFLITE_RUNTIME_VERSION (Debian's numpy 1.x through --system-site-packages)"
  in_root "$CPU0" /usr/bin/python3 -m venv --system-site-packages /opt/venv-tflrt
  in_root "$CPU0" /opt/venv-tflrt/bin/pip install -q --no-index --find-links /wheels/tflrt --find-links /wheels/litert \
    "tflite-runtime==$TFLITE_RUNTIME_VERSION" typer rich tifffile
  tar -C "$ROOT/opt" -cf "$VENV_TAR.tmp" venv-litert venv-tflrt && mv "$VENV_TAR.tmp" "$VENV_TAR"
fi

# --- 5. the same commands on x86-64 and on aarch64 ----------------------------------------
if [ -n "${ARM_MODELS:-}" ]; then
  read -r -a MODEL_DIRS <<< "$ARM_MODELS"
else
  # the test fixtures, the bundled model, and the committed conversions of the real-subset model
  MODEL_DIRS=("$REPO/tests/fixtures/models" "$REPO/edge_pcam/models" "$REPO"/benchmarks/results/conversion/*/)
fi
# Each folder's files go to their own work/models/PARENT-FOLDER/ (e.g. conversion-ptq): folders
# hold files of the same name (edge_pcam_int8.tflite, edge_pcam_gradcam.tflite) that differ.
OUT=$WORK/results
mkdir -p "$OUT" "$ROOT/work/patches" "$ROOT/work/models"
FOUND=0
for d in "${MODEL_DIRS[@]}"; do
  [ -d "$d" ] || continue
  d=${d%/}
  tag=$(basename "$(dirname "$d")")-$(basename "$d")
  while IFS= read -r m; do
    [ -n "$m" ] || continue
    mkdir -p "$ROOT/work/models/$tag"
    cp "$m" "$ROOT/work/models/$tag/"
    companion=$("$PYTHON" "$REPO/devices/arm-emulation/check.py" companion "$m")
    [ -z "$companion" ] || cp "$companion" "$ROOT/work/models/$tag/"
    FOUND=$((FOUND + 1))
  done < <("$PYTHON" "$REPO/devices/arm-emulation/check.py" classifiers "$d")
done
[ "$FOUND" -gt 0 ] || die "no edge-pcam classifiers (.tflite with metadata) found in ${MODEL_DIRS[*]}"
"$PYTHON" "$REPO/devices/arm-emulation/check.py" patches "$ROOT/work/patches"

run_host() {  # run_host NAME PYTHON RUNTIME
  local name=$1 py=$2 runtime=$3 m base
  for m in "$ROOT"/work/models/*/*.tflite; do
    base=$(basename "$(dirname "$m")")/$(basename "$m" .tflite)
    "$PYTHON" "$REPO/devices/arm-emulation/check.py" is-classifier "$m" || continue
    mkdir -p "$OUT/$name/$base"
    (cd "$REPO" && "$py" -m edge_pcam predict "$ROOT/work/patches" --model "$m" --runtime "$runtime" --threads 1 \
      --json "$OUT/$name/$base/predict.json" >/dev/null 2>"$OUT/$name/$base/predict.log") || log "$name $base: predict failed"
    (cd "$REPO" && "$py" -m edge_pcam gradcam "$ROOT/work/patches" --model "$m" --runtime "$runtime" --threads 1 \
      --out "$OUT/$name/$base/gradcam" >/dev/null 2>"$OUT/$name/$base/gradcam.log") || log "$name $base: gradcam failed"
  done
}
failed() {  # failed LOG WHAT: record how a command ended (a crash by its signal) as the log's last line
  local rc=$1 log=$2 what=$3
  if [ "$rc" -gt 128 ]; then
    echo "$what crashed: signal SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128))) (exit status $rc)" >> "$log"
  else
    echo "$what failed: exit status $rc" >> "$log"
  fi
}
run_arm() {  # run_arm CPU VENV RUNTIME
  local cpu=$1 venv=$2 runtime=$3 name="aarch64-$1-$3" m base
  for m in "$ROOT"/work/models/*/*.tflite; do
    base=$(basename "$(dirname "$m")")/$(basename "$m" .tflite)
    "$PYTHON" "$REPO/devices/arm-emulation/check.py" is-classifier "$m" || continue
    mkdir -p "$ROOT/work/out/$name/$base"
    local dir=$ROOT/work/out/$name/$base rc=0
    (in_root "$cpu" "/opt/$venv/bin/python" -m edge_pcam predict /work/patches --model "/work/models/$base.tflite" \
      --runtime "$runtime" --threads 1 --json "/work/out/$name/$base/predict.json" >/dev/null 2>"$dir/predict.log") || rc=$?
    [ "$rc" = 0 ] || { failed "$rc" "$dir/predict.log" "edge-pcam predict"; log "$name $base: predict failed ($rc)"; }
    rc=0
    (in_root "$cpu" "/opt/$venv/bin/python" -m edge_pcam gradcam /work/patches --model "/work/models/$base.tflite" \
      --runtime "$runtime" --threads 1 --out "/work/out/$name/$base/gradcam" >/dev/null 2>"$dir/gradcam.log") || rc=$?
    [ "$rc" = 0 ] || { failed "$rc" "$dir/gradcam.log" "edge-pcam gradcam"; log "$name $base: gradcam failed ($rc)"; }
  done
  cp -r "$ROOT/work/out/$name" "$OUT/"
}

log "x86-64: ai-edge-litert"
run_host x86_64-ai-edge-litert "$PYTHON" litert
if [ -x "$TFLITE_PYTHON" ]; then
  log "x86-64: tflite-runtime"
  run_host x86_64-tflite-runtime "$TFLITE_PYTHON" tflite-runtime
fi
ENV_INFO=$OUT/environment.txt
{
  echo "source: $SOURCE"
  echo "qemu: $(qemu-aarch64-static --version | head -1)"
  echo "runner: $RUNNER"
  echo "root: Debian $(cat "$ROOT/etc/debian_version") arm64 (debootstrap --variant=minbase), python $(in_root "$CPU0" /usr/bin/python3 -c 'import platform; print(platform.python_version())')"
  echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(. /etc/os-release; echo "$PRETTY_NAME")"
} > "$ENV_INFO"
for cpu in $CPUS; do
  part=$(in_root "$cpu" /bin/sh -c "grep -m1 'CPU part' /proc/cpuinfo | cut -d: -f2" | xargs)
  arch=$(in_root "$cpu" /usr/bin/python3 -c 'import platform; print(platform.machine())')
  echo "cpu $cpu: uname -m $arch, CPU part $part" >> "$ENV_INFO"
  for pair in "venv-litert ai-edge-litert" "venv-tflrt tflite-runtime"; do
    set -- $pair
    versions=$(in_root "$cpu" "/opt/$1/bin/python" -c "import numpy, importlib.metadata as m; print('numpy', numpy.__version__, '$2', m.version('$2'))")
    echo "aarch64-$cpu-$2: $versions" >> "$ENV_INFO"
    log "aarch64 $cpu: $2 ($versions)"
    run_arm "$cpu" "$1" "$2"
  done
done
"$PYTHON" "$REPO/devices/arm-emulation/check.py" compare "$OUT" --models "$ROOT/work/models" --report "$REPORT" \
  --command "${ARM_COMMAND:-make arm-check}"
