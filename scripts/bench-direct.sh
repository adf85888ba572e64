#!/usr/bin/env bash
# easel-load straight at a fresh server, no proxy: the server pinned to SERVER_CPUS (default 0),
# the generator to GEN_CPUS (default 1), so each one's CPU share is its own; the report has both
# (`server.cpu_percent`, `generator.cpu_percent`: user+sys over the measured window, from
# /proc). Bounded: 5 s warm-up + 20 s measured.
#   scripts/bench-direct.sh BINDIR wt|quic|ws OUT.json
#   env: CLIENTS (50), OBSERVERS (5), PROCESSES (generator processes, default 1), SERVER_CPUS,
#        GEN_CPUS, SERVER_ARGS (extra server flags, e.g. "--tick-hz 30")
# BINDIR holds release `easel` and `easel-load` (target/release after
# `cargo build --release -p easel-server -p easel-benches`).
set -euo pipefail
bin=$1; transport=$2; out=$3
dir=$(mktemp -d); secret=bench-secret-0123456789abcdef0123456789
taskset -c "${SERVER_CPUS:-0}" "$bin/easel" --data-dir "$dir" --jwt-secret "$secret" ${SERVER_ARGS:-} \
  --wt-addr 127.0.0.1:0 --quic-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 > "$dir/ready" 2> "$dir/log" &
pid=$!
# The server prints one JSON "ready" line once it listens; give it 10 s.
for _ in $(seq 100); do grep -q ready "$dir/ready" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$dir/ready" || { echo "the server did not start:" >&2; cat "$dir/log" >&2; kill $pid; exit 1; }
read -r wt quic http hash < <(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["wt"],d["quic"],d["http"],d["cert_sha256"])' "$dir/ready")
case $transport in
  wt) url="https://$wt/";; quic) url="easel+quic://$quic";; ws) url="ws://$http/ws";;
  *) echo "transport: wt, quic or ws" >&2; kill $pid; exit 2;;
esac
taskset -c "${GEN_CPUS:-1}" "$bin/easel-load" --url "$url" --cert-hash "$hash" --jwt-secret "$secret" \
  --clients "${CLIENTS:-50}" --observers "${OBSERVERS:-5}" ${PROCESSES:+--processes "$PROCESSES"} \
  --warmup 5 --duration 20 --server-pid $pid --label "$transport" --json "$out" > "$out.txt" 2>&1
kill $pid; wait $pid 2>/dev/null || true; rm -rf "$dir"
