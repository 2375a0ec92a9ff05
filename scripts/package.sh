#!/usr/bin/env bash
# package.sh — builds the Debian package aether_<version>_<arch>.deb:
#   1. release build of the workspace;
#   2. files cargo-deb takes from build/deb/: the stripped libaether.so.0.x.y,
#      aether.pc for /usr (from `make install`), man pages (aether-mangen, from
#      the clap definitions) and shell completions (`aether-cli completions`);
#   3. `cargo deb -p aetherd --no-build` (configuration: aetherd/Cargo.toml,
#      [package.metadata.deb]; maintainer scripts and the rest: packaging/);
#   4. lintian, which must report no error.
# Progress goes to stderr; the last line on stdout is the .deb's path.
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
grep -q "\"usr/lib/$MULTIARCH/libaether.so.$VERSION\"" aetherd/Cargo.toml ||
    die "aetherd/Cargo.toml: the library asset is not named libaether.so.$VERSION (the workspace version); update it"
changelog_version=$(dpkg-parsechangelog -l packaging/changelog -S Version)
[[ $changelog_version == "$VERSION" ]] ||
    die "packaging/changelog's latest entry is $changelog_version, the workspace version is $VERSION: add an entry"
DEB=$TARGET/debian/aether_${VERSION}_${ARCH}.deb

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
say "cargo deb -p aetherd --no-build"
mkdir -p "${DEB%/*}"
# --strip: the release profile keeps line tables (debug = 1) for profiling.
cargo deb -p aetherd --no-build --strip --quiet --output "$DEB" >/dev/null
[[ -f $DEB ]] || die "cargo deb did not write $DEB"
# cargo-deb writes neither a shlibs control file, which a package holding a
# shared library must have (lintian: no-shlibs; it makes packages built
# against libaether.so.0 depend on this one), nor md5sums (what `dpkg
# --verify` checks). Both are added here and the package rebuilt with
# dpkg-deb, every path keeping cargo-deb's timestamp.
unpacked=$TARGET/debian/aether.unpacked
rm -rf "$unpacked"
dpkg-deb -R "$DEB" "$unpacked"
echo "libaether 0 aether (>= $VERSION)" >"$unpacked/DEBIAN/shlibs"
# (conffiles are left out, as dh_md5sums does: dpkg records their sums itself)
(cd "$unpacked" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort |
    grep -vxF -f <(sed 's|^/||' DEBIAN/conffiles) | xargs -d '\n' md5sum) >"$unpacked/DEBIAN/md5sums"
chmod 644 "$unpacked/DEBIAN/shlibs" "$unpacked/DEBIAN/md5sums"
find "$unpacked" -exec touch -h -r "$unpacked/usr/bin/aetherd" {} +
dpkg-deb --root-owner-group -Zxz -b "$unpacked" "$DEB" >/dev/null
rm -rf "$unpacked"

say "lintian $DEB"
lintian_status=0
lintian_out=$(lintian --fail-on error "$DEB" 2>&1) || lintian_status=$?
[[ -z $lintian_out ]] || printf '%s\n' "$lintian_out" >&2
errors=$(grep -c '^E: ' <<<"$lintian_out" || true)
warnings=$(grep -c '^W: ' <<<"$lintian_out" || true)
say "lintian: $errors errors, $warnings warnings"
[[ $lintian_status == 0 && $errors == 0 ]] || die "lintian reports errors in $DEB (or failed: status $lintian_status)"
echo "$DEB"
