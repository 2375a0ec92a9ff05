#!/bin/sh
# daemon.sh start DIR AETHERD | stop DIR — a private aetherd for ctest (the
# `aetherd` fixture in CMakeLists.txt): socket DIR/aetherd.sock, durable
# topics under DIR/state, log DIR/aetherd.log. `stop` ends it (SIGTERM) and
# removes DIR.
set -eu
dir=$2
case $1 in
start)
    rm -rf "$dir"
    mkdir -p "$dir"
    AETHER_NO_AUTOSTART=1 "$3" --socket "$dir/aetherd.sock" --state-dir "$dir/state" \
        >"$dir/aetherd.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    i=0
    while [ ! -S "$dir/aetherd.sock" ]; do
        i=$((i + 1))
        if [ $i -gt 200 ] || ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
            echo "aetherd did not start:" >&2
            cat "$dir/aetherd.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    ;;
stop)
    [ -f "$dir/pid" ] || exit 0
    pid=$(cat "$dir/pid")
    kill -TERM "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do
        i=$((i + 1))
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -rf "$dir"
    ;;
*)
    echo "usage: daemon.sh start DIR AETHERD | stop DIR" >&2
    exit 2
    ;;
esac
