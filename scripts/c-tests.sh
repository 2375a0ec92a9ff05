#!/usr/bin/env bash
# c-tests.sh — the C side as a user sees it: build, `make install` into a
# temporary prefix, compile c-tests/*.c with `pkg-config aether`, and run them
# against a private aetherd, natively and under valgrind.
#
# Prints `ok - NAME` / `not ok - NAME` per test (a failure's log follows, as
# `# ` lines) and ends with `C tests: N passed, M failed`; exits 1 if M > 0.
# Environment: C_TESTS_COUNT (messages per pub/sub run, default 20000),
# C_TESTS_VALGRIND_COUNT (same under valgrind, default 2000), CC (default cc).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
COUNT=${C_TESTS_COUNT:-20000}
VG_COUNT=${C_TESTS_VALGRIND_COUNT:-2000}
CC=${CC:-cc}
MAXSIZE=4096
SUBSCRIBERS=3
CFLAGS=(-std=c11 -Wall -Wextra -Werror)
VALGRIND=(valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect
          --error-exitcode=99 --quiet)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/aether-c-tests.XXXXXX")
PREFIX=$TMP/prefix
BIN=$TMP/bin
LOGS=$TMP/logs
SOCK=$TMP/aetherd.sock
TAG=ctest-$$ # in every topic name of this run
DAEMON_PID=
CHILDREN=()
mkdir -p "$BIN" "$LOGS"
SUITE="C tests"
# shellcheck source=scripts/harness.sh
source "$ROOT/scripts/harness.sh"

# --- tools ------------------------------------------------------------------
if ! command -v pkg-config >/dev/null; then
    echo "c-tests: pkg-config is not installed" >&2
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "c-tests: installing it with apt-get" >&2
        apt-get update -qq && apt-get install -y -qq pkg-config >/dev/null
    else
        echo "c-tests: install pkg-config (e.g. sudo apt-get install pkg-config) and rerun" >&2
        exit 1
    fi
fi
for tool in "$CC" valgrind readelf ldd make cargo; do
    command -v "$tool" >/dev/null || { echo "c-tests: $tool is required" >&2; exit 1; }
done

# --- build and install --------------------------------------------------------
check "cargo build --release --workspace" cargo build --release --workspace
check "make install PREFIX=\$TMP/prefix" make --no-print-directory install PREFIX="$PREFIX"
[[ $failed == 0 ]] || finish
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig

installed() {
    local f
    for f in lib/libaether.so.0.1.0 lib/libaether.a include/aether.h \
        lib/pkgconfig/aether.pc bin/aetherd bin/aether-cli; do
        [[ -f $PREFIX/$f ]] || { echo "missing $PREFIX/$f"; return 1; }
    done
    [[ $(readlink "$PREFIX/lib/libaether.so.0") == libaether.so.0.1.0 ]] || { echo "bad libaether.so.0 link"; return 1; }
    [[ $(readlink "$PREFIX/lib/libaether.so") == libaether.so.0 ]] || { echo "bad libaether.so link"; return 1; }
    readelf -d "$PREFIX/lib/libaether.so.0.1.0" | grep -F 'Library soname: [libaether.so.0]'
    pkg-config --exists --print-errors aether
    [[ $(pkg-config --modversion aether) == 0.1.0 ]] || { echo "modversion is $(pkg-config --modversion aether)"; return 1; }
    pkg-config --static --libs aether
    for f in share/man/man8/aetherd.8 share/man/man1/aether-cli.1 share/man/man1/aether-cli-sub.1 \
        share/bash-completion/completions/aether-cli share/zsh/site-functions/_aether-cli \
        share/fish/vendor_completions.d/aether-cli.fish; do
        [[ -f $PREFIX/$f ]] || { echo "missing $PREFIX/$f"; return 1; }
    done
}
check "installed files, links, SONAME, aether.pc, man pages and completions" installed
reinstall_builds_nothing() { # a second `make install` finds everything built
    local out
    out=$(make --no-print-directory install PREFIX="$PREFIX" 2>&1)
    echo "$out" | tail -n 3
    if grep -q 'Compiling' <<<"$out"; then echo "make install compiled again"; return 1; fi
}
check "a second make install compiles nothing" reinstall_builds_nothing

# --- compile as a user would --------------------------------------------------
compile() { # compile NAME: cc NAME.c $(pkg-config --cflags --libs aether)
    # shellcheck disable=SC2046 # pkg-config output is meant to be word-split
    "$CC" "${CFLAGS[@]}" -o "$BIN/$1" "c-tests/$1.c" $(pkg-config --cflags --libs aether)
}
linked() { # linked NAME: needs libaether.so.0, found in the prefix
    readelf -d "$BIN/$1" | grep -F 'Shared library: [libaether.so.0]'
    LD_LIBRARY_PATH=$PREFIX/lib ldd "$BIN/$1" | grep -F "libaether.so.0 => $PREFIX/lib/libaether.so.0"
}
for t in layout publisher subscriber errors mqueue fork poll durable; do
    check "compile $t.c with pkg-config" compile "$t"
    check "$t links libaether.so.0 from the prefix" linked "$t"
done
# The examples, compiled as their comments and the README say (the
# library found through the rpath, with no LD_LIBRARY_PATH).
compile_example() { # compile_example NAME
    # shellcheck disable=SC2046 # pkg-config output is meant to be word-split
    "$CC" "${CFLAGS[@]}" -o "$BIN/example-$1" "examples/c/$1.c" $(pkg-config --cflags --libs aether) \
        -Wl,-rpath,"$(pkg-config --variable=libdir aether)"
    env -u LD_LIBRARY_PATH ldd "$BIN/example-$1" | grep -F "libaether.so.0 => $PREFIX/lib/libaether.so.0"
}
for t in hello event_loop; do
    check "examples/c/$t.c compiles as its comment says; the rpath finds the library" compile_example "$t"
done
static_layout() { # the Libs.private line is enough for a static link
    local libs
    libs=$(pkg-config --static --libs aether)
    # shellcheck disable=SC2046,SC2086
    "$CC" "${CFLAGS[@]}" -o "$BIN/layout-static" c-tests/layout.c \
        $(pkg-config --cflags aether) ${libs/-laether/-l:libaether.a}
    if readelf -d "$BIN/layout-static" | grep -F libaether; then return 1; fi
    "$BIN/layout-static"
}
check "layout.c linked statically with Libs.private" static_layout
[[ $failed == 0 ]] || finish

# --- a private daemon ------------------------------------------------------------
export LD_LIBRARY_PATH=$PREFIX/lib AETHER_NO_AUTOSTART=1
unset AETHER_SOCKET
"$PREFIX/bin/aetherd" --socket "$SOCK" --state-dir "$TMP/state" 2>"$LOGS/aetherd.log" &
DAEMON_PID=$!
if wait_for 10 test -S "$SOCK"; then rc=0; else rc=1; fi
report "aetherd listens on a private socket" "$rc" "$LOGS/aetherd.log"
[[ $rc == 0 ]] || finish
INSTANCE=$(sed -n 's/.*instance \([0-9a-f]\{16\}\).*/\1/p' "$LOGS/aetherd.log" | head -n 1)
CLI=("$PREFIX/bin/aether-cli" --socket "$SOCK")

create_reliable() { # create_reliable TOPIC: with aether-cli; it shows in `topics`, and nothing in /dev/shm
    "${CLI[@]}" create "$1" --policy reliable --max-message "$MAXSIZE" || return 1
    # (output kept first: `cli | grep -q` under pipefail fails when grep
    # leaves early and the CLI then dies of SIGPIPE, as a Unix tool should)
    local topics
    topics=$("${CLI[@]}" topics) || return 1
    grep -q "^$1 " <<<"$topics" || { echo "topic $1 not listed by aether-cli topics"; return 1; }
    ! ls /dev/shm | grep -q -- "$1" || { echo "a /dev/shm object names $1: segments should be anonymous"; return 1; }
}

ready_all() { # ready_all FILE...
    local f
    for f in "$@"; do [[ -e $f ]] || return 1; done
}

# pubsub LABEL TOPIC COUNT NSUBS [WRAPPER...]: NSUBS subscriber processes, then one publisher.
pubsub() {
    local label=$1 topic=$2 count=$3 nsubs=$4 i rc
    shift 4
    local wrap=("$@") pids=() ready=()
    for ((i = 1; i <= nsubs; i++)); do
        ready+=("$TMP/$topic.ready.$i")
        "${wrap[@]}" "$BIN/subscriber" "$SOCK" "$topic" "$count" "$TMP/$topic.ready.$i" "$MAXSIZE" \
            >"$(log_of "$label: subscriber $i")" 2>&1 &
        pids+=($!)
        CHILDREN+=($!)
    done
    if wait_for 60 ready_all "${ready[@]}"; then
        check "$label: publisher, $count messages" "${wrap[@]}" "$BIN/publisher" "$SOCK" "$topic" "$count" "$MAXSIZE"
    else
        report "$label: subscribers ready within 60 s" 1
    fi
    for ((i = 1; i <= nsubs; i++)); do
        rc=0
        wait "${pids[i - 1]}" || rc=$?
        local log
        log=$(log_of "$label: subscriber $i")
        [[ $rc != 0 ]] || grep -qx "received $count messages" "$log" || rc=1
        report "$label: subscriber $i received $count messages in order" "$rc" "$log"
    done
}

# aether-cli sub receives what the C publisher sends.
cli_interop() {
    local topic=$1 count=$2 rc=0 log=$TMP/cli-sub.log
    "${CLI[@]}" sub "$topic" --count "$count" --timeout 10 --quiet 2>"$log" >/dev/null &
    local pid=$!
    CHILDREN+=($pid)
    wait_for 10 grep -q "^subscribed to $topic" "$log" || { echo "aether-cli sub did not subscribe"; cat "$log"; return 1; }
    "$BIN/publisher" "$SOCK" "$topic" "$count" "$MAXSIZE" || rc=$?
    wait "$pid" || rc=$?
    cat "$log"
    grep -q "^received $count messages from $topic (0 lost)" "$log" || rc=1
    return "$rc"
}

check "layout" "$BIN/layout"
check "errors" "$BIN/errors" "$SOCK"
check "aether-cli create $TAG-pubsub --policy reliable" create_reliable "$TAG-pubsub"
pubsub "pubsub 1->$SUBSCRIBERS" "$TAG-pubsub" "$COUNT" "$SUBSCRIBERS"
check "C publisher -> aether-cli sub, 1000 messages" cli_interop "$TAG-pubsub" 1000
check "mqueue: delivery=mqueue subscriber in poll(), control-queue notices" "$BIN/mqueue" "$SOCK" "$TAG-mqueue"
check "fork: a child cannot use its parent's handles, reopens its own; the parent keeps its slots" "$BIN/fork" "$SOCK" "$TAG-fork"
check "durable: a logged topic read back from earliest, a seq and a committed durable subscription; a lossy one whose lapped subscriber fills its gaps; old config layouts keep their meaning" "$BIN/durable" "$SOCK" "$TAG-durable"
check "poll: a shm subscriber in epoll_wait on aether_subscriber_fd gets 20000 messages from another process" "$BIN/poll" "$SOCK" "$TAG-poll"
example_hello() {
    local out
    out=$(env -u LD_LIBRARY_PATH AETHER_SOCKET="$SOCK" "$BIN/example-hello")
    echo "$out"
    [[ $out == "got hello (libaether "*")" ]]
}
check "examples/c/hello runs (no LD_LIBRARY_PATH)" example_hello
example_event_loop() { # three messages from aether-cli pub reach it; end of input ends it
    local topic=$TAG-example-loop log=$TMP/event_loop.err pid rc=0
    mkfifo "$TMP/event_loop.in"
    env -u LD_LIBRARY_PATH AETHER_SOCKET="$SOCK" "$BIN/example-event_loop" "$topic" 3 \
        <"$TMP/event_loop.in" >"$TMP/event_loop.out" 2>"$log" &
    pid=$!
    CHILDREN+=("$pid")
    exec {keep}>"$TMP/event_loop.in" # its stdin stays open until the end
    wait_for 10 grep -q "subscribed to $topic" "$log" || { cat "$log"; return 1; }
    printf 'one\ntwo\nthree\n' | "${CLI[@]}" pub "$topic"
    wait "$pid" || rc=$?
    exec {keep}>&-
    cat "$TMP/event_loop.out" "$log"
    "${CLI[@]}" delete "$topic" >/dev/null
    [[ $rc == 0 && $(cat "$TMP/event_loop.out") == $'one\ntwo\nthree' ]]
}
check "examples/c/event_loop gets 3 messages in its epoll loop" example_event_loop

# --- under valgrind ---------------------------------------------------------------
check "valgrind layout" "${VALGRIND[@]}" "$BIN/layout"
check "valgrind errors" "${VALGRIND[@]}" "$BIN/errors" "$SOCK"
check "aether-cli create $TAG-valgrind --policy reliable" create_reliable "$TAG-valgrind"
pubsub "valgrind pubsub 1->1" "$TAG-valgrind" "$VG_COUNT" 1 "${VALGRIND[@]}"
check "valgrind mqueue" "${VALGRIND[@]}" "$BIN/mqueue" "$SOCK" "$TAG-mqueue-vg" 50
check "valgrind fork" "${VALGRIND[@]}" --trace-children=yes "$BIN/fork" "$SOCK" "$TAG-fork-vg"
check "valgrind poll" "${VALGRIND[@]}" "$BIN/poll" "$SOCK" "$TAG-poll-vg" 500
check "valgrind durable" "${VALGRIND[@]}" "$BIN/durable" "$SOCK" "$TAG-durable-vg"

delete_topics() {
    "${CLI[@]}" delete "$TAG-pubsub"
    "${CLI[@]}" delete "$TAG-valgrind"
    local topics
    topics=$("${CLI[@]}" topics) && ! grep -q -- "$TAG-" <<<"$topics"
}
check "aether-cli delete removes the topics" delete_topics

# --- shutdown: nothing left behind ------------------------------------------------
if stop_daemon; then rc=0; else rc=$?; fi
report "aetherd exits 0 on SIGTERM" "$rc" "$LOGS/aetherd.log"
check "nothing in /dev/shm for instance $INSTANCE after shutdown" no_shm_leftovers "$INSTANCE" "$TAG"
finish
