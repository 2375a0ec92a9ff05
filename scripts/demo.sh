#!/usr/bin/env bash
# The main job, on a fresh machine: build, start a broker with no
# configuration, and run a subscriber and a publisher as separate processes
# exchanging 100,000 messages through shared memory.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}

cargo build --release --workspace --quiet
BIN=$PWD/target/release
TMP=$(mktemp -d /tmp/aether-demo.XXXXXX)
export AETHER_SOCKET=$TMP/aetherd.sock AETHER_NO_AUTOSTART=1
cleanup() {
  [ -n "${DAEMON:-}" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

"$BIN/aetherd" 2>"$TMP/aetherd.log" &
DAEMON=$!
for _ in $(seq 200); do [ -S "$AETHER_SOCKET" ] && break; sleep 0.05; done
echo "== broker: $(head -1 "$TMP/aetherd.log")"

# A reliable topic: the publisher waits for the subscriber, nothing is lost.
"$BIN/aether-cli" create demo --policy reliable --ring-size 1048576 --max-message 1024

"$BIN/aether-cli" sub demo --count "$N" --timeout 30 >"$TMP/received.txt" 2>"$TMP/sub.log" &
SUB=$!
for _ in $(seq 200); do grep -q subscribed "$TMP/sub.log" 2>/dev/null && break; sleep 0.05; done

seq 1 "$N" | sed 's/^/message number /' >"$TMP/sent.txt"
echo "== publisher (separate process): aether-cli pub demo < $N lines"
"$BIN/aether-cli" pub demo <"$TMP/sent.txt"
wait "$SUB"
echo "== subscriber (separate process): aether-cli sub demo --count $N"
cat "$TMP/sub.log" | grep -v '^subscribed'
echo "== first and last messages received:"
head -2 "$TMP/received.txt"; echo "..."; tail -2 "$TMP/received.txt"
if cmp -s "$TMP/sent.txt" "$TMP/received.txt"; then
  echo "== OK: all $N messages arrived intact and in order"
else
  echo "== FAILED: received messages differ from those sent" >&2
  exit 1
fi
