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
# KEEP=1 keeps each run's JSON lines.
trap 'if [ -n "${KEEP:-}" ]; then echo "runs kept in $out" >&2; else rm -rf "$out"; fi' EXIT

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
# Per figure: the median over rounds of each build, their ratio, and the
# ratio once each run's figure is divided by a baseline of the same run
# that the padding cannot touch (latency: the bare cache line or futex;
# throughput: memcpy), which takes out a change of the machine between runs
# (a VM's vCPUs landing on other cores moves every figure alike).
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
METRICS = ("p50_ns", "p99_ns", "msgs_per_s", "pub_msgs_per_s", "min_sub_msgs_per_s")
def key_of(d):
    return tuple((k, d[k]) for k in ("bench", "system", "wait", "size", "subscribers") if k in d)
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
                raw.setdefault((key_of(d), m), []).append(d[m])
                b = baseline_of(d)
                if b is not None and run.get((b, m)):
                    norm.setdefault((key_of(d), m), []).append(d[m] / run[(b, m)])
    med = lambda x: {k: statistics.median(v) for k, v in x.items()}
    return med(raw), med(norm)
(padded, padded_n), (unpadded, unpadded_n) = load("padded"), load("unpadded")
print(f"{'figure':<48} {'padded':>11} {'unpadded':>11} {'ratio':>7} {'vs baseline':>12}")
for (key, metric), p in padded.items():
    u = unpadded.get((key, metric))
    if u is None:
        continue
    name = " ".join(str(v) for _, v in key) + " " + metric
    pn, un = padded_n.get((key, metric)), unpadded_n.get((key, metric))
    norm = f"{un / pn:12.2f}" if pn and un else f"{'-':>12}"
    print(f"{name:<48} {p:>11.0f} {u:>11.0f} {u / p if p else float('nan'):>7.2f} {norm}")
EOF
