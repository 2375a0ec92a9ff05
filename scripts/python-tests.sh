#!/usr/bin/env bash
# Python bindings: build the abi3 wheel with maturin, install it in a virtual
# environment (python/.venv, git-ignored), run the pytest suite against
# private daemons, then the quick benchmark. Needs Rust, a C compiler and
# CPython >= 3.11 with pip; maturin, pytest and numpy come from PyPI.
#
#   bash scripts/python-tests.sh            # tests + quick benchmark
#   AETHER_PY_BENCH=0 bash scripts/python-tests.sh   # tests only
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "python-tests: need CPython >= 3.11 as \$PYTHON or python3 (found: $("$python" --version 2>&1 || echo none))" >&2
  exit 1
fi

venv=${AETHER_PY_VENV:-$root/python/.venv}
if [ ! -x "$venv/bin/python" ]; then
  echo "== Python: virtual environment in $venv"
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    # Debian's python3 ships venv separately.
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      ver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$ver-venv" >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$python" -m venv "$venv"
    else
      echo "python-tests: '$python -m venv' failed (install the python3-venv package)" >&2
      exit 1
    fi
  fi
fi
py="$venv/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$py" -m pip install --quiet --disable-pip-version-check 'maturin>=1.5,<2' pytest numpy mypy

echo "== Python: building aetherd and aether-cli"
cargo build --release --quiet -p aetherd -p aether-cli

echo "== Python: building and installing the wheel (distribution aether-pubsub, with aetherd inside)"
wheels=$(mktemp -d)
fresh=$(mktemp -d)
trap 'rm -rf "$wheels" "$fresh"' EXIT
release=${CARGO_TARGET_DIR:-$root/target}/release
# The wheel carries the broker (pyproject.toml: tool.maturin.include).
strip -o python/aether/aetherd "$release/aetherd" 2>/dev/null || cp "$release/aetherd" python/aether/aetherd
# The extension is its own workspace (python/Cargo.lock): it builds in its own
# target directory, so that it never overwrites the main workspace's
# artifacts when CARGO_TARGET_DIR points both at one place.
(cd python && CARGO_TARGET_DIR="$root/python/target" "$venv/bin/maturin" build --release --quiet --interpreter "$py" --out "$wheels")
"$py" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/aether_pubsub-*.whl

shm_before=$(ls /dev/shm 2>/dev/null | grep -c '^aether' || true)

# Tests run from the repository root so that `import aether` is the installed
# wheel, not the source folder python/aether (which lacks the native module).
export AETHER_NO_AUTOSTART=1
export AETHER_DAEMON="$release/aetherd"
export AETHER_CLI="$release/aether-cli"

echo "== Python: pytest"
"$venv/bin/pytest" python/tests -q -p no:cacheprovider

echo "== Python: the stubs type-check what users write (mypy --strict, Python 3.11 and 3.12)"
for v in 3.11 3.12; do
  (cd python && "$py" -m mypy --strict --no-incremental --python-version "$v" tests/typing_check.py)
done

echo "== Python: the wheel alone: a fresh virtualenv, no aetherd on PATH, the README's example"
# What a user gets from `pip install aether-pubsub` on a machine with no
# Aether: the example auto-starts the aetherd inside the wheel (a private
# broker under this run's own XDG_RUNTIME_DIR), which is then stopped.
"$python" -m venv "$fresh/venv"
"$fresh/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index "$wheels"/aether_pubsub-*.whl
mkdir -m 0700 "$fresh/run"
example=$(sed -n '/^```python$/,/^```$/p' python/README.md | sed '1d;/^```$/,$d')
out=$(cd "$fresh" && env -i PATH=/nonexistent HOME="$fresh" XDG_RUNTIME_DIR="$fresh/run" "$fresh/venv/bin/python" -c "$example")
echo "$out"
pid=$(sed -n 's/.*listening on .* (pid \([0-9]*\),.*/\1/p' "$fresh/run/aether/aetherd.log" | head -n 1)
# (`|| true`: under set -e a failed kill of a daemon already gone would end
# the trap, and the script, with status 1 before the rm)
trap 'if [ -n "${pid:-}" ]; then kill -TERM "$pid" 2>/dev/null || true; fi; rm -rf "$wheels" "$fresh"' EXIT
# The examples, run the same way, against the broker the example started.
run_fresh() { (cd "$fresh" && env -i PATH=/nonexistent HOME="$fresh" XDG_RUNTIME_DIR="$fresh/run" "$fresh/venv/bin/python" "$@"); }
hello=$(run_fresh "$root/examples/python/hello.py")
echo "$hello"
case "$hello" in "got hello (seq "*")") ;; *) echo "FAILED: examples/python/hello.py printed: $hello" >&2; exit 1 ;; esac
run_fresh "$root/examples/python/asyncio_subscriber.py" example-topic 2 >"$fresh/async.out" 2>"$fresh/async.err" &
async_pid=$!
for _ in $(seq 100); do grep -q "subscribed to example-topic" "$fresh/async.err" 2>/dev/null && break; sleep 0.1; done
run_fresh -c 'import aether; p = aether.Publisher("example-topic"); p.publish(b"first"); p.publish(b"second")'
wait "$async_pid" || { cat "$fresh/async.err" >&2; echo "FAILED: examples/python/asyncio_subscriber.py" >&2; exit 1; }
[ "$(cat "$fresh/async.out")" = "$(printf 'first\nsecond')" ] ||
  { echo "FAILED: asyncio_subscriber.py printed: $(cat "$fresh/async.out")" >&2; exit 1; }
echo "ok: examples/python/hello.py and asyncio_subscriber.py"
[ -n "$pid" ] && kill -TERM "$pid"
for _ in $(seq 100); do [ -e "$fresh/run/aether/aetherd.sock" ] || break; sleep 0.1; done
case "$out" in
  "0 "*" b'hello'") echo "ok: the README's example ran with the wheel's aetherd (pid $pid)" ;;
  *) echo "FAILED: the README's example printed: $out" >&2; exit 1 ;;
esac

if [ "${AETHER_PY_BENCH:-1}" != 0 ]; then
  echo "== Python: benchmark (quick)"
  "$py" -m aether.bench --quick
fi

shm_after=$(ls /dev/shm 2>/dev/null | grep -c '^aether' || true)
if [ "$shm_after" -gt "$shm_before" ]; then
  echo "FAILED: the Python tests left shared-memory objects behind:" >&2
  ls /dev/shm | grep '^aether' >&2
  exit 1
fi
echo "== Python: all tests passed"
