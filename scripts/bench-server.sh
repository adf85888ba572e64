# Sourced by the bench scripts: starts a fresh release `easel` on loopback ephemeral ports,
# pinned to SERVER_CPUS (default 0), with SERVER_ARGS and any extra flags given, and waits
# for its "ready" line (10 s at most).
#   start_server BINDIR TRANSPORT [FLAG...]
# Sets: pid, dir (its data dir, removed by stop_server), secret, http (HTTP address), hash
# (certificate SHA-256) and url (for TRANSPORT: wt, quic or ws).
start_server() {
  local bin=$1 transport=$2; shift 2
  dir=$(mktemp -d); secret=bench-secret-0123456789abcdef0123456789
  # shellcheck disable=SC2086 # SERVER_ARGS is a list of flags.
  taskset -c "${SERVER_CPUS:-0}" "$bin/easel" --data-dir "$dir" --jwt-secret "$secret" ${SERVER_ARGS:-} "$@" \
    --wt-addr 127.0.0.1:0 --quic-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 > "$dir/ready" 2> "$dir/log" &
  pid=$!
  for _ in $(seq 100); do grep -q ready "$dir/ready" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$dir/ready" || { echo "the server did not start:" >&2; cat "$dir/log" >&2; kill $pid; exit 1; }
  local wt quic
  read -r wt quic http hash < <(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["wt"],d["quic"],d["http"],d["cert_sha256"])' "$dir/ready")
  case $transport in
    wt) url="https://$wt/";; quic) url="easel+quic://$quic";; ws) url="ws://$http/ws";;
    *) echo "transport: wt, quic or ws" >&2; kill $pid; exit 2;;
  esac
}

stop_server() {
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$dir"
}
