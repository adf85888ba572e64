#!/usr/bin/env bash
# Builds the browser SDK: the wasm core (crate easel-web, client-sdk/web) into client-sdk/web/pkg/,
# then the TypeScript driver, the demo page and loro-crdt's module into client-sdk/web/dist/
# (esbuild and tsc from the committed package-lock.json). Both are committed: the server embeds
# dist/. Installs what is missing first: the wasm32 target, wasm-bindgen-cli at exactly the
# Cargo.lock version of wasm-bindgen into .tools/, and the npm packages (npm ci).
#
#   scripts/build-web.sh                 rebuild client-sdk/web/pkg/ and client-sdk/web/dist/
#   scripts/build-web.sh --check         rebuild both into a temp dir; fail if a committed one differs
#   scripts/build-web.sh --check-bundle  only dist/, from the committed pkg/ (no Rust; seconds)
#   scripts/build-web.sh --test          run the wasm tests in Node (wasm-bindgen-test, real loro-crdt)
#   scripts/build-web.sh --tools         only install what is missing (scripts/test.sh runs this
#                                        beside its lints, so the later steps find it there)
#
# --check and --test may be given together. The wasm bytes depend on the Rust toolchain: the
# check compares against a pkg built with the same rustc (the one CI has).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

check=false
test=false
for arg in "$@"; do
  case "$arg" in
    --check) check=true ;;
    --test) test=true ;;
    --check-bundle) check_bundle=true ;;
    --tools) tools_only=true ;;
    *) echo "usage: $0 [--check] [--check-bundle] [--test] [--tools]" >&2; exit 2 ;;
  esac
done

web=client-sdk/web

# The npm packages of the committed lockfile (esbuild, typescript, loro-crdt).
npm_ci() {
  if ! (cd "$web" && npm ls --depth=0 >/dev/null 2>&1); then
    log "npm ci (client-sdk/web)"
    (cd "$web" && npm ci --no-audit --no-fund)
  fi
}

# Bundles the TypeScript and copies the wasm files into $1 (from the pkg in $2).
bundle() {
  local out=$1 from=$2
  npm_ci
  log "bundling the TypeScript SDK and the demo into $out"
  if [ "$from" != "$web/pkg" ]; then
    # The build reads ../pkg: build a copy of the sources against the fresh pkg.
    local src
    src=$(mktemp -d)
    cp -r "$web/ts" "$web/tsconfig.json" "$web/package.json" "$src/"
    ln -s "$PWD/$web/node_modules" "$src/node_modules"
    cp -r "$from" "$src/pkg"
    node "$src/ts/build.mjs" "$(realpath -m "$out")"
    rm -rf "$src"
  else
    node "$web/ts/build.mjs" "$(realpath -m "$out")"
  fi
  for f in "$out"/*.js "$out"/*.wasm; do
    echo "$(basename "$f"): $(stat -c %s "$f") bytes, $(gzip -9 -c "$f" | wc -c) gzipped"
  done
}

if ${check_bundle:-false}; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  bundle "$tmp/dist" "$web/pkg"
  if ! diff -rq "$web/dist" "$tmp/dist"; then
    echo "client-sdk/web/dist is stale: run scripts/build-web.sh and commit it" >&2
    exit 1
  fi
  log "client-sdk/web/dist is up to date"
  exit 0
fi

pkg=client-sdk/web/pkg
tools="$PWD/.tools"
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
[ -n "$version" ] || { echo "wasm-bindgen is not in Cargo.lock" >&2; exit 1; }

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
if ! "$tools/bin/wasm-bindgen" --version 2>/dev/null | grep -qx "wasm-bindgen $version"; then
  log "installing wasm-bindgen-cli $version into .tools/"
  # Not --locked: the CLI's own lockfile pins a webpki-roots the registry here lacks; the CLI's
  # version (which must equal the library's) is pinned by --version.
  # Unoptimized: the CLI only rewrites one small wasm file (under a second either way, same
  # bytes), and skipping LLVM's optimizations is most of its build time on a fresh CI machine.
  # No default features: they only give its test runner TLS (rustls, ring) for downloading a
  # WebDriver, which the Node tests never do; 12 s less to build here.
  CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 \
    cargo install wasm-bindgen-cli --version "$version" --root "$tools" --force --no-default-features \
      --bin wasm-bindgen --bin wasm-bindgen-test-runner
fi
if ${tools_only:-false}; then
  npm_ci
  exit 0
fi

# Compiles easel-web for the browser and generates the ES module (`--target web`) into $1.
build() {
  local out=$1
  log "building easel-web (wasm32, profile wasm-release) into $out"
  # Registry sources are named by a path without this machine's cargo home, so the bytes do not
  # depend on where cargo lives (workspace sources are already named relative to the workspace).
  RUSTFLAGS="--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo" \
    cargo build -p easel-web --target wasm32-unknown-unknown --profile wasm-release --locked
  rm -rf "$out"
  "$tools/bin/wasm-bindgen" --target web --remove-name-section --remove-producers-section \
    --out-dir "$out" target/wasm32-unknown-unknown/wasm-release/easel_web.wasm
  local wasm="$out/easel_web_bg.wasm"
  echo "easel_web_bg.wasm: $(stat -c %s "$wasm") bytes, $(gzip -9 -c "$wasm" | wc -c) gzipped (budget: 307200 gzipped)"
  if [ "$(gzip -9 -c "$wasm" | wc -c)" -gt 307200 ]; then
    echo "over the budget of 300 KB gzipped" >&2
    exit 1
  fi
}

if $check; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  build "$tmp/pkg"
  if ! diff -r "$pkg" "$tmp/pkg"; then
    echo "client-sdk/web/pkg is stale: run scripts/build-web.sh and commit it" >&2
    exit 1
  fi
  log "client-sdk/web/pkg is up to date"
  bundle "$tmp/dist" "$tmp/pkg"
  if ! diff -rq "$web/dist" "$tmp/dist"; then
    echo "client-sdk/web/dist is stale: run scripts/build-web.sh and commit it" >&2
    exit 1
  fi
  log "client-sdk/web/dist is up to date"
elif ! $test; then
  build "$pkg"
  bundle "$web/dist" "$pkg"
fi

if $test; then
  log "wasm tests (Node)"
  # The tests use the loro-crdt npm package, at the committed package-lock.json's version.
  npm_ci
  # The runner (.cargo/config.toml) loads the tests with require(); loro-crdt is found here.
  NODE_PATH="$PWD/client-sdk/web/node_modules" \
    cargo test -p easel-web --target wasm32-unknown-unknown --locked
fi
