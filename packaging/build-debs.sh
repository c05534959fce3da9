#!/usr/bin/env bash
# Builds one Debian package per component into target/debian/ with dpkg-deb (no debhelper
# needed). Units are shipped but NOT enabled: a firewall that switched itself on at install
# time could cut a host off its network. Enable with `systemctl enable --now anon-firewall`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=$ROOT/target/debian
ARCH=$(dpkg --print-architecture)
mkdir -p "$OUT"

cargo build --release --locked -p anon-firewall

version() { # the crate's version from its Cargo.toml
  sed -n 's/^version = "\(.*\)"/\1/p' "$1/Cargo.toml" | head -n1
}

build_firewall() {
  local v; v=$(version firewall)
  local d; d=$(mktemp -d)
  local src=packaging/debian/anon-firewall
  install -Dm755 target/release/anon-firewall "$d/usr/sbin/anon-firewall"
  install -Dm644 "$src/anon-firewall.service" "$d/usr/lib/systemd/system/anon-firewall.service"
  install -Dm644 "$src/anon-firewall-timesync.path" "$d/usr/lib/systemd/system/anon-firewall-timesync.path"
  install -Dm644 "$src/anon-firewall-timesync.service" "$d/usr/lib/systemd/system/anon-firewall-timesync.service"
  install -Dm644 "$src/30_default.toml" "$d/etc/anon-firewall.d/30_default.toml"
  mkdir -p "$d/usr/share/man/man8" "$d/usr/share/doc/anon-firewall"
  target/release/anon-firewall man | gzip -9n > "$d/usr/share/man/man8/anon-firewall.8.gz"
  install -m644 firewall/README.md "$d/usr/share/doc/anon-firewall/README.md"
  mkdir -p "$d/DEBIAN"
  cat > "$d/DEBIAN/control" <<CTL
Package: anon-firewall
Version: $v
Architecture: $ARCH
Maintainer: anon-daemons developers <anon-daemons@localhost>
Depends: nftables, libc6
Section: net
Priority: optional
Description: fail-closed nftables firewall for Whonix gateways and workstations
 Builds the nftables ruleset for the host's role (gateway: transparent proxy into
 Tor, only the Tor user reaches the internet; workstation: only the gateway) and
 loads it in one transaction. Any error leaves the host in lockdown.
CTL
  echo /etc/anon-firewall.d/30_default.toml > "$d/DEBIAN/conffiles"
  cat > "$d/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl --system daemon-reload >/dev/null || true; fi
SH
  chmod 755 "$d/DEBIAN/postinst"
  dpkg-deb --root-owner-group --build "$d" "$OUT/anon-firewall_${v}_${ARCH}.deb" >/dev/null
  rm -rf "$d"
  echo "$OUT/anon-firewall_${v}_${ARCH}.deb"
}

build_firewall
