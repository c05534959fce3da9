#!/usr/bin/env bash
# tests/system/run.sh DEB_DIR: the booted-system tier. A Debian bookworm root filesystem made
# with debootstrap (cached outside the repository, keyed by its package list), booted in qemu
# (TCG) with Debian's stock kernel and systemd as PID 1; the root filesystem IS the initramfs
# (no disk image), a second cpio overlays our .debs, the guest script and the kernel modules.
# Inside, guest.sh installs each package ALONE with apt, enables it with systemctl, checks its
# real state and journal, disables and purges it, and checks that nothing is left. Results come
# back over the serial console as `SYSTEM: PASS|FAIL ...` lines and `SYSTEM-EXIT n`.
# Needs root (debootstrap, cpio of root-owned files); no network except Debian's mirror for the
# first debootstrap; never touches the host's own services.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DEBS=$(cd "${1:?usage: tests/system/run.sh DEB_DIR}" && pwd)
CACHE=${ANON_SYSTEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/anon-daemons/system}
KDIR=${ANON_VM_KERNEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/anon-daemons/vm/current}
TIMEOUT=${ANON_SYSTEM_TIMEOUT:-1800}
t0=$SECONDS
step() { echo "==> system: $* ($((SECONDS - t0)) s)"; }

# Every runtime dependency of our packages, preinstalled: the guest has no network.
# python3: the uinput test keyboard (typist.py); man-db: the autopkgtest that reads man pages;
# dkms and (below) the booted kernel's headers: tirdad-dkms gets as far as on a user's machine.
# ifupdown: networking.service must not bring interfaces up while anon-firewall is failed.
# cpio: the first boot hands what it installed to the second.
PKGS=systemd,systemd-sysv,udev,kmod,iproute2,procps,nftables,netbase,libsqlite3-0,util-linux,passwd,adduser,tor,apt,libgcc-s1,dbus,python3,man-db,dkms,ifupdown,cpio
# Bump RECIPE when the steps below change what the cached root filesystem holds.
RECIPE=4
kver=$(ls "$KDIR/lib/modules")
key=$(printf '%s\n' "$PKGS" "$RECIPE" "$kver" | sha256sum | cut -c1-16)
base=$CACHE/$key
if [ ! -f "$base/rootfs.cpio" ]; then
  step "debootstrap bookworm ($PKGS)"
  rm -rf "$base"; mkdir -p "$base"
  mirror=$(grep -m1 '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | awk '{print $2}')
  [ -n "$mirror" ] || mirror=$(grep -m1 -o 'https\?://[^ ]*debian/\? ' /etc/apt/sources.list | tr -d ' ')
  debootstrap --variant=minbase --include="$PKGS" bookworm "$base/rootfs" "$mirror" >"$base/debootstrap.log" 2>&1 ||
    { tail -n 30 "$base/debootstrap.log"; exit 1; }
  r=$base/rootfs
  # The headers of the kernel the VM boots (bookworm-security; they bring that kernel's image
  # package, the same build) and Debian's rustc (rustc-web, what tirdad-dkms depends on in
  # bookworm), installed in the chroot with the host's network, once.
  echo "deb $mirror-security bookworm-security main" > "$r/etc/apt/sources.list.d/security.list"
  mount -t proc proc "$r/proc"
  chroot "$r" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-headers-$kver rustc-web" \
    >>"$base/debootstrap.log" 2>&1 || { umount "$r/proc"; tail -n 30 "$base/debootstrap.log"; exit 1; }
  umount "$r/proc"
  # The console carries only the test's lines; the guest has no network and no sources.
  ln -sf /dev/null "$r/etc/systemd/system/serial-getty@ttyS0.service"
  ln -sf /dev/null "$r/etc/systemd/system/getty@tty1.service"
  ln -sf /dev/null "$r/etc/systemd/system/apt-daily.timer"
  ln -sf /dev/null "$r/etc/systemd/system/apt-daily-upgrade.timer"
  : > "$r/etc/apt/sources.list"; rm -f "$r"/etc/apt/sources.list.d/*
  echo anon-system > "$r/etc/hostname"
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
  ln -sf lib/systemd/systemd "$r/init"
  (cd "$r" && find . | cpio -o -H newc --quiet) > "$base/rootfs.cpio.partial"
  mv "$base/rootfs.cpio.partial" "$base/rootfs.cpio"
  # Older root filesystems (other package lists or recipes): about 3 GB each.
  find "$CACHE" -mindepth 1 -maxdepth 1 ! -name "$key" -exec rm -rf {} +
  step "root filesystem cached in $base ($(du -sh "$base/rootfs.cpio" | cut -f1))"
else
  step "root filesystem from the cache ($base)"
fi

work=$(mktemp -d)
# A private Tor network on the host's loopback (tests/tornet) for sdwdate in the guest: three
# honest onion time sources and three that lie by 2 hours. It comes up while the overlay is
# made; it lives as long as fd 5 is open (tornet-serve reads its stdin to the end).
ROOT=$(cd "$HERE/../.." && pwd)
(cd "$ROOT" && cargo build --locked -q -p anon-tornet --bin tornet-serve)
serve=${CARGO_TARGET_DIR:-$ROOT/target}/debug/tornet-serve
mkfifo "$work/tornet.ctl"
"$serve" "$work/tornet.env" 3 3 7200 < "$work/tornet.ctl" > "$work/tornet.log" 2>&1 & tornet=$!
exec 5> "$work/tornet.ctl"
cleanup() { exec 5>&-; wait "$tornet" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# What the guest reaches through qemu's user network (restrict=on: nothing else, no internet):
# 10.0.2.100:9050 and :9051 are the network's SocksPort and ControlPort (socat per
# connection, once tornet.env exists), :80 the env file (onion names), :37 the host's time.
for p in SOCKS CONTROL; do
  printf '#!/bin/sh\n[ -f %s ] || exit 1\n. %s\nexec socat STDIO "TCP:$%s"\n' "$work/tornet.env" "$work/tornet.env" "$p" > "$work/$p.sh"
done
# (qemu hands the command's stderr to the guest too: nothing but the file, once it exists.)
printf '#!/bin/sh\n[ -f %s ] && exec cat %s\n' "$work/tornet.env" "$work/tornet.env" > "$work/ENV.sh"
ov=$work/overlay
# Every module of the stock kernel (nf_tables and its helpers, evdev, uinput, ...; 92 MB):
# under usr/lib, since bookworm's /lib is a symlink that an overlay `lib/` entry would replace.
mkdir -p "$ov/usr/lib/modules" "$ov/root/debs" "$ov/etc/systemd/system/multi-user.target.wants" "$ov/usr/local/sbin"
# (The root filesystem has them already when its kernel image package is this kernel's.)
[ -d "$base/rootfs/usr/lib/modules/$kver/kernel" ] || cp -a "$KDIR/lib/modules/$kver" "$ov/usr/lib/modules/"
cp "$DEBS"/*.deb "$ov/root/debs/"; rm -f "$ov"/root/debs/*-dbgsym_*.deb
# (ANON_SYSTEM_GUEST: another guest script, to debug one part.)
install -m755 "${ANON_SYSTEM_GUEST:-$HERE/guest.sh}" "$ov/usr/local/sbin/system-test"
cp -r "$HERE/../../debian/tests" "$ov/root/autopkgtest"
install -m755 "$HERE/typist.py" "$ov/root/typist.py"
cat > "$ov/etc/systemd/system/system-test.service" <<'UNIT'
[Unit]
Description=anon-daemons system tier
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/system-test
ExecStopPost=/bin/systemctl poweroff -ff
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
UNIT
ln -sf ../system-test.service "$ov/etc/systemd/system/multi-user.target.wants/system-test.service"
(cd "$ov" && find . | cpio -o -H newc --quiet -R 0:0) > "$work/overlay.cpio"
cat "$base/rootfs.cpio" "$work/overlay.cpio" > "$work/initrd.cpio"
# The guest's own tor and arti join the network too, so every node's ORPort and DirPort is
# forwarded as well (10.0.2.100:PORT, where the guest redirects 127.0.0.1:PORT): the ports
# are known only once the network is up, so the guest boots after it (15-50 s).
i=0; while [ ! -f "$work/tornet.env" ] && kill -0 "$tornet" 2>/dev/null && [ $i -lt 300 ]; do sleep 1; i=$((i + 1)); done
[ -f "$work/tornet.env" ] || { echo "system: the private Tor network did not come up:"; cat "$work/tornet.log"; exit 1; }
step "private Tor network up after $i s"
nodefwd=""
for p in $(. "$work/tornet.env" && echo "$PORTS"); do
  nodefwd="$nodefwd,guestfwd=tcp:10.0.2.100:$p-cmd:socat STDIO TCP:127.0.0.1:$p"
done
# boot NAME INITRD: one boot, its result lines in $work/results-NAME; 0 when it finished.
# The guest's clock starts a day slow (sdwdate has to set it through Tor); /dev/vda is a
# scratch disk on which the first boot leaves a cpio of what it installed for the second.
boot() {
  local name=$1 initrd=$2 rc
  step "boot $name: $kver with systemd (timeout $TIMEOUT s)"
  set +e
  timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 6144 -nographic -no-reboot \
    -rtc base="$(date -u -d '-1 day' +%Y-%m-%dT%H:%M:%S)" \
    -netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:9050-cmd:sh $work/SOCKS.sh,guestfwd=tcp:10.0.2.100:9051-cmd:sh $work/CONTROL.sh,guestfwd=tcp:10.0.2.100:80-cmd:sh $work/ENV.sh,guestfwd=tcp:10.0.2.100:37-cmd:date +%s.%N$nodefwd" \
    -device virtio-net-pci,netdev=n0 -drive "file=$work/disk.img,format=raw,if=virtio" \
    -kernel "$KDIR/boot/vmlinuz-$kver" -initrd "$initrd" \
    -append "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=3 systemd.show_status=0" \
    </dev/null > "$work/console-$name.log" 2>&1
  rc=$?
  set -e
  tr -d '\r' < "$work/console-$name.log" | grep -E 'SYSTEM' | sed 's/^.*\(SYSTEM\)/\1/' > "$work/results-$name" || true
  cat "$work/results-$name"
  step "boot $name finished (qemu exit $rc)"
  if [ "$rc" = 124 ] || ! grep -q '^SYSTEM-EXIT' "$work/results-$name"; then
    echo "system: boot $name did not finish (timeout or crash); last console lines:"; tr -d '\r' < "$work/console-$name.log" | tail -n 40
    return 1
  fi
}
truncate -s 256M "$work/disk.img"
ok=1
boot packages "$work/initrd.cpio" || ok=0
sed 's/^/tornet: /' "$work/tornet.log"
# The second boot: the same system plus what the first one installed (anon-firewall enabled,
# a bad file in /etc/anon-firewall.d): the boot order, lockdown and the network managers.
if [ "$ok" = 1 ] && [ "$(head -c 6 "$work/disk.img")" = 070701 ]; then
  cat "$work/initrd.cpio" "$work/disk.img" > "$work/initrd2.cpio"
  boot reboot "$work/initrd2.cpio" || ok=0
else
  echo "SYSTEM: FAIL the first boot left no installed system for the second" | tee -a "$work/results-packages"
fi
cat "$work"/results-* > "$work/results"
pass=$(grep -c '^SYSTEM: PASS' "$work/results" || true)
failn=$(grep -c '^SYSTEM: FAIL' "$work/results" || true)
echo "system: $pass passed, $failn failed"
[ "$ok" = 1 ] && [ "$failn" = 0 ] && ! grep '^SYSTEM-EXIT' "$work/results" | grep -qv 'SYSTEM-EXIT 0$'
