#!/usr/bin/env bash
# Builds the packages and checks them: contents, units (systemd-analyze verify and its
# offline security score), and that the shipped default config is valid.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
deb=$("$ROOT/packaging/build-debs.sh" | tail -n1)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
for f in usr/sbin/anon-firewall usr/lib/systemd/system/anon-firewall.service \
         usr/lib/systemd/system/anon-firewall-timesync.path etc/anon-firewall.d/30_default.toml \
         usr/share/man/man8/anon-firewall.8.gz; do
  [ -e "$tmp/$f" ] || { echo "FAIL: $deb lacks /$f" >&2; exit 1; }
done
dpkg-deb -f "$deb" Depends | grep -q nftables || { echo "FAIL: no Depends on nftables" >&2; exit 1; }
# The unit must say what the issue asks for.
u=$tmp/usr/lib/systemd/system/anon-firewall.service
for line in Type=oneshot RemainAfterExit=yes DefaultDependencies=no Before=network-pre.target \
            Wants=network-pre.target WantedBy=sysinit.target; do
  grep -q "^${line%%=*}=.*${line#*=}" "$u" || { echo "FAIL: $u lacks $line" >&2; exit 1; }
done
if command -v systemd-analyze >/dev/null; then
  # verify resolves ExecStart= inside --root, so the packaged binary is what gets checked.
  # Only the targets of the host's systemd are missing under --root; anything else fails.
  problems=$(systemd-analyze verify --man=no --root="$tmp" "$u" "$tmp/usr/lib/systemd/system/anon-firewall-timesync.path" \
      "$tmp/usr/lib/systemd/system/anon-firewall-timesync.service" 2>&1 | grep -v 'Unit .*\.target not found' || true)
  [ -z "$problems" ] || { echo "FAIL: systemd-analyze verify: $problems" >&2; exit 1; }
  systemd-analyze security --offline=true --root="$tmp" anon-firewall.service 2>/dev/null | tail -n1
fi
# The shipped defaults parse (workstation: the gateway needs the debian-tor user to exist).
"$tmp/usr/sbin/anon-firewall" --config-dir "$tmp/etc/anon-firewall.d" check-config --role workstation
zcat "$tmp/usr/share/man/man8/anon-firewall.8.gz" | grep -q 'anon\\-firewall' || { echo "FAIL: man page" >&2; exit 1; }
echo "packaging: OK ($deb)"
