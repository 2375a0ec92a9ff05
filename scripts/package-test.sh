#!/usr/bin/env bash
# package-test.sh — the Debian package as its users get it, without installing
# it on this machine: build it (scripts/package.sh, lintian included), check
# what it holds (dpkg -c, control files), extract it into a throwaway root
# (dpkg -x), compile C programs against that root with pkg-config (sysroot),
# and exchange messages between them and the packaged aether-cli through the
# packaged aetherd; `ldd` shows libaether.so.0 resolved from the root.
#
# As root, where mount namespaces work (unshare -m), it also plays an
# installation with a copy of /etc mounted over /etc in a private namespace:
# the postinst creates the user and group aether (twice: idempotent) and
# enables aetherd.service; the packaged /etc/aether/aetherd.toml starts the
# packaged daemon as user aether; a member of group aether publishes and
# subscribes through it, a non-member is refused; the postrm's purge removes
# user and group. The machine's own /etc is checked to be untouched.
#
# Prints `ok - NAME` / `not ok - NAME` (a failure's log follows as `# `
# lines) and ends with `package tests: N passed, M failed[, K skipped]`;
# exits 1 if M > 0. Environment: CC (default cc), PACKAGE_TEST_COUNT
# (messages per exchange, default 1000), HARNESS_VERBOSE=1 (show every
# test's log, not only a failure's).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CC=${CC:-cc}
COUNT=${PACKAGE_TEST_COUNT:-1000}
CFLAGS=(-std=c11 -Wall -Wextra -Werror)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/aether-package-test.XXXXXX")
PKGROOT=$TMP/root # the extracted package
BIN=$TMP/bin
LOGS=$TMP/logs
SOCK=$TMP/aetherd.sock
TAG=pkgtest-$$ # in every topic name of this run
DAEMON_PID=
INSTANCE=
CHILDREN=()
mkdir -p "$BIN" "$LOGS"
SUITE="package tests"
# shellcheck source=scripts/harness.sh
source "$ROOT/scripts/harness.sh"

cleanup() {
    local status=$?
    if [[ -z $FINISHED ]]; then # an unexpected error stopped the script
        echo "not ok - package-test.sh stopped early (status $status)"
        echo "package tests: $passed passed, $((failed + 1)) failed"
    fi
    release_all
}

for tool in "$CC" pkg-config readelf ldd cargo; do
    command -v "$tool" >/dev/null || { echo "package-test: $tool is required" >&2; exit 1; }
done

# --- the package ------------------------------------------------------------------------
build_package() {
    bash scripts/package.sh >"$TMP/package.out"
    tail -n 3 "$TMP/package.out"
    local d
    for d in $(tail -n 3 "$TMP/package.out"); do [[ -f $d ]]; done
}
check "scripts/package.sh builds libaether0, libaether-dev and aether (lintian: no errors, no warnings)" build_package
# package.sh's last three lines: libaether0, libaether-dev, aether
LIB_DEB=$(tail -n 3 "$TMP/package.out" 2>/dev/null | sed -n 1p || true)
DEV_DEB=$(tail -n 3 "$TMP/package.out" 2>/dev/null | sed -n 2p || true)
DEB=$(tail -n 1 "$TMP/package.out" 2>/dev/null || true)
[[ -n $DEB && -f $DEB && -f $LIB_DEB && -f $DEV_DEB ]] || finish
DEBS=("$LIB_DEB" "$DEV_DEB" "$DEB")

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
ARCH=$(dpkg-architecture -qDEB_HOST_ARCH)
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
LIBDIR=usr/lib/$MA
for d in "${DEBS[@]}"; do
    dpkg -c "$d" | awk '{ print $6 }' | sed 's|^\./||' >"$TMP/contents.$(dpkg-deb -f "$d" Package)"
done
cp "$TMP/contents.aether" "$TMP/contents"

name_and_version() {
    [[ ${DEB##*/} == "aether_${VERSION}_${ARCH}.deb" ]] || { echo "file name ${DEB##*/}"; return 1; }
    [[ $(dpkg-deb -f "$DEB" Package) == aether && $(dpkg-deb -f "$DEB" Version) == "$VERSION" ]]
    local depends
    depends=$(dpkg-deb -f "$DEB" Depends)
    echo "Depends: $depends"
    grep -qw adduser <<<"$depends"
}
check "aether_${VERSION}_${ARCH}.deb: package aether, version $VERSION, depends on adduser" name_and_version
library_packages() {
    [[ ${LIB_DEB##*/} == "libaether0_${VERSION}_${ARCH}.deb" && ${DEV_DEB##*/} == "libaether-dev_${VERSION}_${ARCH}.deb" ]] ||
        { echo "file names ${LIB_DEB##*/} ${DEV_DEB##*/}"; return 1; }
    local d
    for d in "$LIB_DEB" "$DEV_DEB"; do
        dpkg-deb -f "$d" Package Version Section Multi-Arch Depends
        [[ $(dpkg-deb -f "$d" Version) == "$VERSION" && $(dpkg-deb -f "$d" Multi-Arch) == same ]]
    done
    [[ $(dpkg-deb -f "$LIB_DEB" Section) == libs && $(dpkg-deb -f "$DEV_DEB" Section) == libdevel ]]
    [[ $(dpkg-deb -f "$DEV_DEB" Depends) == "libaether0 (= $VERSION)" ]]
    dpkg-deb -f "$LIB_DEB" Depends | grep -q '^libc6 (>= '
}
check "libaether0 (section libs) and libaether-dev (libdevel, depends on libaether0 (= $VERSION)): Multi-Arch: same" library_packages

has_files() { # has_files PATH...: each one is in `dpkg -c`
    local f missing=0
    for f in "$@"; do
        grep -qxF "$f" "${CONTENTS:-$TMP/contents}" || { echo "not in the package: /$f"; missing=1; }
    done
    return "$missing"
}
split() { # each file in the package Debian users look for it in, and only there
    local f
    CONTENTS=$TMP/contents.libaether0 has_files "$LIBDIR/libaether.so.$VERSION" "$LIBDIR/libaether.so.0" usr/share/doc/libaether0/copyright
    CONTENTS=$TMP/contents.libaether-dev has_files "$LIBDIR/libaether.so" usr/include/aether.h "$LIBDIR/pkgconfig/aether.pc" \
        usr/include/aether.hpp "$LIBDIR/cmake/aether/aetherConfig.cmake" "$LIBDIR/cmake/aether/aetherConfigVersion.cmake" \
        usr/share/doc/libaether-dev/examples/hello.c usr/share/doc/libaether-dev/examples/event_loop.c
    for f in libaether aether.h aether.pc; do
        ! grep -F "$f" "$TMP/contents.aether" | grep -v '^usr/share/' || { echo "the daemon's package holds $f"; return 1; }
    done
    ! grep -Fx -f "$TMP/contents.libaether0" "$TMP/contents.libaether-dev" | grep -v -e '/$' -e '^$' ||
        { echo "a file in both library packages"; return 1; }
}
check "dpkg -c: libaether0 the runtime library, libaether-dev headers (C, C++), link, aether.pc, CMake package and examples; aether none of them" split
links() {
    dpkg -c "$LIB_DEB" | grep -F " ./$LIBDIR/libaether.so.0 -> libaether.so.$VERSION"
    dpkg -c "$DEV_DEB" | grep -F " ./$LIBDIR/libaether.so -> libaether.so.0"
}
check "dpkg -c: libaether.so -> libaether.so.0 -> libaether.so.$VERSION" links
check "dpkg -c: programs, systemd units (service, socket), tmpfiles.d, conffile, copyright, changelog" has_files \
    usr/bin/aetherd usr/bin/aether-cli usr/lib/systemd/system/aetherd.service \
    usr/lib/systemd/system/aetherd.socket usr/lib/tmpfiles.d/aetherd.conf \
    etc/aether/aetherd.toml usr/share/doc/aether/copyright usr/share/doc/aether/changelog.gz
check "dpkg -c: completions for bash, zsh and fish" has_files \
    usr/share/bash-completion/completions/aether-cli usr/share/zsh/vendor-completions/_aether-cli \
    usr/share/fish/vendor_completions.d/aether-cli.fish

control() {
    local dir=$TMP/control
    dpkg-deb -e "$DEB" "$dir"
    grep -qxF /etc/aether/aetherd.toml "$dir/conffiles" || { echo "conffiles: $(cat "$dir/conffiles")"; return 1; }
    local lib=$TMP/control.lib
    dpkg-deb -e "$LIB_DEB" "$lib"
    grep -qx 'activate-noawait ldconfig' "$lib/triggers" || { echo "libaether0: no ldconfig trigger"; return 1; }
    grep -qx "libaether 0 libaether0 (>= $VERSION)" "$lib/shlibs" || { echo "libaether0 shlibs: $(cat "$lib/shlibs")"; return 1; }
    grep -q 'adduser --system' "$dir/postinst" || { echo "postinst does not create the system user"; return 1; }
    grep -q 'deb-systemd-helper enable aetherd.service' "$dir/postinst" || { echo "postinst does not enable the unit"; return 1; }
    # shellcheck disable=SC2016 # a literal $ in the generated script
    grep -q 'deb-systemd-invoke $_dh_action aetherd.service' "$dir/postinst" || { echo "postinst does not start the unit"; return 1; }
    grep -q 'if \[ -d /run/systemd/system \]; then' "$dir/postinst" || { echo "the start is not limited to systems running systemd"; return 1; }
    grep -q 'deb-systemd-helper enable aetherd.socket' "$dir/postinst" || { echo "postinst does not enable the socket"; return 1; }
    grep -q 'systemd-tmpfiles --create aetherd.conf' "$dir/postinst" || { echo "postinst does not make /run/aether"; return 1; }
    grep -q 'deluser --system' "$dir/postrm" || { echo "postrm does not remove the system user on purge"; return 1; }
    local s
    for s in postinst prerm postrm; do sh -n "$dir/$s"; done
}
check "control: conffiles, libaether0's ldconfig trigger and shlibs, maintainer scripts (user, unit enable/start, purge)" control

lintian_clean() {
    local out status=0
    out=$(lintian --fail-on error,warning "${DEBS[@]}" 2>&1) || status=$?
    echo "$out"
    echo "errors: $(grep -c '^E: ' <<<"$out" || true), warnings: $(grep -c '^W: ' <<<"$out" || true)"
    [[ $status == 0 ]] && ! grep -q '^[EW]: ' <<<"$out"
}
check "lintian reports no errors and no warnings on the three packages" lintian_clean
echo "# lintian: $(tail -n 1 "$(log_of "lintian reports no errors and no warnings on the three packages")")"

# --- extracted into a throwaway root ------------------------------------------------------------
extract() { local d; for d in "${DEBS[@]}"; do dpkg -x "$d" "$PKGROOT"; done; }
check "dpkg -x the three packages into a throwaway root" extract
[[ -x $PKGROOT/usr/bin/aetherd ]] || finish
man_pages() { # aetherd(8), aether-cli(1) and one page per subcommand that `aether-cli --help` lists
    local subs sub pages=(usr/share/man/man8/aetherd.8.gz usr/share/man/man1/aether-cli.1.gz)
    subs=$("$PKGROOT/usr/bin/aether-cli" --help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }' | grep -vx help)
    [[ -n $subs ]] || { echo "no subcommands in aether-cli --help"; return 1; }
    for sub in $subs; do pages+=("usr/share/man/man1/aether-cli-$sub.1.gz"); done
    has_files "${pages[@]}"
    echo "${#pages[@]} pages"
}
check "dpkg -c: man pages aetherd(8), aether-cli(1) and aether-cli-SUBCOMMAND(1) for each subcommand" man_pages
md5sums() {
    local d
    for d in "${DEBS[@]}"; do
        rm -rf "$TMP/md5" && dpkg-deb -e "$d" "$TMP/md5" && (cd "$PKGROOT" && md5sum -c --quiet "$TMP/md5/md5sums")
    done
}
check "the extracted files match the package's md5sums" md5sums

docs() {
    zcat "$PKGROOT/usr/share/doc/aether/changelog.gz" >"$TMP/changelog"
    [[ $(dpkg-parsechangelog -l "$TMP/changelog" -S Version) == "$VERSION" ]] || { echo "changelog is not at $VERSION"; return 1; }
    head -n 1 "$PKGROOT/usr/share/doc/aether/copyright" | grep -q '^Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/'
}
check "changelog (Debian format) is at $VERSION, copyright is DEP-5" docs
unit() {
    local u=$PKGROOT/usr/lib/systemd/system/aetherd.service exe cfg
    exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$u")
    cfg=$(sed -n 's/^ExecStart=.*--config \([^ ]*\).*/\1/p' "$u")
    echo "ExecStart: $exe --config $cfg"
    [[ -x $PKGROOT$exe && -f $PKGROOT$cfg ]] || { echo "the unit's program or configuration is not in the package"; return 1; }
    grep -qx 'User=aether' "$u" && grep -qx 'Group=aether' "$u" && grep -qx 'RuntimeDirectory=aether' "$u"
    grep -qx 'socket = "/run/aether/aetherd.sock"' "$PKGROOT/etc/aether/aetherd.toml"
    grep -qx 'socket_mode = "0660"' "$PKGROOT/etc/aether/aetherd.toml"
    grep -qx 'socket_group = "aether"' "$PKGROOT/etc/aether/aetherd.toml"
    grep -q '^Documentation=man:aetherd(8)' "$u" && ! grep -q 'example.invalid' "$u" || { echo "Documentation= of the unit"; return 1; }
    grep -qx 'RuntimeDirectoryPreserve=yes' "$u"
    # Durable topics' logs: /var/lib/aether, private, made by systemd.
    grep -qx 'StateDirectory=aether' "$u" && grep -qx 'StateDirectoryMode=0700' "$u" &&
        grep -qx 'Environment=AETHER_STATE_DIR=/var/lib/aether' "$u" || { echo "the unit's state directory"; return 1; }
    # The socket unit makes the same socket, as the conffile sets it up.
    local s=$PKGROOT/usr/lib/systemd/system/aetherd.socket
    grep -qx 'ListenSequentialPacket=/run/aether/aetherd.sock' "$s" && grep -qx 'SocketMode=0660' "$s" &&
        grep -qx 'SocketGroup=aether' "$s" && grep -qx 'SocketUser=aether' "$s" || { echo "aetherd.socket:"; cat "$s"; return 1; }
    grep -qx 'd /run/aether 0755 aether aether -' "$PKGROOT/usr/lib/tmpfiles.d/aetherd.conf"
}
check "unit runs the packaged aetherd as aether with the conffile and /var/lib/aether for logs; aetherd.socket and the conffile: /run/aether/aetherd.sock 0660 group aether; tmpfiles.d makes /run/aether" unit
completions() {
    local c=$PKGROOT/usr/share
    bash -n "$c/bash-completion/completions/aether-cli"
    bash -c "source '$c/bash-completion/completions/aether-cli' && complete -p aether-cli"
    head -n 1 "$c/zsh/vendor-completions/_aether-cli" | grep -qx '#compdef aether-cli'
    grep -q '^complete -c aether-cli' "$c/fish/vendor_completions.d/aether-cli.fish"
}
check "completions: bash loads and completes aether-cli; zsh #compdef; fish complete -c" completions
if command -v man >/dev/null; then
    render_man() {
        local page out
        for page in "$PKGROOT"/usr/share/man/man*/*.gz; do
            out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null) || return 1
            [[ -z $out ]] || { echo "${page##*/}: $out"; return 1; }
        done
        LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$PKGROOT/usr/share/man/man8/aetherd.8.gz" >"$TMP/aetherd.8.txt"
        grep -q -- '--socket-group' "$TMP/aetherd.8.txt"
    }
    check "man pages render without warnings (man --warnings); aetherd(8) documents --socket-group" render_man
else
    skip "man pages render without warnings" "man is not installed"
fi

export PKG_CONFIG_SYSROOT_DIR=$PKGROOT PKG_CONFIG_LIBDIR=$PKGROOT/$LIBDIR/pkgconfig
unset PKG_CONFIG_PATH
pc() {
    pkg-config --exists --print-errors aether
    [[ $(pkg-config --modversion aether) == "$VERSION" ]]
    local flags
    if grep -q '^Libs.private' "$PKGROOT/$LIBDIR/pkgconfig/aether.pc"; then
        echo "aether.pc names Libs.private, for a static library the package does not ship"
        return 1
    fi
    flags=$(pkg-config --cflags --libs aether | xargs) # (xargs: without the trailing blank)
    echo "$flags"
    [[ $flags == "-I$PKGROOT/usr/include -L$PKGROOT/$LIBDIR -laether" ]]
}
check "pkg-config --cflags --libs aether (sysroot = the extracted root) points into it; no Libs.private (no static library shipped)" pc
compile() { # compile NAME SOURCE
    # shellcheck disable=SC2046 # pkg-config output is meant to be word-split
    "$CC" "${CFLAGS[@]}" -o "$BIN/$1" "$2" $(pkg-config --cflags --libs aether)
}
check "compile c-tests/publisher.c with pkg-config" compile publisher c-tests/publisher.c
check "compile packaging/test/lines.c with pkg-config" compile lines packaging/test/lines.c
export LD_LIBRARY_PATH=$PKGROOT/$LIBDIR
resolved() { # the programs need libaether.so.0 and ldd finds it in the extracted root
    local p out
    for p in publisher lines; do
        readelf -d "$BIN/$p" | grep -F 'Shared library: [libaether.so.0]'
        out=$(ldd "$BIN/$p")
        echo "$out"
        grep -qF "libaether.so.0 => $PKGROOT/$LIBDIR/libaether.so.0 (" <<<"$out"
    done
}
check "ldd: libaether.so.0 => the extracted root's $LIBDIR/libaether.so.0" resolved
cmake_consumer() { # find_package(aether 0.1) in the extracted root builds the C++ consumer
    cmake -S c-tests/cmake-consumer -B "$TMP/cmake-consumer" -DCMAKE_PREFIX_PATH="$PKGROOT/usr" >"$TMP/cmake.log" 2>&1 ||
        { cat "$TMP/cmake.log"; return 1; }
    cmake --build "$TMP/cmake-consumer" >>"$TMP/cmake.log" 2>&1 || { cat "$TMP/cmake.log"; return 1; }
    # The package ships no static library: no aether::aether_static, no consumer_static.
    [[ ! -e $TMP/cmake-consumer/consumer_static ]]
}
if command -v cmake >/dev/null && command -v g++ >/dev/null; then
    check "find_package(aether 0.1) against the extracted root (CMake package of libaether-dev) builds c-tests/cmake-consumer" cmake_consumer
else
    skip "find_package(aether) against the extracted root" "cmake or g++ is not installed"
fi
shlibdeps() { # a package of a program built against libaether depends on libaether0
    # (as a package build would: the library package unpacked with its
    # DEBIAN/shlibs, and a source tree for dpkg-shlibdeps to stand in)
    local dir=$TMP/shlibdeps out
    mkdir -p "$dir/debian" && : >"$dir/debian/control"
    dpkg-deb -R "$LIB_DEB" "$dir/libaether0"
    out=$(cd "$dir" && dpkg-shlibdeps -O -S"$dir/libaether0" -l"$dir/libaether0/$LIBDIR" "$BIN/publisher" 2>&1)
    echo "$out"
    grep -q "libaether0 (>= $VERSION)" <<<"$out"
}
check "dpkg-shlibdeps on a program built against it: Depends: libaether0 (>= $VERSION) (the shlibs file)" shlibdeps
[[ $failed == 0 ]] || finish

# --- the packaged daemon and CLI, on a private socket ---------------------------------------------
export AETHER_NO_AUTOSTART=1
unset AETHER_SOCKET AETHER_CONFIG
CLI=("$PKGROOT/usr/bin/aether-cli" --socket "$SOCK")
check "packaged aetherd and aether-cli report version $VERSION" \
    bash -c "'$PKGROOT/usr/bin/aetherd' --version | grep -qx 'aetherd $VERSION' && '${CLI[0]}' --version | grep -qx 'aether-cli $VERSION'"
"$PKGROOT/usr/bin/aetherd" --socket "$SOCK" --state-dir "$TMP/state" 2>"$LOGS/aetherd.log" &
DAEMON_PID=$!
if wait_for 10 test -S "$SOCK"; then rc=0; else rc=1; fi
report "packaged aetherd listens on a private socket" "$rc" "$LOGS/aetherd.log"
[[ $rc == 0 ]] || finish
INSTANCE=$(sed -n 's/.*instance \([0-9a-f]\{16\}\).*/\1/p' "$LOGS/aetherd.log" | head -n 1)
TOPIC=$TAG-exchange
check "aether-cli create $TOPIC --policy reliable" "${CLI[@]}" create "$TOPIC" --policy reliable --max-message 4096
consumer_runs() { # the C++ consumer built with find_package talks to the packaged daemon
    local out
    out=$("$TMP/cmake-consumer/consumer" "$SOCK" "$TAG-cmake")
    echo "$out"
    [[ $out == "got hello from CMake (libaether $VERSION)" ]]
}
if [[ -x $TMP/cmake-consumer/consumer ]]; then
    check "the CMake consumer (aether.hpp, aether::aether from the package) publishes and receives" consumer_runs
fi

c_to_cli() { # the C publisher's messages reach aether-cli sub
    local log=$TMP/cli-sub.log pid rc=0
    "${CLI[@]}" sub "$TOPIC" --count "$COUNT" --timeout 10 --quiet 2>"$log" >/dev/null &
    pid=$!
    CHILDREN+=("$pid")
    wait_for 10 grep -q "^subscribed to $TOPIC" "$log" || { echo "aether-cli sub did not subscribe"; cat "$log"; return 1; }
    "$BIN/publisher" "$SOCK" "$TOPIC" "$COUNT" 4096 || rc=$?
    wait "$pid" || rc=$?
    cat "$log"
    grep -q "^received $COUNT messages from $TOPIC (0 lost)" "$log" && [[ $rc == 0 ]]
}
check "C program (c-tests/publisher.c) -> packaged aether-cli sub: $COUNT messages" c_to_cli

cli_to_c() { # aether-cli pub's lines come out of the C subscriber
    local pid rc=0
    seq 1 "$COUNT" | sed 's/^/line /' >"$TMP/sent"
    "$BIN/lines" "$SOCK" "$TOPIC" "$COUNT" "$TMP/lines.ready" >"$TMP/received" 2>"$TMP/lines.err" &
    pid=$!
    CHILDREN+=("$pid")
    wait_for 10 test -e "$TMP/lines.ready" || { echo "lines did not subscribe"; cat "$TMP/lines.err"; return 1; }
    "${CLI[@]}" pub "$TOPIC" <"$TMP/sent" || rc=$?
    wait "$pid" || rc=$?
    cat "$TMP/lines.err"
    [[ $rc == 0 ]] && cmp "$TMP/sent" "$TMP/received"
}
check "packaged aether-cli pub -> C program (packaging/test/lines.c): $COUNT lines, same bytes, in order" cli_to_c
check "aether-cli delete $TOPIC" "${CLI[@]}" delete "$TOPIC"

if stop_daemon; then rc=0; else rc=$?; fi
report "packaged aetherd exits 0 on SIGTERM" "$rc" "$LOGS/aetherd.log"
leftovers() {
    no_shm_leftovers "$INSTANCE" "$TAG"
    [[ ! -e $SOCK && ! -e $SOCK.lock && ! -e $SOCK.admin ]]
}
check "nothing left in /dev/shm, no socket, lock or pipe" leftovers

# --- an installation played in a private mount namespace -------------------------------------------
# Inside `unshare -m`, $ETC (a copy of /etc) is mounted over /etc, $VARLIB
# (empty at first, kept between calls: deb-systemd-helper's state) over
# /var/lib, and empty tmpfs over /var/log and /usr/lib/systemd/system (where
# the packaged unit is copied): the maintainer scripts and adduser write only
# there.
ETC=$TMP/etc
VARLIB=$TMP/varlib
# "${IN_NS[@]}" CMD...: runs CMD as root in a fresh private mount namespace
# over $ETC (an external command, so that `"${IN_NS[@]}" CMD &` gives CMD's pid).
# shellcheck disable=SC2016 # the script's $ expand in the namespace's sh
IN_NS=(unshare -m --propagation private env ETC="$ETC" VARLIB="$VARLIB" PKGROOT="$PKGROOT" sh -ec '
    mount --bind "$ETC" /etc
    mount --bind "$VARLIB" /var/lib
    mount -t tmpfs tmpfs /var/log
    if [ -d /usr/lib/systemd/system ]; then
        mount -t tmpfs tmpfs /usr/lib/systemd/system
        cp "$PKGROOT"/usr/lib/systemd/system/aetherd.* /usr/lib/systemd/system/
    fi
    # NS_RUN=1: a /run of its own (no systemd there, and /run/aether is free).
    if [ -n "${NS_RUN:-}" ]; then mount -t tmpfs -o mode=0755 tmpfs /run; fi
    exec "$@"' in_ns)
in_ns() { "${IN_NS[@]}" "$@"; }
maint() { # maint SCRIPT ARGS...: a maintainer script, in the namespace, with the environment dpkg gives it
    local script=$1
    shift
    in_ns env DPKG_MAINTSCRIPT_PACKAGE=aether DPKG_MAINTSCRIPT_NAME="$script" \
        DPKG_MAINTSCRIPT_ARCH="$ARCH" DPKG_RUNNING_VERSION="$(dpkg-query -W -f '${Version}' dpkg)" \
        "$TMP/scripts/$script" "$@"
}
can_play=""
if [[ $(id -u) != 0 ]]; then
    can_play="needs root"
elif ! command -v unshare >/dev/null || ! command -v setpriv >/dev/null; then
    can_play="needs unshare and setpriv (util-linux)"
elif ! command -v adduser >/dev/null || ! command -v deluser >/dev/null; then
    can_play="needs adduser"
elif ! unshare -m --propagation private true 2>/dev/null; then
    can_play="mount namespaces are not available here"
fi
if [[ -n $can_play ]]; then
    skip "installation played in a private mount namespace" "$can_play"
    finish
fi

host_state() {
    cat /etc/passwd /etc/group /etc/shadow /etc/gshadow 2>/dev/null | md5sum
    ls -d /etc/aether /etc/systemd/system/multi-user.target.wants/aetherd.service \
        /usr/lib/systemd/system/aetherd.service /var/lib/systemd/deb-systemd-helper-enabled/aetherd.service.dsh-also 2>&1 || true
}
host_before=$(host_state)
cp -a /etc "$ETC"
mkdir -p "$VARLIB"
dpkg-deb -e "$DEB" "$TMP/scripts"
# dpkg unpacks the files (the conffile among them) before it runs the postinst.
mkdir -p "$ETC/aether"
cp "$PKGROOT/etc/aether/aetherd.toml" "$ETC/aether/aetherd.toml"
postinst() {
    maint postinst configure
    grep '^aether:' "$ETC/passwd" "$ETC/group"
    maint postinst configure # again (reinstall, upgrade): nothing changes, no error
    [[ $(grep -c '^aether:' "$ETC/passwd") == 1 && $(grep -c '^aether:' "$ETC/group") == 1 ]]
    local uid shell
    uid=$(grep '^aether:' "$ETC/passwd" | cut -d: -f3)
    shell=$(grep '^aether:' "$ETC/passwd" | cut -d: -f7)
    ((uid < 1000)) || { echo "uid $uid is not a system uid"; return 1; }
    [[ $shell == */nologin || $shell == /bin/false ]] || { echo "shell $shell"; return 1; }
    if [[ -d /usr/lib/systemd/system ]]; then
        [[ -L $ETC/systemd/system/multi-user.target.wants/aetherd.service ]] || { echo "aetherd.service was not enabled"; return 1; }
    else
        echo "no /usr/lib/systemd/system here: enablement not checked"
    fi
}
check "postinst: system user and group aether (twice: idempotent), aetherd.service enabled" postinst
if ! grep -q '^aether:' "$ETC/group"; then finish; fi
AUID=$(grep '^aether:' "$ETC/passwd" | cut -d: -f3)
AGID=$(grep '^aether:' "$ETC/group" | cut -d: -f3)
MEMBER=64101   # uid and gid of a user whose supplementary groups include aether
STRANGER=64102 # and of one outside it
SYS=$TMP/run/aether # stands for /run/aether (RuntimeDirectory, owned by aether)
SYS_SOCK=$SYS/aetherd.sock
chmod 711 "$TMP"
mkdir -p "$SYS" "$TMP/member"
chmod 755 "$TMP/run" "$SYS"
chown "$AUID:$AGID" "$SYS"
chown "$MEMBER:$MEMBER" "$TMP/member"
as_member() { setpriv --reuid="$MEMBER" --regid="$MEMBER" --groups="$AGID" "$@"; }
as_stranger() { setpriv --reuid="$STRANGER" --regid="$STRANGER" --clear-groups "$@"; }

# The daemon as aetherd.service runs it: user and group aether, the packaged
# configuration (group name resolved in the namespace), only the socket moved.
"${IN_NS[@]}" setpriv --reuid=aether --regid=aether --init-groups \
    "$PKGROOT/usr/bin/aetherd" --config /etc/aether/aetherd.toml --socket "$SYS_SOCK" \
    2>"$LOGS/system-aetherd.log" &
DAEMON_PID=$!
conffile_accepted() {
    wait_for 10 test -S "$SYS_SOCK" || { echo "no socket"; return 1; }
    cat "$LOGS/system-aetherd.log"
    grep -q "configuration from /etc/aether/aetherd.toml" "$LOGS/system-aetherd.log"
    [[ $(stat -c '%a %U %G' "$SYS_SOCK") == "660 $AUID $AGID" || $(stat -c '%a %u %g' "$SYS_SOCK") == "660 $AUID $AGID" ]] ||
        { echo "socket: $(stat -c '%a %u %g' "$SYS_SOCK")"; return 1; }
}
check "packaged aetherd.toml accepted by the packaged aetherd running as aether; socket 0660 aether:aether" conffile_accepted
SYS_INSTANCE=$(sed -n 's/.*instance \([0-9a-f]\{16\}\).*/\1/p' "$LOGS/system-aetherd.log" | head -n 1)

member_uses_it() { # a member of group aether: publishes with aether-cli, receives with the C program
    local pid rc=0 topic=$TAG-members
    seq 1 100 | sed 's/^/member /' >"$TMP/member/sent"
    # aether-cli sub creates the topic (the rule's "admin") and subscribes
    as_member "$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" sub "$topic" --count 0
    as_member "$BIN/lines" "$SYS_SOCK" "$topic" 100 "$TMP/member/ready" >"$TMP/member/received" 2>"$TMP/member/err" &
    pid=$!
    CHILDREN+=("$pid")
    wait_for 10 test -e "$TMP/member/ready" || { echo "lines did not subscribe"; cat "$TMP/member/err"; return 1; }
    as_member "$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" pub "$topic" <"$TMP/member/sent" || rc=$?
    wait "$pid" || rc=$?
    cat "$TMP/member/err"
    [[ $rc == 0 ]] && cmp "$TMP/member/sent" "$TMP/member/received"
}
check "a member of group aether creates a topic, publishes and subscribes through the system broker" member_uses_it
stranger_refused() {
    local out
    if out=$(as_stranger "$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" pub "$TAG-strangers" hello 2>&1); then
        echo "a user outside group aether could publish: $out"
        return 1
    fi
    echo "$out"
    grep -qi 'permission denied' <<<"$out"
}
check "a user outside group aether is refused (permission denied on the socket)" stranger_refused
administered_by_root_and_members() { # issue 16: the admin pipe of a broker running as aether
    local out
    out=$("$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" --json status) || { echo "root: $out"; return 1; }
    echo "root: $out"
    grep -q '"topics"' <<<"$out"
    as_member "$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" create "$TAG-admin" --policy reliable
    out=$(as_member "$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" topics)
    echo "$out"
    grep -q "$TAG-admin" <<<"$out"
    as_member "$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" reload
    "$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" delete "$TAG-admin"
    stat -c 'reply directory: %A %U %G' "$SYS_SOCK.replies"
    [[ $(stat -c '%a' "$SYS_SOCK.replies") == 1730 && $(stat -c '%a' "$SYS_SOCK.admin") == 620 ]]
}
check "root and a member of group aether run aether-cli status, create, topics, reload and delete on the system broker" \
    administered_by_root_and_members
stranger_cannot_administer() {
    local out
    if out=$(as_stranger "$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" status 2>&1); then
        echo "a user outside group aether could administer: $out"
        return 1
    fi
    echo "$out"
    grep -q 'permission denied' <<<"$out"
}
check "a user outside group aether cannot reach the admin pipe (and is told so)" stranger_cannot_administer
if stop_daemon; then rc=0; else rc=$?; fi
report "system broker (as aether) drains and exits 0 on SIGTERM" "$rc" "$LOGS/system-aetherd.log"
check "nothing left in /dev/shm by the system broker" no_shm_leftovers "$SYS_INSTANCE" "$TAG"

# An operator lets a monitoring agent (outside group aether) in: every user
# may connect, and a rule grants it the monitor right only.
MONITOR=64103
as_monitor() { setpriv --reuid="$MONITOR" --regid="$MONITOR" --clear-groups "$@"; }
cp "$ETC/aether/aetherd.toml" "$TMP/aetherd.toml.packaged"
sed -i 's/^socket_mode = "0660"/socket_mode = "0666"/' "$ETC/aether/aetherd.toml"
printf '\n[[access]]\ntopics = ["*"]\nuids = [%s]\nallow = ["monitor"]\n' "$MONITOR" >>"$ETC/aether/aetherd.toml"
"${IN_NS[@]}" setpriv --reuid=aether --regid=aether --init-groups \
    "$PKGROOT/usr/bin/aetherd" --config /etc/aether/aetherd.toml --socket "$SYS_SOCK" \
    2>"$LOGS/monitored-aetherd.log" &
DAEMON_PID=$!
monitor_reads_only() {
    local out rc=0
    wait_for 10 test -S "$SYS_SOCK" || { echo "no socket"; cat "$LOGS/monitored-aetherd.log"; return 1; }
    "$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" create "$TAG-watched"
    for cmd in status topics subscribers stats; do
        out=$(as_monitor "$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" "$cmd" 2>&1) || { echo "monitor $cmd: $out"; return 1; }
    done
    local topics # (kept first: see c-tests.sh, create_reliable)
    topics=$(as_monitor "$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" topics) && grep -q "$TAG-watched" <<<"$topics"
    out=$(as_monitor "$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" delete "$TAG-watched" 2>&1) && rc=1
    echo "monitor delete: $out"
    grep -q "uid $MONITOR may not administer" <<<"$out" || rc=1
    out=$(as_stranger "$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" status 2>&1) && rc=1
    echo "stranger status: $out"
    grep -q "uid $STRANGER may not monitor" <<<"$out" || rc=1
    "$PKGROOT/usr/bin/aether-cli" --socket "$SYS_SOCK" delete "$TAG-watched" || rc=1
    return "$rc"
}
check "a monitoring user (monitor right only) reads status, topics, subscribers and stats but may not delete; a user with no right is told why" \
    monitor_reads_only
if stop_daemon; then rc=0; else rc=$?; fi
report "the monitored system broker exits 0 on SIGTERM" "$rc" "$LOGS/monitored-aetherd.log"
cp "$TMP/aetherd.toml.packaged" "$ETC/aether/aetherd.toml"

# Without systemd (a /run of its own in the namespace: no /run/systemd/system),
# the postinst says how to start the broker; that command, pasted, works.
# Beside it, a user outside the group auto-starts a private broker, which
# reads nothing of /etc/aether; with the system broker stopped, nobody's
# auto-start takes its place.
cat >"$TMP/nosystemd.sh" <<'SCRIPT'
set -eu
CLI=$PKGROOT/usr/bin/aether-cli
unset AETHER_NO_AUTOSTART AETHER_SOCKET XDG_RUNTIME_DIR
as_member() { setpriv --reuid="$MEMBER" --regid="$MEMBER" --groups="$AGID" "$@"; }
as_stranger() { setpriv --reuid="$STRANGER" --regid="$STRANGER" --clear-groups "$@"; }
stop_all() { # (what a failed step may leave running: the daemons this script started)
    "$CLI" --system drain >/dev/null 2>&1 || true
    "$CLI" --socket "/tmp/aether-$STRANGER/aetherd.sock" drain >/dev/null 2>&1 || true
    for _ in $(seq 50); do [ -e /run/aether/aetherd.sock ] || [ -e "/tmp/aether-$STRANGER/aetherd.sock" ] || break; sleep 0.1; done
    pkill -KILL -f "^$PKGROOT/usr/bin/aetherd" || true
    rm -rf "/tmp/aether-$STRANGER"
}
trap stop_all EXIT
out=$(env DPKG_MAINTSCRIPT_PACKAGE=aether DPKG_MAINTSCRIPT_NAME=postinst "$SCRIPTS/postinst" configure)
echo "$out"
cmd=$(printf '%s\n' "$out" | sed -n 's/^    //p')
[ -n "$cmd" ] || { echo "the postinst printed no command"; exit 1; }
# As pasted, but with the extracted root's aetherd for /usr/bin/aetherd.
sh -ec "$(printf '%s' "$cmd" | sed "s|/usr/bin/aetherd|$PKGROOT/usr/bin/aetherd|")"
cat /run/aether/aetherd.log
"$CLI" --system status
as_member "$CLI" --system create nosystemd-topic
topics=$(as_member "$CLI" --system topics); printf "%s\n" "$topics" | grep -q nosystemd-topic
# The stranger's program finds no broker of its own and auto-starts one.
as_stranger "$CLI" pub private-topic "from a private broker"
test -S "/tmp/aether-$STRANGER/aetherd.sock"
cat "/tmp/aether-$STRANGER/aetherd.log"
if grep -q /etc/aether "/tmp/aether-$STRANGER/aetherd.log"; then echo "the private broker read /etc/aether"; exit 1; fi
topics=$(as_stranger "$CLI" topics); printf "%s\n" "$topics" | grep -q private-topic
as_stranger "$CLI" drain
"$CLI" --system drain
for _ in $(seq 100); do [ -e /run/aether/aetherd.sock ] || break; sleep 0.1; done
[ ! -e /run/aether/aetherd.sock ] || { echo "the system broker did not stop"; exit 1; }
# Stopped: root's client, pointed at it, does not start a root-owned one there.
if out=$(AETHER_SOCKET=/run/aether/aetherd.sock "$CLI" pub x hello 2>&1); then echo "started: $out"; exit 1; fi
echo "$out"
echo "$out" | grep -q "never auto-started"
[ ! -e /run/aether/aetherd.sock.lock ] && [ ! -e /run/aether/aetherd.sock ]
SCRIPT
no_systemd() {
    NS_RUN=1 in_ns env SCRIPTS="$TMP/scripts" MEMBER="$MEMBER" STRANGER="$STRANGER" AGID="$AGID" \
        sh "$TMP/nosystemd.sh"
}
check "without systemd, the postinst prints how to start the broker; pasted, it runs; a stranger's auto-started private broker stays apart; a stopped system broker is never auto-started" \
    no_systemd

purge() {
    maint prerm remove
    maint postrm remove
    grep -q '^aether:' "$ETC/passwd" || { echo "remove (not purge) took the user away"; return 1; }
    rm -f "$ETC/aether/aetherd.toml" # dpkg removes the conffile before the postrm's purge
    maint postrm purge
    if grep '^aether:' "$ETC/passwd" "$ETC/group"; then echo "purge left the user or group"; return 1; fi
    [[ ! -e $ETC/aether ]] || { echo "/etc/aether is left"; return 1; }
    [[ ! -e $ETC/systemd/system/multi-user.target.wants/aetherd.service ]] || { echo "still enabled"; return 1; }
    [[ ! -L $ETC/systemd/system/aetherd.service ]] || { echo "still masked"; return 1; }
}
check "postrm: remove keeps the user; purge removes user, group, /etc/aether, the unit's enablement and mask" purge
purge_keeps_shared_group() { # a group an administrator added people to stays
    maint postinst configure
    in_ns sh -c "adduser --system --quiet --no-create-home aether-member && adduser --quiet aether-member aether"
    maint postrm purge
    if grep '^aether:' "$ETC/passwd"; then echo "purge left the user"; return 1; fi
    grep '^aether:' "$ETC/group"
}
check "postrm purge keeps group aether while it has other members" purge_keeps_shared_group
host_untouched() { [[ $(host_state) == "$host_before" ]]; }
check "this machine is untouched (users, groups, /etc/aether, the unit and its enablement)" host_untouched
finish
