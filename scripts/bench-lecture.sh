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
dir=$(mktemp -d); secret=bench-secret-0123456789abcdef0123456789
taskset -c "${SERVER_CPUS:-0}" "$bin/easel" --data-dir "$dir" --jwt-secret "$secret" ${SERVER_ARGS:-} \
  --max-participants $((viewers + 1)) \
  --wt-addr 127.0.0.1:0 --quic-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 > "$dir/ready" 2> "$dir/log" &
pid=$!
for _ in $(seq 100); do grep -q ready "$dir/ready" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$dir/ready" || { echo "the server did not start:" >&2; cat "$dir/log" >&2; kill $pid; exit 1; }
read -r wt quic http hash < <(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["wt"],d["quic"],d["http"],d["cert_sha256"])' "$dir/ready")
case $transport in
  wt) url="https://$wt/";; quic) url="easel+quic://$quic";; ws) url="ws://$http/ws";;
  *) echo "transport: wt, quic or ws" >&2; kill $pid; exit 2;;
esac
status=0
timeout 180 taskset -c "${GEN_CPUS:-1}" "$bin/easel-load" --scenario lecture --url "$url" --cert-hash "$hash" \
  --jwt-secret "$secret" --room lecture/bench/hall --clients "$viewers" --observers "${OBSERVERS:-5}" \
  --processes "${PROCESSES:-2}" --connect-concurrency "${CONCURRENCY:-64}" \
  --warmup 3 --duration 15 --server-pid $pid --label "$transport" --json "$out" > "$out.txt" 2>&1 || status=$?
# What the server dropped or closed, by reason, from its Prometheus metrics.
curl -s "http://$http/metrics" | grep -E '^easel_[a-z_]*(dropped|slow|closed|evict)[a-z_]*' > "$out.metrics" || true
kill $pid; wait $pid 2>/dev/null || true; rm -rf "$dir"
exit $status
