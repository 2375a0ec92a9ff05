#!/usr/bin/env bash
# restart-loop.sh — a daemon's death is never silent, and clients carry on
# (issue 15, case 3): C, Rust and Python clients publish and receive in a
# loop (spin and futex waits, copy and zero-copy) while aetherd is killed
# with SIGKILL and started again, ROUNDS times (default 20).
#
# Checks, every round: each client notices the death (a call fails with
# UNAVAILABLE, `down MS`, within 1000 ms), reopens its handles with one call
# each once the new daemon is up (`up`), and goes on exchanging checked
# messages (`ok N`). At the end: no client printed an error, none holds more
# descriptors than after the first round, nothing is left in /dev/shm or
# /dev/mqueue, and every client exits 0 on SIGTERM.
#
# Needs the release build (cargo build --release --workspace) and the Python
# virtualenv of scripts/python-tests.sh (python/.venv); without the latter
# the Python clients are skipped, and it says so.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${RESTART_ROUNDS:-20}
RELEASE=${CARGO_TARGET_DIR:-$ROOT/target}/release
VENV=${AETHER_PY_VENV:-$ROOT/python/.venv}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/aether-restart.XXXXXX")
SOCK=$TMP/aetherd.sock
DAEMON_PID=
CLIENT_PIDS=()

cleanup() {
    local p
    for p in "${CLIENT_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    [[ -n $DAEMON_PID ]] && kill -KILL "$DAEMON_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
die() { echo "restart-loop: FAILED: $*" >&2; exit 1; }
say() { echo "restart-loop: $*"; }

cargo build --release --workspace --quiet
cargo build --release --quiet -p aether --example restart_client
# Linked as a user links it (libaether.so.0, the SONAME), from the build.
mkdir -p "$TMP/lib"
ln -s "$RELEASE/libaether.so" "$TMP/lib/libaether.so.0"
${CC:-cc} -std=c11 -Wall -Wextra -Werror -I include -o "$TMP/restart_client_c" c-tests/restart_client.c \
    -L "$RELEASE" -laether -Wl,-rpath,"$TMP/lib"

shm_before=$(ls /dev/shm 2>/dev/null | grep -c '^aether' || true)
mq_before=$(ls /dev/mqueue 2>/dev/null | grep -c '^aether' || true)

start_daemon() {
    "$RELEASE/aetherd" --socket "$SOCK" --state-dir "$TMP/state" 2>>"$TMP/aetherd.log" &
    DAEMON_PID=$!
    local i
    for i in $(seq 1 500); do
        [[ -S $SOCK ]] && return 0
        sleep 0.01
    done
    die "aetherd did not listen on $SOCK"
}

export AETHER_NO_AUTOSTART=1 # the script, not a client, starts daemons
unset AETHER_SOCKET
start_daemon

NAMES=()
client() { # client NAME COMMAND...: starts a client, output in $TMP/NAME.log
    local name=$1
    shift
    "$@" >"$TMP/$name.log" 2>&1 &
    CLIENT_PIDS+=($!)
    NAMES+=("$name")
}
client c-futex-copy "$TMP/restart_client_c" "$SOCK" loop-c1 futex copy
client c-spin-zerocopy "$TMP/restart_client_c" "$SOCK" loop-c2 spin zerocopy
client rust-futex-zerocopy "$RELEASE/examples/restart_client" "$SOCK" loop-r1 futex zerocopy
client rust-spin-copy "$RELEASE/examples/restart_client" "$SOCK" loop-r2 spin copy
if "$VENV/bin/python" -c 'import aether; aether.Publisher.reopen' 2>/dev/null; then
    client py-copy "$VENV/bin/python" python/tools/restart_client.py "$SOCK" loop-p1 copy
    client py-zerocopy "$VENV/bin/python" python/tools/restart_client.py "$SOCK" loop-p2 zerocopy
else
    say "skipped the Python clients: no $VENV with the aether module (run scripts/python-tests.sh first)"
fi

# wait_all PATTERN SINCE SECONDS: every client's log has a line matching
# PATTERN after its first SINCE[name] lines.
declare -A SINCE
wait_all() {
    local pattern=$1 limit=$2 name deadline=$((SECONDS + $2))
    for name in "${NAMES[@]}"; do
        until tail -n +"$((${SINCE[$name]:-0} + 1))" "$TMP/$name.log" | grep -q "$pattern"; do
            if grep -q '^error' "$TMP/$name.log"; then die "$name: $(grep '^error' "$TMP/$name.log" | head -n 1)"; fi
            ((SECONDS < deadline)) || die "$name: no '$pattern' within ${limit}s; its log ends: $(tail -n 3 "$TMP/$name.log" | tr '\n' '|')"
            sleep 0.02
        done
    done
}
mark() { local name; for name in "${NAMES[@]}"; do SINCE[$name]=$(wc -l <"$TMP/$name.log"); done; }

wait_all '^ready' 20
wait_all '^ok' 30
declare -A FDS
for round in $(seq 1 "$ROUNDS"); do
    mark
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null || true
    wait_all '^down' 5 # every client noticed
    start_daemon
    wait_all '^up' 15
    # ...and exchanges messages with the new daemon again.
    for name in "${NAMES[@]}"; do SINCE[$name]=$(grep -n '^up' "$TMP/$name.log" | tail -n 1 | cut -d: -f1); done
    wait_all '^ok' 30
    if [[ $round == 1 ]]; then
        for i in "${!NAMES[@]}"; do FDS[${NAMES[$i]}]=$(ls "/proc/${CLIENT_PIDS[$i]}/fd" | wc -l); done
    fi
done
say "$ROUNDS rounds: every client noticed each death, reopened, and went on"

for i in "${!NAMES[@]}"; do
    name=${NAMES[$i]}
    fds=$(ls "/proc/${CLIENT_PIDS[$i]}/fd" | wc -l)
    ((fds <= ${FDS[$name]})) || die "$name holds $fds descriptors, ${FDS[$name]} after the first round: a leak"
    slowest=$(sed -n 's/^down \([0-9]*\).*/\1/p' "$TMP/$name.log" | sort -n | tail -n 1)
    ((slowest <= 1000)) || die "$name: a call took ${slowest} ms to report the death (bound: 1000 ms)"
    say "$name: $(grep -c '^down' "$TMP/$name.log") deaths noticed (slowest call ${slowest} ms), $fds descriptors"
done
for i in "${!CLIENT_PIDS[@]}"; do
    kill -TERM "${CLIENT_PIDS[$i]}"
    wait "${CLIENT_PIDS[$i]}" || die "${NAMES[$i]} exited with status $?"
    grep -q '^done' "$TMP/${NAMES[$i]}.log" || die "${NAMES[$i]} did not finish cleanly"
done
CLIENT_PIDS=()
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || die "aetherd exited with status $? on SIGTERM"
DAEMON_PID=
shm_after=$(ls /dev/shm 2>/dev/null | grep -c '^aether' || true)
mq_after=$(ls /dev/mqueue 2>/dev/null | grep -c '^aether' || true)
((shm_after <= shm_before)) || die "shared-memory objects left in /dev/shm"
((mq_after <= mq_before)) || die "message queues left in /dev/mqueue"
[[ ! -e $SOCK ]] || die "the socket was left behind"
say "passed"
