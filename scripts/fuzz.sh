#!/usr/bin/env bash
# Runs every easel-proto fuzz target (fuzz/fuzz_targets/) for a while, on the stable toolchain.
#
#   scripts/fuzz.sh                 each target 10 s, from a copy of the committed corpus (CI)
#   scripts/fuzz.sh --seconds 600   longer
#   scripts/fuzz.sh --grow          add what the run finds to fuzz/corpus/ (then minimize with
#                                   cargo-fuzz's `cmin`, see fuzz/README.md, before committing)
#
# The targets are built with the coverage instrumentation cargo-fuzz uses (`-Cpasses=sancov-module`
# and its counters), without a sanitizer, so no nightly compiler is needed; `--target` keeps those
# flags off build scripts and proc macros. A crash fails the script and leaves its input in
# fuzz/artifacts/<target>/: turn it into a test in proto-spec/tests/it/malformed.rs, then fix it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=10
grow=false
while (($#)); do
  case "$1" in
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    --grow) grow=true; shift ;;
    *) echo "usage: $0 [--seconds N] [--grow]" >&2; exit 2 ;;
  esac
done

triple=$(rustc -vV | awk '/^host:/ { print $2 }')
RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
  cargo build --release --locked --bins --target "$triple"

targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^easel-proto-fuzz$')
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# The targets run side by side (each is one process on one core): the CI run takes the time of
# one, not the sum.
pids=()
for t in $targets; do
  corpus=corpus/$t
  if ! $grow; then
    # A copy: what a short run finds is not worth committing unminimized.
    cp -r "corpus/$t" "$scratch/$t"
    corpus=$scratch/$t
  fi
  mkdir -p "artifacts/$t"
  printf '==> fuzzing %s for %s s\n' "$t" "$seconds"
  "target/$triple/release/$t" "$corpus" -max_total_time="$seconds" -artifact_prefix="artifacts/$t/" \
    -print_final_stats=1 >"$scratch/$t.log" 2>&1 &
  pids+=("$!")
done
failed=0
i=0
for t in $targets; do
  status=0
  wait "${pids[$i]}" || status=$?
  i=$((i + 1))
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$scratch/$t.log" >&2
    echo "fuzz target $t failed (exit $status): its input is in fuzz/artifacts/$t/" >&2
    failed=1
    continue
  fi
  printf '%s: ' "$t"
  grep -E '^(Done|stat::peak_rss_mb)' "$scratch/$t.log" | tr '\n' ' '
  echo
done
exit "$failed"
