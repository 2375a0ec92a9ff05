#!/usr/bin/env bash
# The bridge beside its floor (docs/BENCHMARKS.md, "Bridge"): two hosts in
# network namespaces joined by a veth pair (made here, removed on exit);
# in alternating rounds, at 64 B and 64 KiB:
#   zenoh   two plain Zenoh sessions, one per host (what the bridge rides on)
#   bridged a publisher on host a's broker, a subscriber on host b's, the
#           brokers bridged (aetherd --bridge-*)
#   local   both on one broker (the ring alone)
# Latency: ping-pong, one way = round trip / 2. Throughput: reliable
# (Zenoh: CongestionControl::Block), first message to last at the sink.
# With STAGES=1, each side of the bridged link is also timed alone, the
# other side played by plain Zenoh: "send side" a publisher on a broker
# whose bridge sends to a Zenoh sink; "receive side" a Zenoh source putting
# envelopes (as a bridge does) to a broker whose bridge publishes them to a
# subscriber. The slower side bounds the bridged figure.
# As root (network namespaces).   ROUNDS=3 LAT_N=5000 TPUT_N=200000 [STAGES=1] scripts/bridge-bench.sh
# The binaries come from $CARGO_TARGET_DIR (default target/), built first unless BUILD=0.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bridge-bench: needs root (network namespaces)" >&2; exit 1; }
rounds=${ROUNDS:-3}
lat_n=${LAT_N:-5000}
tput_n=${TPUT_N:-200000}
# BUILD=0 runs the binaries already there (an older build kept aside, for A/B).
[ "${BUILD:-1}" = 0 ] || cargo build --release -q -p aetherd --bin aetherd --example bridge_bench
# Where cargo put them (CARGO_TARGET_DIR when set, as cargo reads it).
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/examples/bridge_bench
daemon=$target/release/aetherd

id=$$
na=aeth-bench-a-$id
nb=aeth-bench-b-$id
net=10.78.$((id % 250))
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bridge-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$na" 2>/dev/null || true
  ip netns del "$nb" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

ip netns add "$na"
ip netns add "$nb"
ip -n "$na" link set lo up
ip -n "$nb" link set lo up
ip link add "ba$((id % 100000))" netns "$na" type veth peer name "bb$((id % 100000))" netns "$nb"
ip -n "$na" addr add "$net.1/24" dev "ba$((id % 100000))"
ip -n "$nb" addr add "$net.2/24" dev "bb$((id % 100000))"
ip -n "$na" link set "ba$((id % 100000))" up
ip -n "$nb" link set "bb$((id % 100000))" up

ip netns exec "$na" "$daemon" --socket "$tmp/a.sock" --state-dir "$tmp/sa" --log-level warn \
  --bridge-name a --bridge-listen "tcp/$net.1:7447" --bridge-topics 'bb.*' 2>"$tmp/a.log" &
pids+=($!)
ip netns exec "$nb" "$daemon" --socket "$tmp/b.sock" --state-dir "$tmp/sb" --log-level warn \
  --bridge-name b --bridge-connect "tcp/$net.1:7447" --bridge-topics 'bb.*' 2>"$tmp/b.log" &
pids+=($!)
"$daemon" --socket "$tmp/l.sock" --state-dir "$tmp/sl" --log-level warn 2>"$tmp/l.log" &
pids+=($!)
for s in a b l; do
  for _ in $(seq 100); do [ -S "$tmp/$s.sock" ] && break; sleep 0.1; done
done
sleep 1

out=$tmp/results
: >"$out"
port=7450
for r in $(seq 1 "$rounds"); do
  for size in 64 65536; do
    port=$((port + 2))
    echo "round $r/$rounds, $size B" >&2
    # Latency.
    ip netns exec "$nb" "$bin" zenoh-pong "tcp/$net.2:$port" & pong=$!
    echo "latency zenoh $size $(ip netns exec "$na" "$bin" zenoh-ping "tcp/$net.2:$port" "$lat_n" "$size")" >>"$out"
    kill $pong; wait $pong 2>/dev/null || true
    "$bin" aether-pong "$tmp/b.sock" & pong=$!
    echo "latency bridged $size $("$bin" aether-ping "$tmp/a.sock" "$lat_n" "$size")" >>"$out"
    kill $pong; wait $pong 2>/dev/null || true
    "$bin" aether-pong "$tmp/l.sock" & pong=$!
    echo "latency local $size $("$bin" aether-ping "$tmp/l.sock" "$lat_n" "$size")" >>"$out"
    kill $pong; wait $pong 2>/dev/null || true
    # Throughput.
    n=$tput_n
    [ "$size" -gt 4096 ] && n=$((tput_n / 20))
    ip netns exec "$nb" "$bin" zenoh-sink "tcp/$net.2:$((port + 1))" "$n" "$size" >"$tmp/sink" & sink=$!
    sleep 0.3
    ip netns exec "$na" "$bin" zenoh-source "tcp/$net.2:$((port + 1))" "$n" "$size" & src=$!
    wait $sink
    kill $src 2>/dev/null || true; wait $src 2>/dev/null || true
    echo "throughput zenoh $size $(cat "$tmp/sink")" >>"$out"
    for via in bridged local; do
      sock_in=$tmp/b.sock sock_out=$tmp/a.sock
      [ $via = local ] && sock_in=$tmp/l.sock sock_out=$tmp/l.sock
      "$bin" aether-sink "$sock_in" "$n" "$size" >"$tmp/sink" & sink=$!
      for _ in $(seq 100); do grep -q ready "$tmp/sink" && break; sleep 0.05; done
      "$bin" aether-source "$sock_out" "$n" "$size"
      wait $sink
      echo "throughput $via $size $(tail -n 1 "$tmp/sink")" >>"$out"
    done
  done
done

if [ "${STAGES:-0}" = 1 ]; then
  for r in $(seq 1 "$rounds"); do
    for size in 64 65536; do
      n=$tput_n
      [ "$size" -gt 4096 ] && n=$((tput_n / 20))
      port=$((port + 2))
      echo "stages, round $r/$rounds, $size B" >&2
      # Send side: this broker's bridge connects to a Zenoh sink.
      ip netns exec "$nb" "$bin" zenoh-sink "tcp/$net.2:$port" "$n" "$size" "aether/bb.tput-$size" >"$tmp/sink" & sink=$!
      ip netns exec "$na" "$daemon" --socket "$tmp/s$port.sock" --state-dir "$tmp/ss$port" --log-level warn \
        --bridge-name s --bridge-connect "tcp/$net.2:$port" --bridge-topics 'bb.*:out' 2>>"$tmp/s.log" & d=$!
      for _ in $(seq 100); do [ -S "$tmp/s$port.sock" ] && break; sleep 0.1; done
      "$bin" aether-source "$tmp/s$port.sock" "$n" "$size"
      wait $sink
      kill $d; wait $d 2>/dev/null || true
      echo "throughput send-side $size $(cat "$tmp/sink")" >>"$out"
      # Receive side: a Zenoh source connects to this broker's bridge.
      ip netns exec "$nb" "$daemon" --socket "$tmp/r$port.sock" --state-dir "$tmp/sr$port" --log-level warn \
        --bridge-name r --bridge-listen "tcp/$net.2:$((port + 1))" --bridge-topics 'bb.*:in' 2>>"$tmp/r.log" & d=$!
      for _ in $(seq 100); do [ -S "$tmp/r$port.sock" ] && break; sleep 0.1; done
      "$bin" aether-sink "$tmp/r$port.sock" "$n" "$size" >"$tmp/sink" & sink=$!
      for _ in $(seq 100); do grep -q ready "$tmp/sink" && break; sleep 0.05; done
      ip netns exec "$na" "$bin" zenoh-source "tcp/$net.2:$((port + 1))" "$n" "$size" "aether/bb.tput-$size" envelope & src=$!
      wait $sink
      kill $src $d 2>/dev/null || true; wait $src $d 2>/dev/null || true
      echo "throughput recv-side $size $(tail -n 1 "$tmp/sink")" >>"$out"
    done
  done
fi

python3 - "$out" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    bench, system, size, *kv = line.split()
    for k, v in (x.split("=") for x in kv):
        rows.setdefault((bench, system, int(size), k), []).append(float(v))
med = {k: statistics.median(v) for k, v in rows.items()}
print(f"{'':<10} {'size':>6} {'zenoh':>12} {'bridged':>12} {'local':>12}  bridged vs zenoh")
for size in (64, 65536):
    for k in ("p50_ns", "p99_ns"):
        z, b, l = (med.get(("latency", s, size, k), 0) for s in ("zenoh", "bridged", "local"))
        print(f"{k:<10} {size:>6} {z/1e3:>9.1f} us {b/1e3:>9.1f} us {l/1e3:>9.1f} us  +{(b - z)/1e3:.1f} us")
    z, b, l = (med.get(("throughput", s, size, "msgs_per_s"), 0) for s in ("zenoh", "bridged", "local"))
    print(f"{'msgs/s':<10} {size:>6} {z:>12.0f} {b:>12.0f} {l:>12.0f}  x{b / z if z else 0:.2f}")
    for side in ("send-side", "recv-side"):
        v = med.get(("throughput", side, size, "msgs_per_s"))
        if v:
            print(f"{side:<10} {size:>6} {'':>12} {v:>12.0f} {'':>12}  x{v / z if z else 0:.2f}")
EOF
