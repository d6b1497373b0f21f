#!/usr/bin/env bash
# Install edge-pcam-watch.service (systemd): `edge-pcam watch INBOX --out OUT` as USER, started at boot.
#
#   sudo devices/watch-service/install.sh --inbox DIR --out DIR [--user USER] [--venv DIR]
#        [--model FILE] [--settle SECONDS] [--restart on-failure|always|no] [--restart-sec SECONDS]
#        [--root DIR] [--dry-run]
#
# --user: who runs it (default: the user who called sudo); --venv: the edge-pcam virtual environment
# (default: that user's ~/edge-pcam-venv, where install_runtime.sh puts it). The folders are created
# and given to USER. Writes /etc/edge-pcam/watch.env (folders and options) and
# /etc/systemd/system/edge-pcam-watch.service (user, venv, restart policy), then enables and starts it.
# --root DIR writes under DIR instead of / and leaves systemd alone; --dry-run prints the two files.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
INBOX= OUT= MODEL= SETTLE= ROOT= DRY=0
RUN_AS=${SUDO_USER:-$(id -un)}
VENV=
RESTART=on-failure RESTART_SEC=10
while [ $# -gt 0 ]; do
  case $1 in
    --inbox) INBOX=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --user) RUN_AS=$2; shift 2 ;;
    --venv) VENV=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --settle) SETTLE=$2; shift 2 ;;
    --restart) RESTART=$2; shift 2 ;;
    --restart-sec) RESTART_SEC=$2; shift 2 ;;
    --root) ROOT=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    *) echo "unknown option $1 (see the top of $0)" >&2; exit 2 ;;
  esac
done
[ -n "$INBOX" ] && [ -n "$OUT" ] || { echo "--inbox and --out are required" >&2; exit 2; }
case $RESTART in on-failure|always|no|on-abnormal) ;; *) echo "--restart: on-failure, always, on-abnormal or no" >&2; exit 2 ;; esac
case $RESTART_SEC in ''|*[!0-9]*) echo "--restart-sec must be a whole number of seconds" >&2; exit 2 ;; esac
HOME_DIR=$(getent passwd "$RUN_AS" | cut -d: -f6) || true
[ -n "$HOME_DIR" ] || { echo "no such user: $RUN_AS" >&2; exit 2; }
GROUP=$(id -gn "$RUN_AS")
VENV=${VENV:-$HOME_DIR/edge-pcam-venv}
INBOX=$(realpath -m "$INBOX") OUT=$(realpath -m "$OUT")
OPTIONS=""
[ -n "$MODEL" ] && OPTIONS="--model $(realpath -m "$MODEL")"
[ -n "$SETTLE" ] && OPTIONS="$OPTIONS --settle $SETTLE"
OPTIONS=${OPTIONS# }

fill() {  # the template $1 with this installation's values
  sed -e "s|@USER@|$RUN_AS|g" -e "s|@GROUP@|$GROUP|g" -e "s|@VENV@|$VENV|g" -e "s|@RESTART@|$RESTART|g" \
      -e "s|@RESTART_SEC@|$RESTART_SEC|g" -e "s|@INBOX@|$INBOX|g" -e "s|@OUT@|$OUT|g" -e "s|@OPTIONS@|$OPTIONS|g" "$1"
}
if [ "$DRY" = 1 ]; then
  echo "# /etc/systemd/system/edge-pcam-watch.service"; fill "$HERE/edge-pcam-watch.service"
  echo "# /etc/edge-pcam/watch.env"; fill "$HERE/watch.env"
  exit 0
fi
if [ -z "$ROOT" ]; then
  [ "$(id -u)" = 0 ] || { echo "run with sudo (it writes to /etc and starts a service)" >&2; exit 2; }
  [ -x "$VENV/bin/edge-pcam" ] || { echo "$VENV/bin/edge-pcam not found: run your board's setup.sh first, or pass --venv" >&2; exit 2; }
fi
mkdir -p "$ROOT$INBOX" "$ROOT$OUT" "$ROOT/etc/edge-pcam" "$ROOT/etc/systemd/system"
[ -n "$ROOT" ] || chown "$RUN_AS:$GROUP" "$INBOX" "$OUT"
fill "$HERE/watch.env" > "$ROOT/etc/edge-pcam/watch.env"
fill "$HERE/edge-pcam-watch.service" > "$ROOT/etc/systemd/system/edge-pcam-watch.service"
if [ -z "$ROOT" ]; then
  systemctl daemon-reload
  systemctl enable --now edge-pcam-watch.service
  echo "edge-pcam-watch is running as $RUN_AS: slides into $INBOX, results in $OUT"
  echo "follow it with: journalctl -u edge-pcam-watch -f"
fi
