#!/usr/bin/env bash
# The lecture load (`easel-load --scenario lecture`) straight at a fresh server: 1 teacher and
# VIEWERS viewers (default 2000) joining one room, the server pinned to SERVER_CPUS (default 0)
# and the generator to GEN_CPUS (default 1). Bounded: the join storm (at most what the
# connects take), 3 s warm-up, 15 s measured; the generator is killed after 180 s regardless.
#   scripts/bench-lecture.sh BINDIR wt|quic|ws OUT.json
#   env: VIEWERS (2000), OBSERVERS (5 SDK viewers), PROCESSES (2), CONCURRENCY (64 connects in
#        flight per process), SERVER_CPUS, GEN_CPUS, SERVER_ARGS (extra server flags)
# The report has join-to-synced, teacher cursor, chat, poll and hand-raise latency with the
# budgets' verdicts (also on OUT.json.txt), closes by code, and both processes' CPU; the
# server's drop and close counters go to OUT.json.metrics.
set -euo pipefail
bin=$1; transport=$2; out=$3
viewers=${VIEWERS:-2000}
# Each client holds a socket (and QUIC, one per connection): make room for them.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
. "$(dirname "$0")/bench-server.sh"
start_server "$bin" "$transport" --max-participants $((viewers + 1))
status=0
timeout 180 taskset -c "${GEN_CPUS:-1}" "$bin/easel-load" --scenario lecture --url "$url" --cert-hash "$hash" \
  --jwt-secret "$secret" --room lecture/bench/hall --clients "$viewers" --observers "${OBSERVERS:-5}" \
  --processes "${PROCESSES:-2}" --connect-concurrency "${CONCURRENCY:-64}" \
  --warmup 3 --duration 15 --server-pid $pid --label "$transport" --json "$out" > "$out.txt" 2>&1 || status=$?
# What the server dropped or closed, by reason, from its Prometheus metrics.
curl -s "http://$http/metrics" | grep -E '^easel_[a-z_]*(dropped|slow|closed|evict)[a-z_]*' > "$out.metrics" || true
stop_server
exit $status
