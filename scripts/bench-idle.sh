#!/usr/bin/env bash
# Server memory at N idle sessions (default 10,000), each transport: `easel-probe --only idle`
# starts a fresh `easel`, connects N sessions (32 at a time), reads the server's RSS, joins
# them to rooms of 30 (a class each), reads it again. Bounded: N connects and joins plus 2×10 s
# of settling per transport.
#   scripts/bench-idle.sh BINDIR OUTDIR [TRANSPORT…]   (SESSIONS=10000, transports quic wt ws)
# BINDIR holds release `easel` and `easel-probe` (target/release after
# `cargo build --release -p easel-server -p easel-benches`). Writes OUTDIR/idle-TRANSPORT.json.
set -euo pipefail
bin=$1; out=$2; shift 2
transports=("$@")
[ $# -eq 0 ] && transports=(quic wt ws)
mkdir -p "$out"
# One descriptor per session on each side (the probe's QUIC and WebTransport clients bind one
# UDP socket per connection, like separate users would), plus slack.
ulimit -n "$(ulimit -Hn)"
for t in "${transports[@]}"; do
  "$bin/easel-probe" --server "$bin/easel" --transport "$t" --only idle \
    --idle-sessions "${SESSIONS:-10000}" --idle-room-size 30 --json "$out/idle-$t.json" > /dev/null
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["memory_per_idle_session"]; print(sys.argv[2], "empty", m["rss_empty_kib"]//1024, "MiB; connected", m["rss_connected_kib"]//1024, "MiB,", m["kib_per_connected_session"], "KiB/session; joined", m["rss_joined_kib"]//1024, "MiB,", m["kib_per_joined_session"], "KiB/session")' "$out/idle-$t.json" "$t"
done
