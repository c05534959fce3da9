#!/usr/bin/env bash
# packaging/release-build.sh RELEASE [OUTDIR]: the source package built as that Debian release
# builds it. A debootstrap'ed RELEASE chroot with only the Build-Depends (resolved by apt from
# RELEASE's archive: on trixie rustc-web/cargo-web 1.96), cached outside the repository keyed
# by its package list; the orig tarballs made on the host (packaging/vendor.sh, the only step
# with network), unpacked in the chroot with this tree's debian/, then `dpkg-buildpackage -us
# -uc` in a network namespace with no network at all, and RELEASE's own lintian on the result
# (0 errors, 0 warnings). OUTDIR (default ~/.cache/anon-daemons/deb-RELEASE) gets the .dsc,
# .debs, .changes and lintian.txt. Root (debootstrap, chroot).
# Status (2026-12-07, issue 28): the trixie chroot step was run (63 s, 1.3 GB: debhelper
# 13.24.2, dh-dkms 3.2.2, rustc-web/cargo-web 1.96.0, lintian 2.122); the build and lintian
# steps have not been run yet, and CI does not call this script yet.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RELEASE=${1:?usage: packaging/release-build.sh RELEASE [OUTDIR]}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/anon-daemons
OUT=${2:-$CACHE/deb-$RELEASE}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
t0=$SECONDS
step() { echo "==> release-build $RELEASE: $* ($((SECONDS - t0)) s)" >&2; }
[ "$(id -u)" = 0 ] || { echo "release-build: needs root (debootstrap, chroot)" >&2; exit 2; }

# The chroot: minbase, then the Build-Depends as apt resolves them there (the first
# alternative RELEASE has), and lintian. Bump RECIPE when these steps change.
RECIPE=1
BUILD_TOOLS="build-essential dpkg-dev fakeroot lintian xz-utils python3 util-linux"
deps=$(sed -n '/^Build-Depends:/,/^[A-Z]/p' "$ROOT/debian/control" | sed '1s/^Build-Depends://; /^[A-Z]/d' | tr -d '\n')
key=$(printf '%s\n' "$RELEASE" "$RECIPE" "$BUILD_TOOLS" "$deps" | sha256sum | cut -c1-16)
base=$CACHE/chroot/$RELEASE-$key
r=$base/root
mirror=$(grep -m1 '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | awk '{print $2}')
[ -n "$mirror" ] || mirror=$(grep -m1 -o 'https\?://[^ ]*debian/\? ' /etc/apt/sources.list | tr -d ' ')
mounted=""
cleanup() { [ -z "$mounted" ] || umount "$r/proc" 2>/dev/null || true; }
trap cleanup EXIT
if [ ! -f "$base/ready" ]; then
  step "debootstrap $RELEASE ($mirror)"
  rm -rf "$base"; mkdir -p "$base"
  debootstrap --variant=minbase "$RELEASE" "$r" "$mirror" > "$base/debootstrap.log" 2>&1 ||
    { tail -n 30 "$base/debootstrap.log" >&2; exit 1; }
  # The security archive (bookworm's rustc-web comes from there; trixie's updates too).
  echo "deb $mirror-security $RELEASE-security main" > "$r/etc/apt/sources.list.d/security.list"
  # mk-build-deps' job, without devscripts: a package that depends on the Build-Depends.
  mkdir -p "$r/tmp/bd/DEBIAN"
  printf 'Package: anon-daemons-build-deps\nVersion: 1\nArchitecture: all\nMaintainer: none <none@example.org>\nDepends: %s\nDescription: build dependencies\n' \
    "$(echo "$deps" | sed 's/,[[:space:]]*$//; s/[[:space:]]\+/ /g')" > "$r/tmp/bd/DEBIAN/control"
  mount -t proc proc "$r/proc"; mounted=1
  chroot "$r" sh -c "apt-get update -qq && dpkg-deb -b /tmp/bd /tmp/bd.deb >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $BUILD_TOOLS /tmp/bd.deb" \
    >> "$base/debootstrap.log" 2>&1 || { tail -n 30 "$base/debootstrap.log" >&2; exit 1; }
  umount "$r/proc"; mounted=""
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r/tmp/bd" "$r/tmp/bd.deb"
  # Older chroots of this release (other package lists or recipes).
  find "$CACHE/chroot" -mindepth 1 -maxdepth 1 -name "$RELEASE-*" ! -name "$RELEASE-$key" -exec rm -rf {} +
  touch "$base/ready"
  step "chroot cached in $base ($(du -sh "$base" | cut -f1))"
else
  step "chroot from the cache ($base)"
fi
chroot "$r" dpkg-query -W -f '${Package} ${Version}\n' debhelper dh-dkms dpkg-dev lintian 'rustc*' 'cargo*' 2>/dev/null |
  awk 'NF == 2 {print "release-build: " $0}' >&2 || true

# ANON_CHROOT_ONLY=1: make (or check) the cached chroot and stop.
[ "${ANON_CHROOT_ONLY:-}" != 1 ] || exit 0
VERSION=$(cd "$ROOT" && dpkg-parsechangelog -S Version); UPSTREAM=${VERSION%-*}; UPSTREAM=${UPSTREAM#*:}
"$ROOT/packaging/vendor.sh" "$OUT" > /dev/null
build=$r/build
tree=$build/anon-daemons-$UPSTREAM
rm -rf "$tree" "$build"/*.deb "$build"/*.changes "$build"/*.buildinfo "$build"/*.dsc "$build"/*.debian.tar.xz
mkdir -p "$build"
cp "$OUT/anon-daemons_$UPSTREAM.orig.tar.xz" "$OUT/anon-daemons_$UPSTREAM.orig-vendor.tar.xz" "$build/"
tar -C "$build" -xf "$build/anon-daemons_$UPSTREAM.orig.tar.xz"
tar -C "$tree" -xf "$build/anon-daemons_$UPSTREAM.orig-vendor.tar.xz"
cp -a "$ROOT/debian" "$tree/debian"
# The compiled vendored crates are kept between builds in the chroot (build-debs.sh explains).
mkdir -p "$build/target-cache"
find "$tree" -path "$tree/vendor" -prune -o -type f -exec touch -c {} +
step "dpkg-buildpackage (no network)"
mount -t proc proc "$r/proc"; mounted=1
unshare --net -- chroot "$r" sh -c "cd /build/anon-daemons-$UPSTREAM && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  dpkg-buildpackage -us -uc --hook-build='ln -sfn /build/target-cache target'" > "$OUT/build.log" 2>&1 ||
  { tail -n 40 "$OUT/build.log" >&2; echo "release-build: dpkg-buildpackage failed on $RELEASE (whole log: $OUT/build.log)" >&2; exit 1; }
rm -f "$tree/target"
step "built"
changes=$(ls "$build"/anon-daemons_*.changes)
set +e
chroot "$r" lintian --fail-on error,warning --display-info --tag-display-limit 0 "/build/$(basename "$changes")" > "$OUT/lintian.txt" 2>&1
lrc=$?
set -e
umount "$r/proc"; mounted=""
rm -f "$OUT"/*.deb "$OUT"/*.changes "$OUT"/*.buildinfo "$OUT"/*.dsc "$OUT"/*.debian.tar.xz
cp "$build"/*.deb "$build"/*.changes "$build"/*.buildinfo "$build"/*.dsc "$build"/*.debian.tar.xz "$OUT/"
echo "release-build: $RELEASE's lintian $(chroot "$r" lintian --version | awk '{print $2}'): $(grep -c '^E:' "$OUT/lintian.txt") errors," \
  "$(grep -c '^W:' "$OUT/lintian.txt") warnings, $(grep -c '^I:' "$OUT/lintian.txt") info tags" >&2
[ "$lrc" = 0 ] || { grep -E '^(E|W):' "$OUT/lintian.txt" >&2; echo "release-build: lintian failed on $RELEASE" >&2; exit 1; }
step "done: $(ls "$OUT"/*.deb | wc -l) packages in $OUT"
ls "$OUT"/*.deb "$OUT"/*.changes
