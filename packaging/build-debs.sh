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
"$ROOT/packaging/vendor.sh" "$OUT" >/dev/null
tree=$OUT/anon-daemons-$UPSTREAM
rm -rf "$tree" "$OUT"/*.deb "$OUT"/*.changes "$OUT"/*.buildinfo "$OUT"/*.dsc "$OUT"/*.debian.tar.xz
tar -C "$OUT" -xf "$OUT/anon-daemons_$UPSTREAM.orig.tar.xz"
tar -C "$tree" -xf "$OUT/anon-daemons_$UPSTREAM.orig-vendor.tar.xz"
cp -a "$ROOT/debian" "$tree/debian"
# No network: root gets a fresh network namespace; a normal user a user namespace too.
if [ "$(id -u)" = 0 ]; then nonet=(unshare --net); else nonet=(unshare --map-root-user --net); fi
(cd "$tree" && "${nonet[@]}" -- env -u CARGO_TARGET_DIR -u RUSTFLAGS dpkg-buildpackage -us -uc ${DPKG_BUILDPACKAGE_OPTS:-}) >&2
ls "$OUT"/*.deb "$OUT"/*.changes
