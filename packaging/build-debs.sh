#!/usr/bin/env bash
# packaging/build-debs.sh [OUTDIR]: what a distribution does. The orig tarballs
# (packaging/vendor.sh, the only step with network), unpacked next to them with this tree's
# debian/, then `dpkg-buildpackage -us -uc` (source and binaries) in a network namespace with
# no network at all. OUTDIR (default ~/.cache/anon-daemons/deb) gets the .dsc, .debs, .changes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-${ANON_DEB_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/anon-daemons/deb}}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
VERSION=$(cd "$ROOT" && dpkg-parsechangelog -S Version); UPSTREAM=${VERSION%-*}; UPSTREAM=${UPSTREAM#*:}
# ANON_DEB_REUSE=1 (for working on the checks only, never in CI): the packages in OUT as they are.
if [ "${ANON_DEB_REUSE:-}" = 1 ] && [ "${CI:-}" != true ] && [ -f "$OUT/.built" ]; then
  echo "build-debs: ANON_DEB_REUSE=1: reusing the packages in $OUT without checking their inputs" >&2
  ls "$OUT"/*.deb "$OUT"/*.changes
  exit 0
fi
"$ROOT/packaging/vendor.sh" "$OUT" >/dev/null
# The build is a function of its inputs (reproducible, checked: README): the same tarballs,
# debian/, toolchain and debhelper give the same .debs, so a finished build of them is reused.
key=$( (cd "$OUT" && sha256sum "anon-daemons_$UPSTREAM.orig.tar.xz" "anon-daemons_$UPSTREAM.orig-vendor.tar.xz";
  cd "$ROOT" && find debian -type f -print0 | sort -z | xargs -0 sha256sum; /usr/bin/rustc --version;
  dpkg-query -W debhelper dh-dkms dpkg-dev; echo "${DPKG_BUILDPACKAGE_OPTS:-}") | sha256sum | cut -c1-16)
if [ "$(cat "$OUT/.built" 2>/dev/null)" = "$key" ] && [ "${ANON_DEB_REBUILD:-}" != 1 ]; then
  echo "build-debs: inputs unchanged since the last build ($key): reusing its packages (ANON_DEB_REBUILD=1 rebuilds)" >&2
  ls "$OUT"/*.deb "$OUT"/*.changes
  exit 0
fi
rm -f "$OUT/.built"
tree=$OUT/anon-daemons-$UPSTREAM
rm -rf "$tree" "$OUT"/*.deb "$OUT"/*.changes "$OUT"/*.buildinfo "$OUT"/*.dsc "$OUT"/*.debian.tar.xz
tar -C "$OUT" -xf "$OUT/anon-daemons_$UPSTREAM.orig.tar.xz"
tar -C "$tree" -xf "$OUT/anon-daemons_$UPSTREAM.orig-vendor.tar.xz"
cp -a "$ROOT/debian" "$tree/debian"
# Warm builds: the compiled vendored crates are kept in $OUT/target-cache between builds (the
# tree is unpacked at the same path every time, so cargo reuses them; they are a function of
# vendor/, identical whatever our sources say). Our own sources get a fresh mtime: the
# tarball's fixed one is older than the cached objects and cargo would take them as built.
# ANON_DEB_COLD=1 (and CI's first build on a fresh machine) builds everything.
cache=$OUT/target-cache
[ "${ANON_DEB_COLD:-}" = 1 ] && rm -rf "$cache"
mkdir -p "$cache"
find "$tree" -path "$tree/vendor" -prune -o -type f -exec touch -c {} +
# No network: root gets a fresh network namespace; a normal user a user namespace too.
if [ "$(id -u)" = 0 ]; then nonet=(unshare --net); else nonet=(unshare --map-root-user --net); fi
t0=$SECONDS
(cd "$tree" && "${nonet[@]}" -- env -u CARGO_TARGET_DIR -u RUSTFLAGS dpkg-buildpackage -us -uc \
  --hook-build="ln -sfn $cache target" ${DPKG_BUILDPACKAGE_OPTS:-}) >&2
echo "build-debs: dpkg-buildpackage took $((SECONDS - t0)) s" >&2
echo "$key" > "$OUT/.built"
rm -rf "$tree/target"   # the link to the cache
ls "$OUT"/*.deb "$OUT"/*.changes
