#!/usr/bin/env bash
# rust-examples.sh — examples/rust, run as a user would (`cargo run -p
# aether-examples --bin ...`), against a private broker that the first one
# auto-starts under this run's own XDG_RUNTIME_DIR; the broker is stopped
# (aether-cli drain) and the directory removed at the end, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p aether-examples -p aetherd -p aether-cli
target=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug
dir=$(mktemp -d "${TMPDIR:-/tmp}/aether-rust-examples.XXXXXX")
mkdir -m 0700 "$dir/run"
export XDG_RUNTIME_DIR=$dir/run AETHER_DAEMON=$target/aetherd
unset AETHER_SOCKET AETHER_NO_AUTOSTART AETHER_CONFIG
stop() {
    "$target/aether-cli" drain >/dev/null 2>&1 || true
    for _ in $(seq 100); do [ -e "$dir/run/aether/aetherd.sock" ] || break; sleep 0.1; done
    rm -rf "$dir"
}
trap stop EXIT

out=$("$target/hello")
echo "hello: $out"
[[ $out == "got hello (seq "*")" ]]

"$target/poll_subscriber" example-poll 2 >"$dir/poll.out" 2>"$dir/poll.err" &
pid=$!
for _ in $(seq 100); do grep -q "subscribed to example-poll" "$dir/poll.err" && break; sleep 0.1; done
printf 'first\nsecond\n' | "$target/aether-cli" pub example-poll
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"; echo "poll_subscriber did not end within 10 s"; cat "$dir/poll.out" "$dir/poll.err"; exit 1
fi
wait "$pid"
[[ $(cat "$dir/poll.out") == $'first\nsecond' ]] || { cat "$dir/poll.out" "$dir/poll.err"; exit 1; }
echo "poll_subscriber: first, second"
echo "Rust examples: ok"
