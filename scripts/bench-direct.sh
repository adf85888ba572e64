#!/usr/bin/env bash
# easel-load straight at a fresh server, no proxy: the server pinned to SERVER_CPUS (default 0),
# the generator to GEN_CPUS (default 1), so each one's CPU share is its own; the report has both
# (`server.cpu_percent`, `generator.cpu_percent`: user+sys over the measured window, from
# /proc). Bounded: 5 s warm-up + 20 s measured.
#   scripts/bench-direct.sh BINDIR wt|quic|ws OUT.json
#   env: CLIENTS (50), OBSERVERS (5), PROCESSES (generator processes, default 1), SERVER_CPUS,
#        GEN_CPUS, SERVER_ARGS (extra server flags, e.g. "--tick-hz 30"), LOAD_ARGS (extra
#        easel-load flags, e.g. "--op-every-ms 1000000" for cursors only)
# BINDIR holds release `easel` and `easel-load` (target/release after
# `cargo build --release -p easel-server -p easel-benches`).
set -euo pipefail
bin=$1; transport=$2; out=$3
. "$(dirname "$0")/bench-server.sh"
start_server "$bin" "$transport"
taskset -c "${GEN_CPUS:-1}" "$bin/easel-load" --url "$url" --cert-hash "$hash" --jwt-secret "$secret" \
  --clients "${CLIENTS:-50}" --observers "${OBSERVERS:-5}" ${PROCESSES:+--processes "$PROCESSES"} \
  --warmup 5 --duration 20 ${LOAD_ARGS:-} --server-pid $pid --label "$transport" --json "$out" > "$out.txt" 2>&1
stop_server
