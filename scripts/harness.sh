# Shared by scripts/c-tests.sh and scripts/package-test.sh (sourced, not run):
# TAP-like "ok - NAME" / "not ok - NAME" lines, a closing
# "<SUITE>: N passed, M failed[, K skipped]" line, and daemon handling.
# The sourcing script sets SUITE, LOGS, TMP and CHILDREN (pids to kill at
# exit) before sourcing, and DAEMON_PID when it starts a daemon.

passed=0
failed=0
skipped=0
FINISHED=

# Kills what the suite started (CHILDREN), stops its daemon, removes TMP.
release_all() {
    local pid
    for pid in "${CHILDREN[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    stop_daemon || true
    rm -rf "$TMP"
}

# On exit, `cleanup` runs: release_all, unless the sourcing script
# redefines it (after sourcing) to do more first.
cleanup() { release_all; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# SIGTERM the daemon and wait for it (SIGKILL after 10 s); returns its status.
stop_daemon() {
    [[ -n ${DAEMON_PID:-} ]] || return 0
    local pid=$DAEMON_PID rc=0 i
    DAEMON_PID=
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; rc=124; }
    wait "$pid" || rc=$?
    return "$rc"
}

report() { # report NAME STATUS [LOG]: with HARNESS_VERBOSE set, passing logs are shown too
    if [[ $2 == 0 ]]; then
        echo "ok - $1"
        passed=$((passed + 1))
        [[ -z ${HARNESS_VERBOSE:-} || -z ${3:-} || ! -s ${3:-} ]] || sed 's/^/# /' "$3"
    else
        echo "not ok - $1"
        failed=$((failed + 1))
        [[ -n ${3:-} && -s ${3:-} ]] && tail -n 40 "$3" | sed 's/^/# /'
    fi
    return 0
}

skip() { # skip NAME WHY
    echo "ok - $1 # SKIP $2"
    skipped=$((skipped + 1))
}

log_of() { echo "$LOGS/$(echo "$1" | tr -c 'A-Za-z0-9.\n-' '_' | cut -c1-100).log"; }

check() { # check NAME CMD...: runs CMD (errexit on, in a subshell), output to a log
    local name=$1 log rc
    shift
    log=$(log_of "$name")
    set +e
    (set -e; "$@") >"$log" 2>&1
    rc=$?
    set -e
    report "$name" "$rc" "$log"
}

finish() {
    local extra=""
    ((skipped == 0)) || extra=", $skipped skipped"
    echo "$SUITE: $passed passed, $failed failed$extra"
    FINISHED=1
    exit $((failed > 0))
}

wait_for() { # wait_for SECONDS TEST-CMD...: polls until TEST-CMD succeeds
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}

no_shm_leftovers() { # no_shm_leftovers INSTANCE TAG: nothing in /dev/shm names the daemon instance or this run
    local left
    left=$(find /dev/shm -maxdepth 1 -name "aether*" \( -name "aether.$1*" -o -name "*$2*" \) -print)
    [[ -n $1 && -z $left ]] || { echo "left in /dev/shm (instance '$1'): $left"; return 1; }
}
