#!/usr/bin/env bash
# package.sh — builds the Debian packages, split as Debian splits a library:
#   libaether0_<version>_<arch>.deb     the runtime library, libaether.so.0
#   libaether-dev_<version>_<arch>.deb  aether.h, aether.hpp, libaether.so, aether.pc,
#                                       aetherConfig.cmake (find_package), examples
#   aether_<version>_<arch>.deb         aetherd (system broker: unit, socket,
#                                       conffile, user), aether-cli, man pages
# Steps:
#   1. release build of the workspace;
#   2. files cargo-deb takes from build/deb/: the stripped libaether.so.0.x.y,
#      aether.pc for /usr (from `make install`), man pages (aether-mangen, from
#      the clap definitions) and shell completions (`aether-cli completions`);
#   3. `cargo deb -p aether` (and `--variant dev`) for the library's packages
#      (configuration: libaether/Cargo.toml), `cargo deb -p aetherd` for the
#      broker's (aetherd/Cargo.toml; maintainer scripts and the rest:
#      packaging/); then what cargo-deb does not write (md5sums; for the
#      runtime library shlibs, the ldconfig trigger, Depends from
#      dpkg-shlibdeps; Multi-Arch: same for both library packages);
#   4. lintian, which must report no error and no warning.
# Progress goes to stderr; stdout's last three lines are the .debs' paths:
# libaether0, libaether-dev, aether (last).
#
# Installs what it needs on a fresh Debian machine: cargo-deb (cargo install,
# 3.x) and, as root, lintian, dpkg-dev and binutils (apt-get).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-target}
RELEASE=$TARGET/release
STAGE=build/deb # what aetherd/Cargo.toml's assets name as ../build/deb/...

say() { echo "package.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# --- tools ------------------------------------------------------------------------
need=()
command -v lintian >/dev/null || need+=(lintian)
command -v dpkg-architecture >/dev/null || need+=(dpkg-dev)
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
command -v strip >/dev/null || need+=(binutils)
command -v make >/dev/null || need+=(make)
if [[ ${#need[@]} -gt 0 ]]; then
    pkgs=$(printf '%s\n' "${need[@]}" | sort -u | tr '\n' ' ')
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "installing $pkgs with apt-get"
        apt-get update -qq
        # shellcheck disable=SC2086 # one word per package
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
    else
        die "missing: $pkgs (run as root, or install them with apt-get)"
    fi
fi
if ! cargo deb --version >/dev/null 2>&1; then
    say "installing cargo-deb (cargo install cargo-deb --locked)"
    cargo install cargo-deb --locked --quiet
fi
cargo_deb_version=$(cargo deb --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -n 1)
[[ ${cargo_deb_version%%.*} -ge 3 ]] ||
    die "cargo-deb $cargo_deb_version is too old: 3.x is needed (cargo install cargo-deb --locked --force)"

# --- what aetherd/Cargo.toml assumes ------------------------------------------------
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
ARCH=$(dpkg-architecture -qDEB_HOST_ARCH)
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
[[ $MULTIARCH == x86_64-linux-gnu ]] ||
    die "aetherd/Cargo.toml installs libraries into /usr/lib/x86_64-linux-gnu, but this machine's multiarch directory is $MULTIARCH"
grep -q "\"usr/lib/$MULTIARCH/libaether.so.$VERSION\"" libaether/Cargo.toml ||
    die "libaether/Cargo.toml: the library asset is not named libaether.so.$VERSION (the workspace version); update it"
grep -q "^depends = \"libaether0 (= $VERSION)\"" libaether/Cargo.toml ||
    die "libaether/Cargo.toml: libaether-dev must depend on libaether0 (= $VERSION); update it"
changelog_version=$(dpkg-parsechangelog -l packaging/changelog -S Version)
[[ $changelog_version == "$VERSION" ]] ||
    die "packaging/changelog's latest entry is $changelog_version, the workspace version is $VERSION: add an entry"
DEBS=$TARGET/debian
LIB_DEB=$DEBS/libaether0_${VERSION}_${ARCH}.deb
DEV_DEB=$DEBS/libaether-dev_${VERSION}_${ARCH}.deb
DEB=$DEBS/aether_${VERSION}_${ARCH}.deb

# --- build and stage ------------------------------------------------------------------
say "cargo build --release --workspace"
cargo build --release --workspace --quiet

rm -rf "$STAGE"
mkdir -p "$STAGE/man" "$STAGE/completions"
# cargo-deb strips only libraries named *.so; this one is named for its version.
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    -o "$STAGE/libaether.so.$VERSION" "$RELEASE/libaether.so"
# aether.pc as `make install` writes it for /usr.
make --no-print-directory -s install PREFIX=/usr LIBDIR="/usr/lib/$MULTIARCH" DESTDIR="$ROOT/$STAGE/root" >/dev/null
# The package ships no static library: its aether.pc has no Libs.private.
sed '/^Libs.private:/d' "$STAGE/root/usr/lib/$MULTIARCH/pkgconfig/aether.pc" >"$STAGE/aether.pc"
rm -rf "$STAGE/root"
# find_package(aether): the version file names this version.
sed "s/@AETHER_VERSION@/$VERSION/g" cmake/aetherConfigVersion.cmake.in >"$STAGE/aetherConfigVersion.cmake"
"$RELEASE/aether-mangen" "$STAGE/man" >/dev/null
"$RELEASE/aether-cli" completions bash >"$STAGE/completions/aether-cli.bash"
"$RELEASE/aether-cli" completions zsh >"$STAGE/completions/_aether-cli"
"$RELEASE/aether-cli" completions fish >"$STAGE/completions/aether-cli.fish"
# A new subcommand gets a new man page: it must be listed in the assets too.
for page in "$STAGE"/man/*; do
    grep -q "\"../$STAGE/man/${page##*/}\"" aetherd/Cargo.toml ||
        die "man page ${page##*/} is generated but not packaged: add it to aetherd/Cargo.toml's assets"
done

# --- package and check ------------------------------------------------------------------
# cargo-deb writes neither md5sums (what `dpkg --verify` checks) nor, for a
# shared library, shlibs (lintian: no-shlibs; it makes packages built against
# libaether.so.0 depend on libaether0) and the ldconfig trigger; nor does it
# know Multi-Arch. finish_deb adds them and rebuilds the package with
# dpkg-deb, every path keeping cargo-deb's timestamp.
finish_deb() { # finish_deb DEB SYNOPSIS [runtime-library|dev-library]
    local deb=$1 synopsis=$2 kind=${3:-} unpacked
    unpacked=$DEBS/${deb##*/}.unpacked
    rm -rf "$unpacked"
    dpkg-deb -R "$deb" "$unpacked"
    local control=$unpacked/DEBIAN/control
    sed -i "s|^Description: .*|Description: $synopsis|" "$control"
    if [[ -n $kind ]]; then
        sed -i '/^Architecture:/a Multi-Arch: same' "$control"
    fi
    if [[ $kind == runtime-library ]]; then
        local deps
        # (dpkg-shlibdeps wants a source tree: an empty debian/control will do)
        mkdir -p "$unpacked.src/debian" && : >"$unpacked.src/debian/control"
        local so
        so=$(realpath "$unpacked/usr/lib/$MULTIARCH/libaether.so.$VERSION")
        deps=$(cd "$unpacked.src" && dpkg-shlibdeps -O -e "$so" 2>/dev/null |
            sed -n 's/^shlibs:Depends=//p')
        rm -rf "$unpacked.src"
        [[ -n $deps ]] || die "dpkg-shlibdeps found no dependencies of libaether.so.$VERSION"
        sed -i "s|^Depends: .*|Depends: $deps|" "$control"
        echo "libaether 0 libaether0 (>= $VERSION)" >"$unpacked/DEBIAN/shlibs"
        echo "activate-noawait ldconfig" >"$unpacked/DEBIAN/triggers"
        chmod 644 "$unpacked/DEBIAN/shlibs" "$unpacked/DEBIAN/triggers"
    fi
    # (conffiles are left out, as dh_md5sums does: dpkg records their sums itself)
    local conffiles=$unpacked/DEBIAN/conffiles
    (cd "$unpacked" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort |
        grep -vxF -f <([[ -f $conffiles ]] && sed 's|^/||' "$conffiles" || true) | xargs -d '\n' md5sum) \
        >"$unpacked/DEBIAN/md5sums"
    chmod 644 "$unpacked/DEBIAN/md5sums"
    # (usr/share/doc: a directory finish_deb leaves alone, with cargo-deb's time)
    find "$unpacked" -exec touch -h -r "$unpacked/usr/share/doc" {} +
    dpkg-deb --root-owner-group -Zxz -b "$unpacked" "$deb" >/dev/null
    rm -rf "$unpacked"
}

mkdir -p "$DEBS"
# --strip: the release profile keeps line tables (debug = 1) for profiling.
say "cargo deb -p aether --no-build (libaether0)"
cargo deb -p aether --no-build --quiet --output "$LIB_DEB" >/dev/null
say "cargo deb -p aether --no-build --variant dev (libaether-dev)"
cargo deb -p aether --no-build --variant dev --quiet --output "$DEV_DEB" >/dev/null
say "cargo deb -p aetherd --no-build (aether)"
cargo deb -p aetherd --no-build --strip --quiet --output "$DEB" >/dev/null
for d in "$LIB_DEB" "$DEV_DEB" "$DEB"; do [[ -f $d ]] || die "cargo deb did not write $d"; done
finish_deb "$LIB_DEB" "shared-memory publish/subscribe broker Aether - C library" runtime-library
finish_deb "$DEV_DEB" "shared-memory publish/subscribe broker Aether - C development files" dev-library
finish_deb "$DEB" "shared-memory publish/subscribe broker Aether - daemon and CLI"

failed=0
for d in "$LIB_DEB" "$DEV_DEB" "$DEB"; do
    say "lintian ${d##*/}"
    lintian_status=0
    lintian_out=$(lintian --fail-on error,warning "$d" 2>&1) || lintian_status=$?
    [[ -z $lintian_out ]] || printf '%s\n' "$lintian_out" >&2
    errors=$(grep -c '^E: ' <<<"$lintian_out" || true)
    warnings=$(grep -c '^W: ' <<<"$lintian_out" || true)
    say "lintian ${d##*/}: $errors errors, $warnings warnings"
    [[ $lintian_status == 0 && $errors == 0 && $warnings == 0 ]] || failed=1
done
[[ $failed == 0 ]] || die "lintian reports errors or warnings (or failed)"
printf '%s\n' "$LIB_DEB" "$DEV_DEB" "$DEB"
