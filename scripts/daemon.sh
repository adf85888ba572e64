# Sourced by the scripts that run a private daemon for the tests (janus.sh, nats.sh).

# stop_pidfile FILE WHAT: stops the process FILE names and removes FILE. SIGTERM first, so the
# daemon can flush (nats-server its JetStream files, Janus its sessions); after 5 s, SIGKILL.
stop_pidfile() {
  local file="$1" pid
  [ -f "$file" ] || return 0
  pid="$(cat "$file")"
  rm -f "$file"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
}
