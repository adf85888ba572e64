#!/usr/bin/env bash
# Cross-node cursor latency (cluster mode): two release `easel` nodes on one local nats-server,
# the protocol clients on node a, one SDK observer on node b (`cross`) or on a (`same`); the
# observer measures the others' cursors as an app sees them. Bounded: 5 s warm-up + 20 s.
#   scripts/bench-cross-node.sh BINDIR same|cross OUT.json
#   env: CLIENTS (20), SERVER_CPUS (node a, 0), B_CPUS (node b, 0), GEN_CPUS (1)
set -euo pipefail
bin=$1; mode=$2; out=$3
here=$(dirname "$0")
. "$here/bench-server.sh"
natsdir=$(mktemp -d)
nats_url=$("$here/nats.sh" start "$natsdir" 0 | tail -1)
SERVER_ARGS="--cluster $nats_url --node-id b" SERVER_CPUS=${B_CPUS:-0} start_server "$bin" quic
b_pid=$pid; b_dir=$dir; b_url=$url; b_hash=$hash
SERVER_ARGS="--cluster $nats_url --node-id a" start_server "$bin" quic
observer=()
[ "$mode" = cross ] && observer=(--observer-url "$b_url" --observer-cert-hash "$b_hash")
taskset -c "${GEN_CPUS:-1}" "$bin/easel-load" --url "$url" --cert-hash "$hash" --jwt-secret "$secret" \
  --clients "${CLIENTS:-20}" --observers 1 --lean-observers 0 "${observer[@]}" \
  --warmup 5 --duration 20 --server-pid $pid --label "$mode" --json "$out" > "$out.txt" 2>&1 || true
stop_server
kill "$b_pid"; wait "$b_pid" 2>/dev/null || true; rm -rf "$b_dir"
"$here/nats.sh" stop "$natsdir" >/dev/null; rm -rf "$natsdir"
