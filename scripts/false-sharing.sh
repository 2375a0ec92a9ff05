#!/usr/bin/env bash
# What the segment's cache-line padding buys: aether-bench built twice, as
# shipped and with `--features unpadded` (the hot words of the segment
# header, the publisher slots and the waiters page packed into shared
# lines; docs/ARCHITECTURE.md "Cache lines"), run in alternating rounds on
# the same CPUs, then each figure of the unpadded build as a ratio of the
# padded one (median over rounds).
#
#   scripts/false-sharing.sh [ROUNDS] [-- extra aether-bench arguments]
#
# Default: 5 rounds of `--quick --only latency,throughput,fanout --sizes 64`
# pinned to CPUs 0,1. Needs nothing but cargo; takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
shift || true
[ "${1:-}" = "--" ] && shift
extra=("$@")
[ ${#extra[@]} -eq 0 ] && extra=(--quick --only latency,throughput,fanout --sizes 64)

padded_dir=${CARGO_TARGET_DIR:-target}
unpadded_dir=target/unpadded
cargo build --release -q -p aether-bench
CARGO_TARGET_DIR=$unpadded_dir cargo build --release -q -p aether-bench --features unpadded
out=$(mktemp -d "${TMPDIR:-/tmp}/false-sharing.XXXXXX")
trap 'rm -rf "$out"' EXIT

cpus=0,1
[ "$(nproc)" -lt 2 ] && cpus=0
for r in $(seq 1 "$rounds"); do
    for build in padded unpadded; do
        dir=$padded_dir
        [ $build = unpadded ] && dir=$unpadded_dir
        echo "round $r/$rounds: $build" >&2
        "$dir/release/aether-bench" --json --cpus $cpus "${extra[@]}" >"$out/$build.$r.json"
    done
done

python3 - "$out" "$rounds" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(build):
    runs = {}
    for r in range(1, rounds + 1):
        for line in open(f"{out}/{build}.{r}.json"):
            d = json.loads(line)
            key = tuple((k, d[k]) for k in ("bench", "system", "wait", "size", "subscribers") if k in d)
            for metric in ("p50_ns", "p99_ns", "msgs_per_s", "pub_msgs_per_s", "min_sub_msgs_per_s"):
                if metric in d:
                    runs.setdefault((key, metric), []).append(d[metric])
    return {k: statistics.median(v) for k, v in runs.items()}
padded, unpadded = load("padded"), load("unpadded")
print(f"{'figure':<58} {'padded':>12} {'unpadded':>12} {'unpadded/padded':>16}")
for (key, metric), p in padded.items():
    u = unpadded.get((key, metric))
    if u is None:
        continue
    name = " ".join(str(v) for _, v in key) + " " + metric
    ratio = u / p if p else float("nan")
    print(f"{name:<58} {p:>12.0f} {u:>12.0f} {ratio:>16.2f}")
EOF
