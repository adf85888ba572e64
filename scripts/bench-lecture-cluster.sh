#!/usr/bin/env bash
# The lecture load over a cluster: NODES (default 3) release `easel` nodes on one local
# nats-server, 1 teacher and the SDK viewers on node 1, VIEWERS (default 2000) protocol viewers
# spread round-robin over all nodes (`easel-load --node-url`). Nodes share SERVER_CPUS (default
# 0), the generator GEN_CPUS (default 1). Bounded like scripts/bench-lecture.sh (180 s at most).
#   scripts/bench-lecture-cluster.sh BINDIR OUT.json
#   env: NODES, VIEWERS, OBSERVERS (5), PROCESSES (2), CONCURRENCY (64), SERVER_CPUS, GEN_CPUS
# The report (OUT.json, OUT.json.txt) is easel-load's: join-to-synced, teacher cursor, chat,
# poll and hand-raise latency at every viewer, wherever its node; node 1's CPU.
set -euo pipefail
bin=$1; out=$2
nodes=${NODES:-3}; viewers=${VIEWERS:-2000}
here=$(dirname "$0")
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
. "$here/bench-server.sh"
natsdir=$(mktemp -d)
nats_url=$("$here/nats.sh" start "$natsdir" 0 | tail -1)
pids=(); dirs=(); node_args=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "${dirs[@]}"
  "$here/nats.sh" stop "$natsdir" >/dev/null || true; rm -rf "$natsdir"
}
trap cleanup EXIT
for n in $(seq 2 "$nodes"); do
  SERVER_ARGS="--cluster $nats_url --node-id n$n" start_server "$bin" quic --max-participants $((viewers + 1))
  pids+=("$pid"); dirs+=("$dir"); node_args+=(--node-url "$url" --node-cert-hash "$hash")
done
SERVER_ARGS="--cluster $nats_url --node-id n1" start_server "$bin" quic --max-participants $((viewers + 1))
pids+=("$pid"); dirs+=("$dir")
status=0
timeout 180 taskset -c "${GEN_CPUS:-1}" "$bin/easel-load" --scenario lecture --url "$url" --cert-hash "$hash" \
  "${node_args[@]}" --jwt-secret "$secret" --room lecture/bench/hall --clients "$viewers" \
  --observers "${OBSERVERS:-5}" --processes "${PROCESSES:-2}" --connect-concurrency "${CONCURRENCY:-64}" \
  --warmup 3 --duration 15 --server-pid "$pid" --label "cluster-$nodes" --json "$out" > "$out.txt" 2>&1 || status=$?
curl -s "http://$http/metrics" | grep -E '^easel_[a-z_]*(dropped|slow|closed|evict|cluster)[a-z_]*' > "$out.metrics" || true
exit $status
