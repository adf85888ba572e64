#!/usr/bin/env bash
# Starts and stops a private Janus for Easel's SFU tests (and for trying the bridge locally).
#
#   scripts/janus.sh start RUN_DIR WS_PORT [ADMIN_KEY]   # prints nothing; ready when it returns
#   scripts/janus.sh stop RUN_DIR
#
# `start` installs Janus if it is missing (Debian package `janus`), makes sure the veth jlo0
# carries 127.0.0.2 (Janus ignores loopback interfaces for ICE: see shared/notes/janus.md),
# renders the config files of sfu-bridge/janus/ into RUN_DIR/conf with this instance's
# WebSocket port, RTP port range and VideoRoom admin key, starts Janus on 127.0.0.1 and waits
# (bounded) until its WebSocket port accepts connections. `stop` ends that one process.
# Needs root for the veth (sudo is used when not root).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
templates="$here/sfu-bridge/janus"

die() { printf 'janus.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=daemon.sh
. "$(dirname "$0")/daemon.sh"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

install_janus() {
  command -v janus >/dev/null && return
  printf 'janus.sh: installing janus\n' >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends janus iproute2 >&2
}

# Idempotent, and safe when two test runs race: whoever loses `ip link add` finds it there.
ensure_veth() {
  command -v ip >/dev/null || die "iproute2 (ip) is missing"
  if ! ip link show jlo0 >/dev/null 2>&1; then
    as_root ip link add jlo0 type veth peer name jlo1 2>/dev/null || ip link show jlo0 >/dev/null 2>&1 \
      || die "cannot create the veth jlo0 (root needed)"
  fi
  if ! ip -4 addr show dev jlo0 | grep -q 'inet 127\.0\.0\.2/'; then
    as_root ip addr add 127.0.0.2/32 dev jlo0 2>/dev/null || ip -4 addr show dev jlo0 | grep -q 'inet 127\.0\.0\.2/' \
      || die "cannot put 127.0.0.2 on jlo0"
  fi
  as_root ip link set jlo1 up
  as_root ip link set jlo0 up
}

libdir() {
  local so
  so="$(dpkg -L janus 2>/dev/null | grep '/plugins/libjanus_videoroom\.so$' | head -n1 || true)"
  [ -n "$so" ] || so="/usr/lib/$(uname -m)-linux-gnu/janus/plugins/libjanus_videoroom.so"
  [ -f "$so" ] || die "cannot find Janus's plugins (is the janus package installed?)"
  dirname "$(dirname "$so")"
}

start() {
  local dir="$1" port="$2" key="${3:-easel-dev-admin-key}"
  [[ "$port" =~ ^[0-9]+$ ]] || die "WS_PORT must be a number"
  # Tests start instances in parallel: one at a time installs and sets the veth up.
  exec 9>"${TMPDIR:-/tmp}/easel-janus-setup.lock"
  flock -w 600 9 || die "timed out waiting for another janus.sh to finish setting up"
  install_janus
  ensure_veth
  flock -u 9
  mkdir -p "$dir/conf"
  dir="$(cd "$dir" && pwd)"
  # 200 RTP ports per instance, chosen by the WebSocket port so parallel runs do not share.
  local rtp_min=$((40000 + (port % 100) * 200))
  local rtp_max=$((rtp_min + 199)) lib
  lib="$(libdir)"
  for f in "$templates"/*.jcfg; do
    sed -e "s|@CONFIGS@|$dir/conf|g" -e "s|@LIBDIR@|$lib|g" -e "s|@WS_PORT@|$port|g" \
      -e "s|@RTP_MIN@|$rtp_min|g" -e "s|@RTP_MAX@|$rtp_max|g" -e "s|@ADMIN_KEY@|$key|g" \
      "$f" >"$dir/conf/$(basename "$f")"
  done
  setsid janus -F "$dir/conf" -C "$dir/conf/janus.jcfg" -L "$dir/janus.log" -o \
    >"$dir/janus.out" 2>&1 </dev/null 9>&- &
  echo $! >"$dir/janus.pid"
  # Ready when the WebSocket port accepts: bounded to 10 s, checked every 50 ms.
  for _ in $(seq 200); do
    if ! kill -0 "$(cat "$dir/janus.pid")" 2>/dev/null; then
      tail -n 30 "$dir/janus.out" >&2 || true
      die "janus exited during start (log: $dir/janus.log)"
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  stop "$dir"
  die "janus did not open 127.0.0.1:$port within 10 s (log: $dir/janus.log)"
}

stop() {
  stop_pidfile "$1/janus.pid"
}

case "${1:-}" in
  start) [ $# -ge 3 ] || die "usage: $0 start RUN_DIR WS_PORT [ADMIN_KEY]"; start "$2" "$3" "${4:-}" ;;
  stop) [ $# -ge 2 ] || die "usage: $0 stop RUN_DIR"; stop "$2" ;;
  *) die "usage: $0 start RUN_DIR WS_PORT [ADMIN_KEY] | stop RUN_DIR" ;;
esac
