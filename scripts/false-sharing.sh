#!/usr/bin/env bash
# What the segment's cache-line padding buys, one separation at a time:
# aether-bench built as shipped and with each `unpadded-*` feature (the hot
# words of one group packed into shared lines: `header` the segment
# header's tail, data, space, horizon and stats; `slots` the publisher
# slots, four to a line; `waiters` the waiters page's data, space and stats
# lines; `unpadded` all three; docs/ARCHITECTURE.md "Cache lines"), run in
# alternating rounds on the same CPUs. Prints, per figure, the padded
# build's median and each other build's median as a ratio of it, after
# dividing every figure by a baseline of its own run that the padding
# cannot touch (spin latency: the bare cache line; futex latency: the raw
# futex; throughput: memcpy; fan-out and publishers: none, raw ratio).
#
#   scripts/false-sharing.sh [ROUNDS] [-- extra aether-bench arguments]
#   VARIANTS="unpadded-header unpadded" KEEP=1 scripts/false-sharing.sh 3
#
# Default: 5 rounds of `--quick --only latency,throughput,fanout,publishers
# --sizes 64`, pinned to CPUs 0,1. Needs nothing but cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
shift || true
[ "${1:-}" = "--" ] && shift
extra=("$@")
[ ${#extra[@]} -eq 0 ] && extra=(--quick --only latency,throughput,fanout,publishers --sizes 64)
variants=${VARIANTS:-unpadded-header unpadded-slots unpadded-waiters unpadded}

padded_dir=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p aether-bench
for v in $variants; do
  CARGO_TARGET_DIR=target/$v cargo build --release -q -p aether-bench --features "$v"
done
out=$(mktemp -d "${TMPDIR:-/tmp}/false-sharing.XXXXXX")
# KEEP=1 keeps each run's JSON lines.
trap 'if [ -n "${KEEP:-}" ]; then echo "runs kept in $out" >&2; else rm -rf "$out"; fi' EXIT

cpus=0,1
[ "$(nproc)" -lt 2 ] && cpus=0
for r in $(seq 1 "$rounds"); do
  for build in padded $variants; do
    dir=target/$build
    [ $build = padded ] && dir=$padded_dir
    echo "round $r/$rounds: $build" >&2
    "$dir/release/aether-bench" --json --cpus $cpus "${extra[@]}" >"$out/$build.$r.json"
  done
done

python3 - "$out" "$rounds" padded $variants <<'EOF'
import json, statistics, sys
out, rounds, builds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
METRICS = ("p50_ns", "p99_ns", "msgs_per_s", "pub_msgs_per_s", "min_sub_msgs_per_s")
def key_of(d):
    return tuple((k, d[k]) for k in ("bench", "system", "wait", "size", "subscribers", "publishers") if k in d)
def baseline_of(d):
    if d["bench"] == "latency":
        base = "cacheline" if d["wait"] == "spin" else "futex"
        return (("bench", "latency"), ("system", base), ("wait", d["wait"]), ("size", d["size"]))
    if d["bench"] == "throughput":
        return (("bench", "throughput"), ("system", "memcpy"), ("size", d["size"]))
    return None
def load(build):
    raw, norm = {}, {}
    for r in range(1, rounds + 1):
        lines = [json.loads(l) for l in open(f"{out}/{build}.{r}.json")]
        run = {(key_of(d), m): d[m] for d in lines for m in METRICS if m in d}
        for d in lines:
            for m in METRICS:
                if m not in d:
                    continue
                k = (key_of(d), m)
                raw.setdefault(k, []).append(d[m])
                b = baseline_of(d)
                norm.setdefault(k, []).append(d[m] / run[(b, m)] if b and run.get((b, m)) else d[m])
    med = lambda x: {k: statistics.median(v) for k, v in x.items()}
    return med(raw), med(norm)
data = {b: load(b) for b in builds}
padded_raw, padded_norm = data["padded"]
print(f"{'figure':<44} {'padded':>11} " + " ".join(f"{b.replace('unpadded-', '-'):>10}" for b in builds[1:]))
for k, p in padded_raw.items():
    name = " ".join(str(v) for _, v in k[0]) + " " + k[1]
    cols = []
    for b in builds[1:]:
        n = data[b][1].get(k)
        cols.append(f"{n / padded_norm[k]:>10.2f}" if n and padded_norm.get(k) else f"{'-':>10}")
    print(f"{name:<44} {p:>11.0f} " + " ".join(cols))
EOF
