#!/usr/bin/env bash
# Builds the source package offline (packaging/build-debs.sh) and checks the result: lintian
# on the .changes (0 errors, 0 warnings), debian/copyright generated from the vendored crates
# as committed, the declared rust-version true, the .debs' contents, units (systemd-analyze
# verify, offline exposure score), linked libraries named in Depends, and the container-safe
# autopkgtests run against the unpacked packages.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${ANON_DEB_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/anon-daemons/deb}
mapfile -t built < <("$ROOT/packaging/build-debs.sh" "$OUT")
debs=(); changes=""
for f in "${built[@]}"; do case $f in *.deb) debs+=("$f");; *.changes) changes=$f;; esac; done
[ -n "$changes" ] && [ ${#debs[@]} -ge 7 ] || { echo "FAIL: the package build failed" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
VERSION=$(cd "$ROOT" && dpkg-parsechangelog -S Version); UPSTREAM=${VERSION%-*}

# lintian: every tag at warning level or above fails; overrides carry their reason.
echo "lintian $(lintian --version | awk '{print $2}') on $(basename "$changes"):"
lintian --fail-on error,warning --display-info --tag-display-limit 0 "$changes" >"$tmp/lintian.txt" 2>&1 ||
  { cat "$tmp/lintian.txt"; fail "lintian"; }
echo "lintian: $(grep -c '^E:' "$tmp/lintian.txt") errors, $(grep -c '^W:' "$tmp/lintian.txt") warnings," \
  "$(grep -c '^I:' "$tmp/lintian.txt") info tags: $(sed -n 's/^I: [^:]*: \([^ ]*\).*/\1/p' "$tmp/lintian.txt" | sort | uniq -c | tr -s ' ' | tr '\n' ',')"

# debian/copyright is what the generator makes of this vendor tree.
python3 "$ROOT/packaging/copyright.py" --check "$ROOT/debian/copyright" "$OUT/anon-daemons-$UPSTREAM/vendor" \
  || fail "debian/copyright"

# rust-version: no crate a member compiles declares a newer one than the member does.
(cd "$ROOT" && cargo metadata --locked --offline --format-version 1 --filter-platform x86_64-unknown-linux-gnu) |
  python3 "$ROOT/packaging/rust-version.py" || fail "rust-version"

deb_of() { local d; for d in "${debs[@]}"; do case $(basename "$d") in "$1"_*) echo "$d"; return;; esac; done; fail "no $1 package"; }

# extract NAME FILE...: unpacks the package into $tmp/NAME and checks the files are there.
extract() {
  local name=$1; shift
  local deb; deb=$(deb_of "$name")
  mkdir -p "$tmp/$name"; dpkg-deb -x "$deb" "$tmp/$name"
  local f; for f in "$@"; do [ -e "$tmp/$name/$f" ] || fail "$deb lacks /$f"; done
  echo "$(basename "$deb"): Depends: $(dpkg-deb -f "$deb" Depends)"
}

# man_and_completions NAME SECTION: a man page and bash/zsh/fish completions.
man_and_completions() {
  local name=$1 s=$2 r=$tmp/$1
  grep -q "^.TH" <<<"$(zcat "$r/usr/share/man/man$s/$name.$s.gz")" || fail "$name: man page"
  grep -q "complete -F" "$r/usr/share/bash-completion/completions/$name" || fail "$name: bash completion"
  grep -q "#compdef $name" "$r/usr/share/zsh/vendor-completions/_$name" || fail "$name: zsh completion"
  grep -q "complete -c $name" "$r/usr/share/fish/vendor_completions.d/$name.fish" || fail "$name: fish completion"
}

# linked NAME BINARY: every shared library the binary loads comes from a package its Depends
# names (dpkg-shlibdeps' work, checked).
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

# Where this debhelper puts units: /lib/systemd/system on bookworm, /usr/lib/systemd/system on
# trixie (merged /usr). What we install ourselves (anon-firewall's drop-ins) is under /usr/lib
# on both.
UNITDIR=$(dpkg-deb -c "$(deb_of sdwdate)" | sed -n 's|.* \./\(\(usr/\)\{0,1\}lib/systemd/system\)/sdwdate\.service$|\1|p')
[ -n "$UNITDIR" ] || fail "sdwdate: no sdwdate.service under /lib or /usr/lib/systemd/system"
DROPDIR=usr/lib/systemd/system
# units ROOT UNIT...: systemd-analyze verify (only the host's targets may be missing under
# --root) and the exposure score of the first unit.
units() {
  local root=$1; shift
  command -v systemd-analyze >/dev/null || return 0
  local paths=() u; for u in "$@"; do paths+=("$root/$UNITDIR/$u"); done
  local problems
  problems=$(systemd-analyze verify --man=no --root="$root" "${paths[@]}" 2>&1 | grep -v 'Unit .*\.target not found\|Unit .*\.service not found' || true)
  [ -z "$problems" ] || fail "systemd-analyze verify: $problems"
  mkdir -p "$root/usr/lib/systemd/system"
  [ "$UNITDIR" = usr/lib/systemd/system ] || cp "$root/$UNITDIR/$1" "$root/usr/lib/systemd/system/"
  echo "$1: $(systemd-analyze security --offline=true --root="$root" "$1" 2>/dev/null | tail -n1)"
}

# unit_has FILE KEY=VALUE...: the unit says what the issues ask for.
unit_has() {
  local u=$1; shift
  local l; for l in "$@"; do grep -q "^${l%%=*}=.*${l#*=}" "$u" || fail "$u lacks $l"; done
}

# maintscript PKG SCRIPT PATTERN: debhelper wrote the snippet.
maintscript() {
  local d=$tmp/ctrl-$1; mkdir -p "$d"; dpkg-deb -e "$(deb_of "$1")" "$d" 2>/dev/null || true
  grep -q -- "$3" "$d/$2" || fail "$1 $2 lacks '$3'"
}

# anon-firewall
extract anon-firewall usr/sbin/anon-firewall $UNITDIR/anon-firewall.service \
  $UNITDIR/anon-firewall-timesync.path etc/anon-firewall.d/30_default.toml \
  $DROPDIR/nftables.service.d/anon-firewall-nftables.conf \
  $DROPDIR/networking.service.d/anon-firewall-network.conf $DROPDIR/ifup@.service.d/anon-firewall-network.conf \
  $DROPDIR/NetworkManager.service.d/anon-firewall-network.conf $DROPDIR/systemd-networkd.service.d/anon-firewall-network.conf
man_and_completions anon-firewall 8
unit_has "$tmp/anon-firewall/$UNITDIR/anon-firewall.service" Type=oneshot RemainAfterExit=yes \
  DefaultDependencies=no Before=network-pre.target Wants=network-pre.target WantedBy=sysinit.target
linked anon-firewall "$tmp/anon-firewall/usr/sbin/anon-firewall"
units "$tmp/anon-firewall" anon-firewall.service anon-firewall-timesync.path anon-firewall-timesync.service anon-firewall-lockdown.service
unit_has "$tmp/anon-firewall/$UNITDIR/anon-firewall.service" OnFailure=anon-firewall-lockdown.service
# Never enabled by the package (README.Debian): debhelper's --no-enable snippet re-enables
# only units an admin had enabled (`debian-installed` ... `was-enabled`), never on first install.
maintscript anon-firewall postinst 'deb-systemd-helper update-state'
if grep -q "new installations run enable" "$tmp/ctrl-anon-firewall/postinst"; then fail "anon-firewall's postinst enables its units on installation"; fi
# The lockdown unit is never started by the maintainer scripts: that would lock the host down.
for s in postinst prerm postrm; do
  if grep -Eq "(deb-systemd-invoke|systemctl).*anon-firewall-lockdown" "$tmp/ctrl-anon-firewall/$s" 2>/dev/null; then
    fail "anon-firewall's $s starts or stops the lockdown unit"
  fi
done

# sdwdate
extract sdwdate usr/bin/sdwdate $UNITDIR/sdwdate.service usr/lib/sysusers.d/sdwdate.conf \
  usr/lib/tmpfiles.d/sdwdate.conf etc/sdwdate.d/30_default.conf usr/sbin/sdwdate-clock-jump \
  usr/libexec/sdwdate/has-netvm-on-qubes usr/share/man/man8/sdwdate-clock-jump.8.gz etc/privleap/conf.d/sdwdate-actions.conf
man_and_completions sdwdate 8
unit_has "$tmp/sdwdate/$UNITDIR/sdwdate.service" Type=notify User=sdwdate \
  AmbientCapabilities=CAP_SYS_TIME CapabilityBoundingSet=CAP_SYS_TIME WatchdogSec= \
  ConditionPathExists=!/run/qubes/this-is-templatevm ConditionPathExists=!/run/qubes-service/no-sdwdate \
  ExecCondition=/usr/libexec/sdwdate/has-netvm-on-qubes
# sdwdate-gui watches /run/sdwdate/status itself: tmpfiles must create it before sdwdate runs.
grep -q '^f /run/sdwdate/status ' "$tmp/sdwdate/usr/lib/tmpfiles.d/sdwdate.conf" || fail "sdwdate: tmpfiles lacks f /run/sdwdate/status"
linked sdwdate "$tmp/sdwdate/usr/bin/sdwdate"
units "$tmp/sdwdate" sdwdate.service
# sdwdate sets the clock: its resolved syscall filter must keep @clock (a later ~@privileged
# once removed it, and the kernel would have killed it at its first clock change).
# (Captured first: with pipefail, `grep -q` closing the pipe early made this fail at random.)
sec=$(systemd-analyze security --offline=true --root="$tmp/sdwdate" sdwdate.service 2>/dev/null || true)
grep -q 'SystemCallFilter=~@clock .*@clock is included' <<<"$sec" || fail "sdwdate.service: the syscall filter denies @clock"
maintscript sdwdate postinst 'systemd-sysusers'
maintscript sdwdate postinst 'systemd-tmpfiles .*--create sdwdate.conf'
maintscript sdwdate postinst 'deb-systemd-helper enable'
maintscript sdwdate preinst 'rm_conffile /etc/apparmor.d/usr.bin.sdwdate'
maintscript sdwdate postrm 'rm -rf /var/lib/sdwdate'
[ "$(dpkg-deb -f "$(deb_of sdwdate)" Provides)" = time-daemon ] || fail "sdwdate: Provides time-daemon"
case $(dpkg-deb -f "$(deb_of sdwdate)" Version) in 4:*) ;; *) fail "sdwdate's version must be above upstream's 3:28.x";; esac

# kloak
extract kloak usr/sbin/kloak $UNITDIR/kloak.service
man_and_completions kloak 8
unit_has "$tmp/kloak/$UNITDIR/kloak.service" PrivateNetwork=yes CapabilityBoundingSet= DeviceAllow=/dev/uinput
linked kloak "$tmp/kloak/usr/sbin/kloak"
units "$tmp/kloak" kloak.service
maintscript kloak preinst 'rm_conffile /etc/apparmor.d/usr.sbin.kloak'

# tirdad-dkms, tcp-timestamps-off (no man pages: a module source and a config file)
src=usr/src/tirdad-$UPSTREAM
extract tirdad-dkms "$src/dkms.conf" "$src/tirdad_main.rs" "$src/isn.rs" "$src/tirdad_isn.rs" \
  "$src/tirdad_stock.c" "$src/tirdad_shim.c" usr/lib/modules-load.d/30-tirdad.conf usr/lib/modprobe.d/30-tirdad.conf
# DKMS builds wherever kretprobes exist on amd64 (stock kernels: the Rust object beside the C
# shim; Rust kernels: the Rust-for-Linux module); loaded at boot and before LKRG.
grep -qx 'BUILD_EXCLUSIVE_CONFIG="CONFIG_KRETPROBES"' "$tmp/tirdad-dkms/$src/dkms.conf" || fail "dkms.conf: BUILD_EXCLUSIVE_CONFIG"
grep -qx 'BUILD_EXCLUSIVE_ARCH="x86_64"' "$tmp/tirdad-dkms/$src/dkms.conf" || fail "dkms.conf: BUILD_EXCLUSIVE_ARCH"
grep -qx 'tirdad' "$tmp/tirdad-dkms/usr/lib/modules-load.d/30-tirdad.conf" || fail "modules-load.d"
grep -qx 'softdep lkrg pre: tirdad' "$tmp/tirdad-dkms/usr/lib/modprobe.d/30-tirdad.conf" || fail "modprobe.d softdep"
maintscript tirdad-dkms postinst 'dkms'
# Where the Makefile cannot build, it refuses and says why.
refuses() { # CONFIG-LINES EXPECTED [MAKE-ARGS...]
  local cfg=$1 want=$2; shift 2
  rm -rf "$tmp/kcfg"; mkdir -p "$tmp/kcfg"; printf '%b' "$cfg" > "$tmp/kcfg/.config"
  local why; why=$(make -s -C "$tmp/tirdad-dkms/$src" KDIR="$tmp/kcfg" "$@" 2>&1 || true)
  echo "$why" | grep -q "$want" || fail "tirdad Makefile ($want): $why"
}
refuses 'CONFIG_X86_64=y\n' 'no CONFIG_KRETPROBES'
refuses 'CONFIG_KRETPROBES=y\nCONFIG_ARM64=y\n' 'x86_64 (amd64) only'
refuses 'CONFIG_KRETPROBES=y\nCONFIG_X86_64=y\n' 'no rustc found' TIRDAD_RUSTC=/nonexistent/rustc
extract tcp-timestamps-off usr/lib/sysctl.d/30_tcp-timestamps-off.conf
grep -qx 'net.ipv4.tcp_timestamps = 0' "$tmp/tcp-timestamps-off/usr/lib/sysctl.d/30_tcp-timestamps-off.conf" || fail "sysctl drop-in"
maintscript tcp-timestamps-off postinst 'sysctl -q -p /usr/lib/sysctl.d/30_tcp-timestamps-off.conf'

# timesync-check, leaktest
extract timesync-check usr/bin/timesync-check
man_and_completions timesync-check 1
linked timesync-check "$tmp/timesync-check/usr/bin/timesync-check"
extract leaktest usr/sbin/leaktest
man_and_completions leaktest 8
linked leaktest "$tmp/leaktest/usr/sbin/leaktest"

# The autopkgtests that need no installation, against the unpacked packages.
(
  export PATH="$tmp/anon-firewall/usr/sbin:$tmp/sdwdate/usr/bin:$tmp/kloak/usr/sbin:$tmp/timesync-check/usr/bin:$PATH"
  mkdir -p "$tmp/etc"; cp -r "$tmp/anon-firewall/etc/anon-firewall.d" "$tmp/sdwdate/etc/sdwdate.d" "$tmp/etc/"
  export ANON_TEST_ROOT=$tmp AUTOPKGTEST_TMP=$tmp
  for t in shipped-configs kloak-simulate timesync-check-exit-codes; do
    sh "$ROOT/debian/tests/$t" >"$tmp/$t.log" 2>&1 || { cat "$tmp/$t.log"; fail "autopkgtest $t"; }
    tail -n1 "$tmp/$t.log"
  done
)
echo "packaging: OK"
