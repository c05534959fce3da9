#!/usr/bin/env bash
# packaging/vendor.sh OUTDIR: the two orig tarballs of the source package, reproducibly.
#   OUTDIR/anon-daemons_VERSION.orig.tar.xz         the project's files (git ls-files, the
#                                                   working tree's content), without debian/
#   OUTDIR/anon-daemons_VERSION.orig-vendor.tar.xz  `cargo vendor` of Cargo.lock (top dir vendor/)
# The only step that needs the network (crates.io, or cargo's local registry cache). Crates
# that no Linux target compiles (Windows, wasm, ...) keep their Cargo.toml and licence files but
# lose their sources, as Debian's rustc package prunes its vendor tree: cargo needs their
# manifests to resolve the lock file, never their code. Also writes debian/copyright's vendored
# part when called with --copyright.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:?usage: packaging/vendor.sh OUTDIR}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cd "$ROOT"
CARGO=${CARGO:-cargo}
VERSION=$(dpkg-parsechangelog -S Version); UPSTREAM=${VERSION%-*}; UPSTREAM=${UPSTREAM#*:}
SDE=$(dpkg-parsechangelog -S Timestamp)
work=""; work2=""
key=$( (sha256sum Cargo.lock packaging/vendor.sh packaging/prune-vendor.py) | sha256sum | cut -c1-16)

# tarball DIR PARENT NAME: a reproducible tar.xz of PARENT/DIR (sorted, fixed owner and times).
tarball() {
  tar -C "$2" --sort=name --mtime="@$SDE" --owner=0 --group=0 --numeric-owner --format=gnu \
    -cf - "$1" | xz -T1 -6 > "$3.partial"
  mv "$3.partial" "$3"
}

vendor_tar=$OUT/anon-daemons_$UPSTREAM.orig-vendor.tar.xz
if [ ! -f "$vendor_tar" ] || [ "$(cat "$vendor_tar.key" 2>/dev/null)" != "$key" ]; then
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
  "$CARGO" vendor --locked --versioned-dirs --quiet "$work/vendor" >/dev/null
  python3 packaging/prune-vendor.py "$work/vendor"
  find "$work/vendor" -exec touch -h -d "@$SDE" {} +
  chmod -R u+rwX,go+rX,go-w "$work/vendor"
  tarball vendor "$work" "$vendor_tar"
  echo "$key" > "$vendor_tar.key"
fi

# The project's own files, as the working tree has them (tracked and new, not ignored).
work2=$(mktemp -d); trap 'rm -rf "$work" "$work2"' EXIT
src=$work2/anon-daemons-$UPSTREAM; mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard -- . ':!debian' |
  while IFS= read -r -d '' f; do [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done |
  tar -C "$ROOT" --null -T - -cf - | tar -C "$src" -xf -
find "$src" -exec touch -h -d "@$SDE" {} +
chmod -R u+rwX,go+rX,go-w "$src"
tarball "anon-daemons-$UPSTREAM" "$work2" "$OUT/anon-daemons_$UPSTREAM.orig.tar.xz"
echo "$OUT/anon-daemons_$UPSTREAM.orig.tar.xz"
echo "$vendor_tar"
