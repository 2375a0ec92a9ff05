#!/usr/bin/env bash
# usdt-tests.sh — the USDT probes (docs/OBSERVABILITY.md): their notes are in
# libaether.so and aetherd (readelf -n); then, as root, bpftrace attached to a
# running subscriber and to the daemon sees them fire with the right
# arguments. Mounts tracefs at /sys/kernel/tracing when absent and installs
# Debian's bpftrace when missing; says so and skips the live part when not
# root, or when the kernel or its permissions refuse.
set -euo pipefail
cd "$(dirname "$0")/.."
RELEASE=${CARGO_TARGET_DIR:-target}/release
cargo build --release -q -p aether -p aetherd -p aether-cli

notes() { # notes BINARY PROVIDER PROBE...
  local out=$1 provider=$2 p
  shift 2
  out=$(readelf -n "$out")
  for p in "$@"; do
    grep -A1 "Provider: $provider" <<<"$out" | grep -qx "    Name: $p" ||
      { echo "usdt-tests: no $provider:$p note in $out" >&2; return 1; }
  done
}
notes "$RELEASE/libaether.so" aether publish receive lost wait_begin wait_end wake connect
notes "$RELEASE/aetherd" aetherd client_connect client_dead topic_create topic_delete refused
echo "ok - SDT notes: aether:{publish,receive,lost,wait_begin,wait_end,wake,connect} in libaether.so, aetherd:{client_connect,client_dead,topic_create,topic_delete,refused} in aetherd"

skip() { echo "skipped - live probes: $1"; exit 0; }
[ "$(id -u)" = 0 ] || skip "not root"
if [ ! -e /sys/kernel/tracing/available_events ]; then
  echo "usdt-tests: mounting tracefs at /sys/kernel/tracing"
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || skip "cannot mount tracefs"
fi
if ! command -v bpftrace >/dev/null; then
  echo "usdt-tests: installing bpftrace with apt-get"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bpftrace >/dev/null; } ||
    skip "bpftrace is not installable"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/aether-usdt.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
SOCK=$TMP/s.sock
export AETHER_NO_AUTOSTART=1 AETHER_SOCKET=$SOCK
"$RELEASE/aetherd" --socket "$SOCK" --state-dir "$TMP/state" 2>"$TMP/aetherd.log" &
DAEMON=$!
pids+=("$DAEMON")
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
"$RELEASE/aether-cli" create usdt-topic --policy reliable >/dev/null
"$RELEASE/aether-cli" sub usdt-topic >"$TMP/sub.out" 2>&1 &
SUB=$!
pids+=("$SUB")
for _ in $(seq 100); do grep -q subscribed "$TMP/sub.out" && break; sleep 0.05; done

# bpftrace -p PID SCRIPT, output to FILE, until it has attached.
attach() { # attach PID FILE PROGRAM
  timeout 20 bpftrace -p "$1" -e "$3" >"$2" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do grep -q "Attaching" "$2" && return 0; sleep 0.05; done
  cat "$2"
  return 1
}
attach "$SUB" "$TMP/receive.out" \
  'usdt::aether:receive { printf("receive %s seq=%d len=%d\n", str(arg0), arg1, arg2); if (arg1 == 2) { exit(); } }' ||
  skip "bpftrace could not attach (kernel or permissions)"
attach "$DAEMON" "$TMP/refused.out" \
  'usdt::aetherd:refused { printf("refused op=%d status=%d %s\n", arg1, (int32)arg2, str(arg3)); exit(); }' ||
  skip "bpftrace could not attach to aetherd"
sleep 0.5
printf 'one\ntwo2\nthree\n' | "$RELEASE/aether-cli" pub usdt-topic >/dev/null 2>&1
"$RELEASE/aether-cli" sub usdt-topic --from earliest --count 1 --timeout 1 >/dev/null 2>&1 || true # not durable: refused
for _ in $(seq 200); do
  grep -q "seq=2" "$TMP/receive.out" && grep -q "refused" "$TMP/refused.out" && break
  sleep 0.05
done
cat "$TMP/receive.out" "$TMP/refused.out"
grep -qx "receive usdt-topic seq=0 len=3" "$TMP/receive.out"
grep -qx "receive usdt-topic seq=1 len=4" "$TMP/receive.out"
grep -q "refused op=5 status=-1 topic \"usdt-topic\" is not durable" "$TMP/refused.out"
echo "ok - live: bpftrace -p saw aether:receive (topic, seq, len) in a subscriber and aetherd:refused (op, status, why) in the daemon"
