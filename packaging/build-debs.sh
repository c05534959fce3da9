#!/usr/bin/env bash
# Builds one Debian package per component into target/debian/ with dpkg-deb (no debhelper
# needed). Units are shipped but NOT enabled: a firewall that switched itself on at install
# time could cut a host off its network. Enable with `systemctl enable --now anon-firewall`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=$ROOT/target/debian
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
ARCH=$(dpkg --print-architecture)
mkdir -p "$OUT"

cargo build --release --locked -p anon-firewall -p sdwdate -p kloak -p timesync-check -p leaktest

version() { # the crate's version from its Cargo.toml
  sed -n 's/^version = "\(.*\)"/\1/p' "$1/Cargo.toml" | head -n1
}

# pack NAME VERSION DEPENDS DESCRIPTION STAGE [CONFFILE...]: the control files and dpkg-deb.
pack() {
  local name=$1 v=$2 depends=$3 desc=$4 d=$5; shift 5
  local arch=${PKG_ARCH:-$ARCH}
  mkdir -p "$d/DEBIAN" "$d/usr/share/doc/$name"
  {
    echo "Package: $name"; echo "Version: $v"; echo "Architecture: $arch"
    echo "Maintainer: anon-daemons developers <anon-daemons@localhost>"
    echo "Depends: $depends"; [ -z "${RECOMMENDS:-}" ] || echo "Recommends: $RECOMMENDS"
    echo "Section: net"; echo "Priority: optional"
    echo "Description: $desc"
  } > "$d/DEBIAN/control"
  : > "$d/DEBIAN/conffiles"
  local c; for c in "$@"; do echo "$c" >> "$d/DEBIAN/conffiles"; done
  cat > "$d/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
# Units are installed, never enabled here: `systemctl enable --now NAME` when wanted.
if [ "$1" = configure ]; then
  for f in /usr/lib/sysusers.d/PKG.conf; do [ -e "$f" ] && systemd-sysusers "$f" || true; done
  for f in /usr/lib/tmpfiles.d/PKG.conf; do [ -e "$f" ] && systemd-tmpfiles --create "$f" || true; done
fi
if [ -d /run/systemd/system ]; then systemctl --system daemon-reload >/dev/null || true; fi
SH
  sed -i "s/PKG/$name/g" "$d/DEBIAN/postinst"
  chmod 755 "$d/DEBIAN/postinst"
  dpkg-deb --root-owner-group --build "$d" "$OUT/${name}_${v}_${arch}.deb" >/dev/null
  rm -rf "$d"
  echo "$OUT/${name}_${v}_${arch}.deb"
}

build_firewall() {
  local d; d=$(mktemp -d)
  local src=packaging/debian/anon-firewall
  install -Dm755 "$BIN"/anon-firewall "$d/usr/sbin/anon-firewall"
  local u; for u in anon-firewall.service anon-firewall-timesync.path anon-firewall-timesync.service; do
    install -Dm644 "$src/$u" "$d/usr/lib/systemd/system/$u"
  done
  install -Dm644 "$src/30_default.toml" "$d/etc/anon-firewall.d/30_default.toml"
  mkdir -p "$d/usr/share/man/man8"
  "$BIN"/anon-firewall man | gzip -9n > "$d/usr/share/man/man8/anon-firewall.8.gz"
  install -Dm644 firewall/README.md "$d/usr/share/doc/anon-firewall/README.md"
  pack anon-firewall "$(version firewall)" "nftables, libc6, libgcc-s1" \
    "fail-closed nftables firewall for Whonix gateways and workstations
 Builds the nftables ruleset for the host's role (gateway: transparent proxy into
 Tor, only the Tor user reaches the internet; workstation: only the gateway) and
 loads it in one transaction. Any error leaves the host in lockdown." \
    "$d" /etc/anon-firewall.d/30_default.toml
}

build_sdwdate() {
  local d; d=$(mktemp -d)
  local src=packaging/debian/sdwdate
  install -Dm755 "$BIN"/sdwdate "$d/usr/bin/sdwdate"
  install -Dm644 "$src/sdwdate.service" "$d/usr/lib/systemd/system/sdwdate.service"
  install -Dm644 "$src/sdwdate.sysusers" "$d/usr/lib/sysusers.d/sdwdate.conf"
  install -Dm644 "$src/sdwdate.tmpfiles" "$d/usr/lib/tmpfiles.d/sdwdate.conf"
  install -Dm644 "$src/30_default.conf" "$d/etc/sdwdate.d/30_default.conf"
  mkdir -p "$d/usr/share/man/man8"
  "$BIN"/sdwdate man | gzip -9n > "$d/usr/share/man/man8/sdwdate.8.gz"
  install -Dm644 sdwdate/README.md "$d/usr/share/doc/sdwdate/README.md"
  install -Dm644 "$src/copyright" "$d/usr/share/doc/sdwdate/copyright"
  # arti is embedded (it links the system's SQLite for its directory cache); a tor daemon is
  # only recommended: without one, sdwdate uses arti.
  RECOMMENDS="tor | anon-gw-anonymizer-config | anon-ws-base-files" \
  pack sdwdate "$(version sdwdate)" "libc6, libgcc-s1, libsqlite3-0" \
    "secure time from onion time sources over Tor
 Sets the clock from the HTTP Date headers of onion services in three pools of
 independent organisations (median of one answer per pool), over Tor with one
 circuit per source: through a tor daemon's SocksPort (the Whonix gateway's
 9108), or through the embedded arti client where no tor daemon runs. Drop-in
 for upstream sdwdate: same config and status files." \
    "$d" /etc/sdwdate.d/30_default.conf
}

build_kloak() {
  local d; d=$(mktemp -d)
  local src=packaging/debian/kloak
  install -Dm755 "$BIN"/kloak "$d/usr/sbin/kloak"
  install -Dm644 "$src/kloak.service" "$d/usr/lib/systemd/system/kloak.service"
  mkdir -p "$d/usr/share/man/man8"
  "$BIN"/kloak man | gzip -9n > "$d/usr/share/man/man8/kloak.8.gz"
  install -Dm644 kloak/README.md "$d/usr/share/doc/kloak/README.md"
  pack kloak "$(version kloak)" "libc6, libgcc-s1" \
    "keystroke and mouse timing anonymization
 Grabs keyboards and mice through evdev and re-emits their events through uinput
 after random, order-preserving delays, so that typing rhythm no longer identifies
 the user. Works under X11, any Wayland compositor and the console." \
    "$d"
}

build_tirdad() {
  local d; d=$(mktemp -d)
  local v; v=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' tirdad/dkms.conf)
  local f; for f in Kbuild Makefile tirdad_main.rs tirdad_shim.c dkms.conf; do
    install -Dm644 "tirdad/$f" "$d/usr/src/tirdad-$v/$f"
  done
  install -Dm644 tirdad/README.md "$d/usr/share/doc/tirdad-dkms/README.md"
  PKG_ARCH=all pack tirdad-dkms "$v" "dkms" \
    "random TCP initial sequence numbers (Rust kernel module, DKMS source)
 Replaces the kernel's TCP ISN generator, whose output reveals the host's clock,
 with a CSPRNG. Builds only for kernels with CONFIG_RUST=y (none of Debian's own
 kernels today); DKMS skips the others." \
    "$d"
  d=$(mktemp -d)
  install -Dm644 packaging/debian/tcp-timestamps-off/30_tcp-timestamps-off.conf "$d/usr/lib/sysctl.d/30_tcp-timestamps-off.conf"
  PKG_ARCH=all pack tcp-timestamps-off "$v" "procps" \
    "turn TCP timestamps off (they reveal uptime and clock skew)
 A sysctl drop-in setting net.ipv4.tcp_timestamps = 0." \
    "$d"
}

build_timesync_check() {
  local d; d=$(mktemp -d)
  install -Dm755 "$BIN"/timesync-check "$d/usr/bin/timesync-check"
  mkdir -p "$d/usr/share/man/man1"
  "$BIN"/timesync-check --man | gzip -9n > "$d/usr/share/man/man1/timesync-check.1.gz"
  install -Dm644 timesync-check/README.md "$d/usr/share/doc/timesync-check/README.md"
  pack timesync-check "$(version timesync-check)" "libc6, libgcc-s1" \
    "say whether sdwdate has synced the clock
 One line and an exit code (0 synced, 1 pending, 2 failed, 3 not running) from
 sdwdate's status files; --wait for the first success; --tor to compare the clock
 with Tor's consensus window." \
    "$d"
}

build_leaktest() {
  local d; d=$(mktemp -d)
  install -Dm755 "$BIN"/leaktest "$d/usr/sbin/leaktest"
  mkdir -p "$d/usr/share/man/man8"
  "$BIN"/leaktest man | gzip -9n > "$d/usr/share/man/man8/leaktest.8.gz"
  install -Dm644 leaktest/README.md "$d/usr/share/doc/leaktest/README.md"
  pack leaktest "$(version leaktest)" "libc6, libgcc-s1" \
    "tries every way out of Tor and judges each one
 Probes TCP, UDP, ICMP, raw IP, IPv6 and DNS around Tor, confirms each verdict with an
 observer on the gateway's uplink, and checks host settings that identify (TCP
 timestamps, tirdad, clock, timezone). PASS/FAIL/SKIP with evidence; human or JSON." \
    "$d"
}

build_firewall
build_sdwdate
build_kloak
build_tirdad
build_timesync_check
build_leaktest
