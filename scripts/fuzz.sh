#!/usr/bin/env bash
# The fuzz targets of every parser of shared, persisted or received bytes
# (crate aether-fuzz in fuzz-targets/; issue 22).
#
#   scripts/fuzz.sh [TARGET...]               the stable runner (what CI runs)
#   scripts/fuzz.sh --libfuzzer [TARGET...]   cargo-fuzz (libFuzzer) on nightly
#
# Stable: each target replays its committed corpus (fuzz/corpus/TARGET/) and
# regressions (fuzz/regressions/TARGET/), then runs random mutations of them
# for AETHER_FUZZ_SECONDS (default 60) seconds; AETHER_FUZZ_SEED reproduces a
# run (each prints its seed). A crash or hang is saved under
# AETHER_FUZZ_ARTIFACTS (default $TMPDIR/aether-fuzz-findings) and printed in hex.
#
# libFuzzer: each target for RUNS (default 10000000) executions, or for
# MAX_TOTAL_TIME seconds if set, coverage-guided; new inputs go to a scratch
# corpus (FUZZ_SCRATCH, default target/fuzz-scratch/TARGET), the committed
# corpus is read only (minimize a grown one into it with `cargo fuzz cmin`).
# Findings go to fuzz/artifacts/TARGET/. Needs `cargo +nightly` and
# cargo-fuzz (`cargo install cargo-fuzz`).
#
# A finding becomes a regression: fix the parser, then put the input in
# fuzz/regressions/TARGET/ (both runners replay it every time).
set -euo pipefail
cd "$(dirname "$0")/.."

all=(protocol_request protocol_reply admin_request config segment wal envelope)
mode=stable
if [ "${1:-}" = "--libfuzzer" ]; then
  mode=libfuzzer
  shift
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

if [ "$mode" = stable ]; then
  export AETHER_FUZZ_SECONDS="${AETHER_FUZZ_SECONDS:-60}"
  echo "== Fuzz targets, stable runner: ${AETHER_FUZZ_SECONDS} s each"
  cargo build -p aether-fuzz --tests --quiet
  for t in "${targets[@]}"; do
    cargo test -p aether-fuzz --test corpus --quiet -- --exact "$t" --nocapture --test-threads=1
  done
  exit 0
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh --libfuzzer: no nightly toolchain (rustup toolchain install nightly); the stable runner is scripts/fuzz.sh" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh --libfuzzer: cargo-fuzz is not installed (cargo install cargo-fuzz); the stable runner is scripts/fuzz.sh" >&2
  exit 1
fi
runs="${RUNS:-10000000}"
limit=(-runs="$runs")
[ -z "${MAX_TOTAL_TIME:-}" ] || limit=(-max_total_time="$MAX_TOTAL_TIME")
target_dir="${CARGO_TARGET_DIR:-target}/libfuzzer"
# No sanitizer: the targets are safe Rust but for the segment's shared
# mapping, which AddressSanitizer does not watch; debug assertions on
# (integer overflow is a finding).
cargo +nightly fuzz build -s none -a --target-dir "$target_dir"
summary=()
for t in "${targets[@]}"; do
  scratch="${FUZZ_SCRATCH:-target/fuzz-scratch}/$t"
  mkdir -p "$scratch" "fuzz/artifacts/$t"
  dirs=("$scratch" "fuzz/corpus/$t")
  [ ! -d "fuzz/regressions/$t" ] || dirs+=("fuzz/regressions/$t")
  echo "== libFuzzer: $t (${limit[*]})"
  log="$scratch.log"
  cargo +nightly fuzz run -s none -a --target-dir "$target_dir" "$t" "${dirs[@]}" -- \
    "${limit[@]}" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" 2>&1 | tee "$log" | grep -E '^(#[0-9]+\s+(DONE|pulse)|Done|stat::|==|SUMMARY|.*panicked)' || true
  execs=$(grep -oE 'stat::number_of_executed_units:\s+[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  rate=$(grep -oE 'stat::average_exec_per_sec:\s+[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  summary+=("$t: $execs executions, $rate/s")
  if grep -qE '^(==[0-9]+==|SUMMARY|.*panicked)|Test unit written to' "$log"; then
    echo "FAILED: $t found something; see $log and fuzz/artifacts/$t/" >&2
    printf '%s\n' "${summary[@]}"
    exit 1
  fi
done
printf '%s\n' "${summary[@]}"
