#!/usr/bin/env bash
# Spin latency of two (or more) aether-bench builds, A/B on a noisy VM.
#
#   scripts/latency-ab.sh 40 /tmp/bench-before target/release/aether-bench
#
# This 2-vCPU VM moves between placements (a cache-line floor of ~50 ns,
# then ~200 ns, for seconds at a time), so a run's p50 depends on when it
# ran more than on what ran. Each build runs N single-round invocations,
# alternating with the others; per build and system this prints the 25th
# percentile (the fast placement), the median and the least of the runs'
# p50s, and the 25th percentile of their p99s. SYSTEMS picks the systems
# (default: the record floor, the copying and the zero-copy paths).
set -euo pipefail
n=$1
shift
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for _ in $(seq "$n"); do
  for b in "$@"; do
    "$b" --quick --rounds 1 --cpus 0,1 --only latency --round-trips 30000 \
      --systems "${SYSTEMS:-record,aether,aether-zc}" --json 2>/dev/null |
      grep '"wait":"spin"' >>"$out/$(echo "$b" | tr / _)" || true
  done
done
for b in "$@"; do
  python3 - "$out/$(echo "$b" | tr / _)" "$b" <<'PY'
import collections, json, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    j = json.loads(line)
    runs[j["system"]].append((j["p50_ns"], j["p99_ns"]))
def q(v, f):
    v = sorted(v)
    return v[int(f * (len(v) - 1))]
print(sys.argv[2])
for k, v in runs.items():
    p50 = [a for a, _ in v]
    print(f"  {k:10s} p50 q25 {q(p50, .25):5} median {q(p50, .5):5} least {min(p50):5}  p99 q25 {q([b for _, b in v], .25):5}  ({len(v)} runs)")
PY
done
