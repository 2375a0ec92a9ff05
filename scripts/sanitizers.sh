#!/usr/bin/env bash
# The Rust side's sanitizers (docs/RELIABILITY.md, "Sanitizers"). They need a
# nightly toolchain; where there is none (a fresh machine has only stable)
# this says so and checks nothing. The C and C++ programs run under
# ASan+UBSan in scripts/cmake-tests.sh and under valgrind in
# scripts/c-tests.sh, on stable.
#
#   Miri: the C API's boundary checks (libaether/src/ffi/tests.rs) and the
#     ring's reliable tests (libaether/tests/ring.rs, fewer rounds under
#     Miri), over heap memory standing in for the shared mapping (the
#     cfg(miri) shims in libaether/src/sys/). MIRI_RING=all runs every
#     reliable ring test (about 15 minutes here), else a quick subset.
#   ThreadSanitizer: libaether/tests/ring.rs (threads of one process over
#     one mapping): no report allowed, except in the lossy tests whose
#     readers copy records a publisher may overwrite meanwhile and check
#     afterwards (by design, docs/ARCHITECTURE.md): run apart, and counted.
#
#   bash scripts/sanitizers.sh [miri|tsan]...      (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${*:-miri tsan}
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "sanitizers: no nightly toolchain here: Miri and ThreadSanitizer not run (rustup toolchain install nightly --component miri rust-src)"
  exit 0
fi
target=$(rustc -vV | sed -n 's/^host: //p')
lossy="lossy_concurrent_reader_never_sees_torn_messages lossy_fast_publisher_never_laps_a_slow_one_mid_write"

for w in $what; do
  case $w in
  miri)
    if ! cargo +nightly miri --version >/dev/null 2>&1; then
      echo "sanitizers: nightly has no miri component: Miri not run (rustup component add --toolchain nightly miri rust-src)"
      continue
    fi
    # Weak-memory emulation off: this Miri stops with an internal error
    # ("cannot have empty store buffer") on the ring's mix of atomic stamps
    # and plain payload bytes over the same memory; data races are still checked.
    export MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-disable-weak-memory-emulation"
    export CARGO_TARGET_DIR=${MIRI_TARGET_DIR:-target/miri}
    echo "== Miri: the C API boundary"
    cargo +nightly miri test -q -p aether --lib ffi::
    echo "== Miri: the ring (reliable tests)"
    if [ "${MIRI_RING:-quick}" = all ]; then
      skip=()
      for t in $lossy lossy_lap_reports_exact_loss receive_wakes no_wake_up no_poll_wake_up pollable \
        abandoned_claim_is_skipped times_out slow_live_publisher sees_the_topic_deleted forged_stale impossible_horizon; do
        skip+=(--skip "$t")
      done
      cargo +nightly miri test -q -p aether --test ring -- "${skip[@]}"
    else
      cargo +nightly miri test -q -p aether --test ring -- single_publisher_round_trip_with_wraps \
        aborted_claim_is_skipped_without_loss a_loan_with_lowered_capacity_keeps_its_stride \
        oversized_message_is_rejected remote_messages_carry_their_origin
    fi
    unset MIRIFLAGS CARGO_TARGET_DIR
    ;;
  tsan)
    if [ ! -d "$(rustc +nightly --print sysroot)/lib/rustlib/src/rust/library" ]; then
      echo "sanitizers: nightly has no rust-src: ThreadSanitizer not run (rustup component add --toolchain nightly rust-src)"
      continue
    fi
    export RUSTFLAGS="-Zsanitizer=thread" RUSTDOCFLAGS="-Zsanitizer=thread"
    export CARGO_TARGET_DIR=${TSAN_TARGET_DIR:-target/tsan}
    skip=()
    for t in $lossy; do skip+=(--skip "$t"); done
    echo "== ThreadSanitizer: the ring (no report allowed)"
    TSAN_OPTIONS="halt_on_error=1" cargo +nightly test -q -Zbuild-std --target "$target" -p aether --test ring -- "${skip[@]}"
    echo "== ThreadSanitizer: the lossy overwrite tests (races by design, suppressed and counted)"
    # Suppressed, not printed: symbolizing and printing a report stalls the
    # racing thread long enough to time the test's reader out.
    log=$(mktemp) supp=$(mktemp)
    # (Any reader function: a lapped lossy reader may touch the overwritten
    # bytes from several; the count per function is printed.)
    printf 'race:*ring::Reader*%s*\n' copy_out read_header resync look committed_at_cursor record_at_cursor next receive >"$supp"
    # shellcheck disable=SC2086
    TSAN_OPTIONS="suppressions=$supp print_suppressions=1" \
      cargo +nightly test -q -Zbuild-std --target "$target" -p aether --test ring -- $lossy >"$log" 2>&1 ||
      { cat "$log"; rm -f "$log" "$supp"; exit 1; }
    grep -A8 "Matched" "$log" | grep -E "Matched|race:" || echo "(no race matched)"
    rm -f "$log" "$supp"
    unset RUSTFLAGS RUSTDOCFLAGS CARGO_TARGET_DIR
    ;;
  *) echo "sanitizers: unknown $w (miri, tsan)" >&2; exit 2 ;;
  esac
done
