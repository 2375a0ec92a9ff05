#!/usr/bin/env bash
# cmake-tests.sh — Aether as a CMake and C++ user meets it (docs/CPP.md):
# `cmake -B build && cmake --build build` in a fresh build directory, `ctest`
# (the C programs and aether.hpp's tests under ASan+UBSan, against a private
# daemon), `cmake --install --prefix P`, then c-tests/cmake-consumer built
# against P with find_package(aether 0.1) and run (shared and static). Again
# with Clang where it is installed (or installable). Installs cmake and g++
# from Debian when absent (as root). The Rust build is shared with the rest
# of the test command (AETHER_CARGO_DIR=target).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

need=()
for tool in cmake g++; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "cmake-tests: installing ${need[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "cmake-tests: ${need[*]} missing (run as root, or install them with apt-get)" >&2
    exit 1
  fi
fi
if ! command -v clang++ >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # Clang too where Debian has it; its absence is not a failure.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null 2>&1 || true
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/aether-cmake-tests.XXXXXX")
DAEMON_PID=
cleanup() {
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# compilers: label C-compiler C++-compiler
run() {
  local label=$1 cc=$2 cxx=$3 build=$TMP/build-$1 prefix=$TMP/prefix-$1 consumer=$TMP/consumer-$1
  echo "-- $label: cmake -B build && cmake --build build"
  cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
    -DAETHER_CARGO_DIR="$root/target" >"$TMP/$label-configure.log" 2>&1 ||
    { cat "$TMP/$label-configure.log"; return 1; }
  cmake --build "$build" -j "$(nproc)" >"$TMP/$label-build.log" 2>&1 || { tail -50 "$TMP/$label-build.log"; return 1; }
  for f in aetherd aether-cli libaether.so.0 libaether.a; do
    [ -e "$build/$f" ] || { echo "$f is not under build/"; return 1; }
  done
  echo "-- $label: ctest"
  ctest --test-dir "$build" --output-on-failure
  echo "-- $label: cmake --install build --prefix P"
  cmake --install "$build" --prefix "$prefix" >/dev/null
  for f in include/aether.h include/aether.hpp lib/libaether.so.0 lib/libaether.a lib/pkgconfig/aether.pc \
    lib/cmake/aether/aetherConfig.cmake lib/cmake/aether/aetherConfigVersion.cmake bin/aetherd bin/aether-cli; do
    [ -e "$prefix/$f" ] || { echo "the install lacks $f"; return 1; }
  done
  grep -qx "prefix=$prefix" "$prefix/lib/pkgconfig/aether.pc" || { echo "aether.pc names another prefix"; return 1; }
  echo "-- $label: a consumer project: find_package(aether 0.1) against P"
  cmake -S "$root/c-tests/cmake-consumer" -B "$consumer" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
  cmake --build "$consumer" >/dev/null
  "$prefix/bin/aetherd" --socket "$TMP/$label.sock" --state-dir "$TMP/$label-state" 2>"$TMP/$label-aetherd.log" &
  DAEMON_PID=$!
  for _ in $(seq 100); do [ -S "$TMP/$label.sock" ] && break; sleep 0.05; done
  # No LD_LIBRARY_PATH: CMake's rpath for the imported target finds the library.
  out=$(env -u LD_LIBRARY_PATH AETHER_NO_AUTOSTART=1 "$consumer/consumer" "$TMP/$label.sock" cmake-consumer)
  echo "$out"
  [[ $out == "got hello from CMake (libaether "*")" ]]
  out=$(AETHER_NO_AUTOSTART=1 "$consumer/consumer_static" "$TMP/$label.sock")
  echo "$out"
  if readelf -d "$consumer/consumer_static" | grep -q 'libaether'; then echo "consumer_static links libaether.so"; return 1; fi
  kill "$DAEMON_PID" && wait "$DAEMON_PID" || true
  DAEMON_PID=
  # A request the installed version cannot meet is refused.
  mkdir -p "$TMP/$label-v9"
  printf 'cmake_minimum_required(VERSION 3.20)\nproject(v9 NONE)\nfind_package(aether 9.0 REQUIRED)\n' >"$TMP/$label-v9/CMakeLists.txt"
  if cmake -S "$TMP/$label-v9" -B "$TMP/$label-v9/b" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null 2>&1; then
    echo "find_package(aether 9.0) accepted version 0.1"
    return 1
  fi
}

run gcc gcc g++
if command -v clang++ >/dev/null; then
  run clang clang clang++
else
  echo "-- clang: not installed (apt-get install clang): skipped"
fi
echo "cmake-tests: passed"
