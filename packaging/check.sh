#!/usr/bin/env bash
# Builds the packages and checks them: contents, units (systemd-analyze verify and the
# offline security score), and that the shipped default configs are valid.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mapfile -t debs < <("$ROOT/packaging/build-debs.sh" | grep '\.deb$')
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

deb_of() { local d; for d in "${debs[@]}"; do case $(basename "$d") in "$1"_*) echo "$d"; return;; esac; done; fail "no $1 package"; }

# extract NAME FILE...: unpacks the package into $tmp/NAME and checks the files are there.
extract() {
  local name=$1; shift
  local deb; deb=$(deb_of "$name")
  mkdir -p "$tmp/$name"; dpkg-deb -x "$deb" "$tmp/$name"
  local f; for f in "$@"; do [ -e "$tmp/$name/$f" ] || fail "$deb lacks /$f"; done
  zcat "$tmp/$name"/usr/share/man/man[18]/"$name".[18].gz | grep -q "^.TH" || fail "$name: man page"
  echo "$deb: $(dpkg-deb -f "$deb" Depends)"
}

# linked NAME BINARY: every shared library the binary loads comes from a package its Depends
# names (what dpkg-shlibdeps would write; no debhelper here).
linked() {
  local name=$1 bin=$2 deb; deb=$(deb_of "$name")
  local depends; depends=$(dpkg-deb -f "$deb" Depends)
  local lib path pkg
  for lib in $(ldd "$bin" | awk '/=>/ {print $3}'); do
    path=$(readlink -f "$lib")
    pkg=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$path" 2>/dev/null || dpkg -S "${path#/usr}" 2>/dev/null || true)
    pkg=$(echo "$pkg" | head -n1); pkg=${pkg%%:*}
    [ -n "$pkg" ] || fail "$name: no package owns $lib"
    echo "$depends" | tr ',|' '\n\n' | sed 's/ *(.*//; s/^ *//; s/ *$//' | grep -qx "$pkg" \
      || fail "$name: links $lib from $pkg, which Depends ($depends) does not name"
  done
}

# units ROOT UNIT...: systemd-analyze verify (only the host's targets may be missing under
# --root) and the exposure score of the first unit.
units() {
  local root=$1; shift
  command -v systemd-analyze >/dev/null || return 0
  local paths=() u; for u in "$@"; do paths+=("$root/usr/lib/systemd/system/$u"); done
  local problems
  problems=$(systemd-analyze verify --man=no --root="$root" "${paths[@]}" 2>&1 | grep -v 'Unit .*\.target not found\|Unit .*\.service not found' || true)
  [ -z "$problems" ] || fail "systemd-analyze verify: $problems"
  systemd-analyze security --offline=true --root="$root" "$1" 2>/dev/null | tail -n1
}

# unit_has FILE KEY=VALUE...: the unit says what the issues ask for.
unit_has() {
  local u=$1; shift
  local l; for l in "$@"; do grep -q "^${l%%=*}=.*${l#*=}" "$u" || fail "$u lacks $l"; done
}

# anon-firewall
extract anon-firewall usr/sbin/anon-firewall usr/lib/systemd/system/anon-firewall.service \
  usr/lib/systemd/system/anon-firewall-timesync.path etc/anon-firewall.d/30_default.toml
unit_has "$tmp/anon-firewall/usr/lib/systemd/system/anon-firewall.service" Type=oneshot RemainAfterExit=yes \
  DefaultDependencies=no Before=network-pre.target Wants=network-pre.target WantedBy=sysinit.target
linked anon-firewall "$tmp/anon-firewall/usr/sbin/anon-firewall"
units "$tmp/anon-firewall" anon-firewall.service anon-firewall-timesync.path anon-firewall-timesync.service
# (workstation: the gateway role needs the debian-tor user to exist)
"$tmp/anon-firewall/usr/sbin/anon-firewall" --config-dir "$tmp/anon-firewall/etc/anon-firewall.d" check-config --role workstation

# sdwdate
extract sdwdate usr/bin/sdwdate usr/lib/systemd/system/sdwdate.service usr/lib/sysusers.d/sdwdate.conf \
  usr/lib/tmpfiles.d/sdwdate.conf etc/sdwdate.d/30_default.conf
unit_has "$tmp/sdwdate/usr/lib/systemd/system/sdwdate.service" Type=notify User=sdwdate \
  AmbientCapabilities=CAP_SYS_TIME CapabilityBoundingSet=CAP_SYS_TIME WatchdogSec=
linked sdwdate "$tmp/sdwdate/usr/bin/sdwdate"
units "$tmp/sdwdate" sdwdate.service
"$tmp/sdwdate/usr/bin/sdwdate" --config-dir "$tmp/sdwdate/etc/sdwdate.d" check-config
# kloak
extract kloak usr/sbin/kloak usr/lib/systemd/system/kloak.service
unit_has "$tmp/kloak/usr/lib/systemd/system/kloak.service" PrivateNetwork=yes CapabilityBoundingSet= DeviceAllow=/dev/uinput
linked kloak "$tmp/kloak/usr/sbin/kloak"
units "$tmp/kloak" kloak.service
printf '1000 1 30 1\n1000 0 0 0\n' | "$tmp/kloak/usr/sbin/kloak" simulate --seed 1 | grep -q '^1000	1	30	1	' || fail "kloak simulate"
# tirdad-dkms, tcp-timestamps-off (no man pages: a module source and a config file)
for n in tirdad-dkms tcp-timestamps-off; do mkdir -p "$tmp/$n"; dpkg-deb -x "$(deb_of $n)" "$tmp/$n"; done
[ -f "$tmp/tirdad-dkms/usr/src/tirdad-0.1.0/dkms.conf" ] || fail "tirdad-dkms lacks dkms.conf"
grep -q 'BUILD_EXCLUSIVE_CONFIG="CONFIG_RUST' "$tmp/tirdad-dkms/usr/src/tirdad-0.1.0/dkms.conf" || fail "dkms.conf"
# On a kernel without Rust the Makefile refuses and says why.
mkdir -p "$tmp/norust"; echo 'CONFIG_KRETPROBES=y' > "$tmp/norust/.config"
why=$(make -s -C "$tmp/tirdad-dkms/usr/src/tirdad-0.1.0" KDIR="$tmp/norust" 2>&1 || true)
echo "$why" | grep -q 'not built with CONFIG_RUST=y' || fail "tirdad Makefile on a kernel without Rust: $why"
grep -qx 'net.ipv4.tcp_timestamps = 0' "$tmp/tcp-timestamps-off/usr/lib/sysctl.d/30_tcp-timestamps-off.conf" || fail "sysctl drop-in"
# timesync-check
extract timesync-check usr/bin/timesync-check
linked timesync-check "$tmp/timesync-check/usr/bin/timesync-check"
set +e; "$tmp/timesync-check/usr/bin/timesync-check" --run-dir /nonexistent >/dev/null; rc=$?; set -e
[ "$rc" = 3 ] || fail "timesync-check without sdwdate must exit 3, got $rc"
# leaktest
extract leaktest usr/sbin/leaktest
linked leaktest "$tmp/leaktest/usr/sbin/leaktest"
echo "packaging: OK"
