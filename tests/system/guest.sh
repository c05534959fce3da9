#!/bin/sh
# The booted-system tier, inside the guest (root, systemd as PID 1, no network): every package
# installed ALONE with apt from /root/debs, enabled, checked in its real state and journal,
# disabled, purged, and checked for leftovers. Prints `SYSTEM: PASS|FAIL ...`, `SYSTEM-EXIT n`.
set -u
FAILED=0
pass() { echo "SYSTEM: PASS $*"; }
fail() { echo "SYSTEM: FAIL $*"; FAILED=1; }
info() { echo "SYSTEM: info $*"; }
# check DESC CMD...: PASS if CMD succeeds, else FAIL with its last output lines.
check() {
	d=$1; shift
	if "$@" >/tmp/check.out 2>&1; then pass "$d"; else fail "$d: $(tail -n 4 /tmp/check.out | tr '\n' ' ')"; return 1; fi
}
deb() { ls /root/debs/"$1"_*.deb; }
equals() { [ "$1" = "$2" ] || { echo "got '$1', expected '$2'"; return 1; }; }
install_alone() {
	check "$1: apt install ./$(basename "$(deb "$1")") (dependencies from the image only)" \
		apt-get install -y --no-install-recommends "$(deb "$1")"
	dpkg -L "$1" > "/tmp/files-$1"
}
# purge_clean PKG PATH...: apt purge, then no file of the package and none of PATHs is left.
purge_clean() {
	p=$1; shift
	check "$p: apt purge" apt-get purge -y "$p"
	left=""
	while read -r f; do
		# Files and symlinks to files (/lib itself is a symlink to a directory on merged /usr).
		if [ -f "$f" ] || { [ -L "$f" ] && [ ! -d "$f" ]; }; then left="$left $f"; fi
	done < "/tmp/files-$p"
	for f in "$@"; do [ -e "$f" ] || [ -L "$f" ] && left="$left $f"; done
	check "$p: nothing left after purge" equals "${left:-none}" none
}
# journal_clean UNIT: no seccomp kill, no denial, no restart loop in this boot's journal.
journal_clean() {
	j=$(journalctl -b -u "$1" --no-pager -o cat 2>/dev/null)
	bad=$(echo "$j" | grep -E 'SIGSYS|status=31|Permission denied|Operation not permitted|apparmor="DENIED"|Start request repeated too quickly' || true)
	check "$1: journal has no SIGSYS, denial or restart loop" equals "${bad:-none}" none
}
score() { # UNIT LIMIT: the running unit's exposure score (next to the offline one) <= LIMIT
	live=$(systemd-analyze security "$1" 2>/dev/null | tail -n1)
	off=$(systemd-analyze security --offline=true "$(systemctl show -p FragmentPath --value "$1")" 2>/dev/null | tail -n1)
	info "$1 exposure: running: ${live:-?}; offline: ${off:-?}"
	n=$(echo "$live" | grep -o '[0-9]\+\.[0-9]' | head -n1)
	o=$(echo "$off" | grep -o '[0-9]\+\.[0-9]' | head -n1); o=${o:-$n}
	check "$1: exposure ${n:-?} (offline ${o:-?}) <= $2" python3 -c "import sys; sys.exit(not max(float('${n:-99}'), float('${o:-99}')) <= $2)"
}
active() { equals "$(systemctl is-active "$1")" "${2:-active}"; }
# wait_active UNIT: up to 90 s (TCG is slow) for the unit to leave "activating".
wait_active() {
	i=0
	while [ "$(systemctl is-active "$1")" = activating ] && [ $i -lt 90 ]; do sleep 1; i=$((i + 1)); done
	info "$1: $(systemctl is-active "$1") after $i s"
}
# diag UNIT: the unit's journal, when a check of it failed.
diag() { journalctl -b -u "$1" --no-pager -o cat | tail -n 15 | sed 's/^/SYSTEM: journal: /'; }
enabled() { equals "$(systemctl is-enabled "$1" 2>/dev/null)" "${2:-enabled}"; }

echo "SYSTEM: start $(uname -r), systemd $(systemctl --version | head -n1 | cut -d' ' -f2)"

# --- The second boot (run.sh appended what the first one installed): anon-firewall enabled,
# workstation role, a bad file in /etc/anon-firewall.d. At boot it must fail before the
# network is prepared, leave lockdown, say why, and keep the network managers down.
if [ -e /root/phase2 ]; then
	info "second boot: anon-firewall installed and enabled by the first (gateway marker), with a bad file"
	check "boot: anon-firewall ran and failed at boot" active anon-firewall.service failed || diag anon-firewall.service
	# `apply` itself locks down before it exits with the error (the stop hook is the net for a
	# crash): its exit is what network-pre.target must come after.
	fw_end=$(systemctl show -p ExecMainExitTimestampMonotonic --value anon-firewall.service)
	pre=$(systemctl show -p ActiveEnterTimestampMonotonic --value network-pre.target)
	check "boot: ... and exited before network-pre.target was reached ($fw_end < $pre us)" test "${fw_end:-0}" -gt 0 -a "${fw_end:-0}" -lt "${pre:-0}"
	check "boot: ... the journal orders it the same way" sh -c 'journalctl -b -o cat --no-pager | grep -E "anon-firewall.service|Preparation for Network" | head -n 20 | grep -n . | grep -m1 "Preparation for Network" | grep -qv "^1:"'
	check "boot: ... lockdown is loaded" sh -c 'grep -qx lockdown /run/anon-firewall/state && nft list table inet anon_firewall >/dev/null'
	check "boot: ... failed.status says why (file and line)" grep -q "60_typo.toml:1" /run/anon-firewall/failed.status
	# The boot's journal has the reason. `journalctl -u anon-firewall` had it in 3 of 6 boots
	# while the unit was ordered only after journald's socket (journald not yet running, even
	# systemd's own lines about the unit lacked its name); now it is ordered after
	# systemd-journald.service, and which way it went is reported.
	check "boot: ... and so does this boot's journal" sh -c 'journalctl -b --no-pager | grep -q "60_typo.toml:1"' ||
		journalctl -b --no-pager -o short-monotonic | grep -n -E '60_typo|anon-firewall|journal' | head -n 40 | sed 's/^/SYSTEM: journal: /'
	if journalctl -b -u anon-firewall --no-pager | grep -q "60_typo.toml:1"; then
		info "boot: the unit's journal names the file too"
	else
		info "boot: the unit's journal does not name the file this time (journald came up after anon-firewall)"
	fi
	check "boot: networking.service did not bring interfaces up" active networking.service failed
	check "boot: ... the boot-time interface is absent" sh -c '! ip link show anontest0'
	check "boot: ... and networking's journal says why" sh -c 'journalctl -b -u networking --no-pager | grep -q "anon-firewall is in use but not active"'
	# The admin fixes the file: the gateway rules load (only debian-tor out), the network comes up.
	rm /etc/anon-firewall.d/60_typo.toml
	systemctl reset-failed anon-firewall.service networking.service
	check "boot: fixed, the gateway role applies" systemctl restart anon-firewall.service
	check "boot: ... only debian-tor's uid gets out" sh -c "nft list table inet anon_firewall | grep -Eq 'skuid (debian-tor|$(id -u debian-tor))'"
	check "boot: ... and networking.service brings the interface up" sh -c 'systemctl restart networking.service && ip link show anontest0 | grep -q ",UP"'
	journal_clean anon-firewall.service
	echo "SYSTEM-EXIT $FAILED"
	exit 0
fi

# --- tcp-timestamps-off: applied at installation, no reboot; the drop-in gone after purge.
sysctl -q -w net.ipv4.tcp_timestamps=1
install_alone tcp-timestamps-off
check "tcp-timestamps-off: net.ipv4.tcp_timestamps is 0 after install" equals "$(sysctl -n net.ipv4.tcp_timestamps)" 0
purge_clean tcp-timestamps-off /usr/lib/sysctl.d/30_tcp-timestamps-off.conf

# --- timesync-check and leaktest: run from their installed paths.
install_alone timesync-check
timesync-check >/dev/null 2>&1; rc=$?
check "timesync-check: /usr/bin/timesync-check says 'not running' (3) without sdwdate" equals "$rc" 3
purge_clean timesync-check
install_alone leaktest
check "leaktest: /usr/sbin/leaktest runs" /usr/sbin/leaktest --version
purge_clean leaktest

# --- sdwdate: enabled and started by the package, as user sdwdate with CAP_SYS_TIME only;
# then the whole workstation story through a private Tor network on the host (qemu user
# network: 10.0.2.100:9050 SocksPort, :9051 ControlPort, :80 the onion names, :37 the host's
# time). The guest booted with its clock a day slow.
# (The virtio NIC's driver may still be loading: up to 60 s for it.)
i=0; while ! ls /sys/class/net | grep -qv -e '^lo$' && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done
nic=$(ls /sys/class/net | grep -v -e '^lo$' | head -n1)
ip link set "$nic" name uplink; ip addr add 10.0.2.15/24 dev uplink; ip link set uplink up
fetch() { # PORT -> what the host's forward sends (empty on failure)
	python3 -c '
import socket, sys
try:
    s = socket.create_connection(("10.0.2.100", int(sys.argv[1])), timeout=5)
    print(s.makefile().read().strip())
except OSError:
    pass' "$1"
}
# offset: the guest's clock minus the host's, in seconds (3 decimals), read over the forward.
offset() {
	python3 -c '
import socket, time
t0 = time.time()
s = socket.create_connection(("10.0.2.100", 37), timeout=5)
host = float(s.makefile().read().strip()); t1 = time.time()
print("%.3f" % ((t0 + t1) / 2 - host))'
}
# within A B LIMIT: |A - B| <= LIMIT
within() { python3 -c 'import sys; a, b, l = map(float, sys.argv[1:]); sys.exit(abs(a - b) > l)' "$@" || { echo "|$1 - $2| > $3"; return 1; }; }
# The network comes up while the guest boots (15-50 s): wait for its env file, up to 300 s.
i=0; while ! fetch 80 | grep -q '^HONEST="http' && [ $i -lt 60 ]; do sleep 5; i=$((i + 1)); done
fetch 80 | grep -E '^(SOCKS|CONTROL|COOKIE|HONEST|LIARS|PORTS|TORRC|ARTI)=' > /root/tornet.env
. /root/tornet.env
HONEST=${HONEST:-}; LIARS=${LIARS:-}; COOKIE=${COOKIE:-}
# The network's tor wants its cookie (SAFECOOKIE) on the control port, as Debian's does; a
# port on another host has no cookie sdwdate could find, so the config names it.
mkdir -p /etc/sdwdate.d
python3 -c 'import sys; open("/etc/sdwdate.d/tornet.cookie", "wb").write(bytes.fromhex(sys.argv[1]))' "$COOKIE" || true
check "sdwdate: the private Tor network's onion names arrived (after $((i * 5)) s)" test -n "$HONEST"
off0=$(offset)
check "sdwdate: the guest booted with its clock a day slow (offset $off0 s)" within "$off0" -86400 120
install_alone timesync-check
# adjtimex(2) with no change: 5 (TIME_ERROR) while the kernel takes the clock as unsynchronised.
kernel_sync() { python3 -c 'import ctypes; print(ctypes.CDLL(None).adjtimex(ctypes.create_string_buffer(512)))'; }
check "sdwdate: before sdwdate the kernel takes the clock as unsynchronised (adjtimex 5)" equals "$(kernel_sync)" 5
install_alone sdwdate
wait_active sdwdate.service
check "sdwdate: enabled by the package" enabled sdwdate.service
check "sdwdate: active" active sdwdate.service || diag sdwdate.service
check "sdwdate: runs as user sdwdate" equals "$(ps -o user= -C sdwdate | head -n1)" sdwdate
check "sdwdate: user sdwdate is in group debian-tor (tor's control socket and cookie)" sh -c 'id -nG sdwdate | grep -qw debian-tor'
check "sdwdate: /run/sdwdate/status written" test -s /run/sdwdate/status
check "sdwdate: /var/lib/sdwdate is there" test -d /var/lib/sdwdate
check "sdwdate-wait-sync: enabled with sdwdate (time-sync.target follows its first success)" enabled sdwdate-wait-sync.service
check "sdwdate-wait-sync: ... pulled in by sdwdate and waiting, not blocking the install" active sdwdate-wait-sync.service activating
filter=$(systemctl show -p SystemCallFilter --value sdwdate.service)
for sc in clock_settime clock_adjtime adjtimex settimeofday; do
	check "sdwdate: the unit's syscall filter allows $sc (it sets the clock)" sh -c "echo '$filter' | tr ' ' '\n' | grep -qx '$sc'"
done
# An admin's drop-in with a typo: a usage error (64) fails the unit at once, and
# RestartPreventExitStatus=64 keeps Restart=always from looping on it.
mkdir -p /etc/systemd/system/sdwdate.service.d
printf '[Service]\nExecStart=\nExecStart=/usr/bin/sdwdate --no-such-option\n' > /etc/systemd/system/sdwdate.service.d/typo.conf
systemctl daemon-reload
systemctl restart sdwdate.service 2>/dev/null || true
sleep 15
check "sdwdate: a typo in the unit exits 64 (usage error)" equals "$(systemctl show -p ExecMainStatus --value sdwdate.service)" 64
check "sdwdate: ... and the unit is failed, not restarted in a loop" equals "$(systemctl is-active sdwdate.service) $(systemctl show -p NRestarts --value sdwdate.service)" "failed 0"
rm -r /etc/systemd/system/sdwdate.service.d
systemctl daemon-reload
systemctl reset-failed sdwdate.service
systemctl start sdwdate.service
# Later files add pool members (as upstream's read_pools does), so the shipped public pools
# are set aside while the test's own sources are configured, and put back before the purge.
mv /etc/sdwdate.d/30_default.conf /root/30_default.conf.saved
# conf POOL_URLS CONTROL: the test's sources and tor, one source per pool.
conf() {
	set -- $1 "$2"
	# (Without the network's names: empty pools, and the checks below fail instead of the script.)
	[ $# = 4 ] || set -- "" "" "" "${1:-}"
	cat > /etc/sdwdate.d/50_test.conf <<CONF
PROXY_IP=10.0.2.100
PROXY_PORT=9050
TRANSPORT=socks
CONTROL_PORT=$4
$([ "$4" = 10.0.2.100:9051 ] && echo CONTROL_COOKIE=/etc/sdwdate.d/tornet.cookie)
SDWDATE_POOL_ZERO=(
    "$1"
)
SDWDATE_POOL_ONE=(
    "$2"
)
SDWDATE_POOL_TWO=(
    "$3"
)
CONF
}
# round FILE [keep]: restart sdwdate (run directory emptied unless keep), wait up to 240 s for FILE.
round() {
	systemctl stop sdwdate.service
	[ "${2:-}" = keep ] || rm -f /run/sdwdate/*
	rm -f /run/sdwdate/success /run/sdwdate/fail
	systemctl start sdwdate.service
	i=0; while [ ! -e "/run/sdwdate/$1" ] && [ $i -lt 240 ]; do sleep 1; i=$((i + 1)); done
	info "sdwdate: /run/sdwdate/$1 after $i s"
}
mark() { journalctl -b -u sdwdate.service --no-pager -o cat | wc -l; }
since() { journalctl -b -u sdwdate.service --no-pager -o cat | tail -n +"$(($1 + 1))"; }
conf "$HONEST" 10.0.2.100:9051
timesync-check --wait --timeout 300 > /tmp/wait.out 2>&1 & waiter=$!
# The first round by hand (as round does), with time-sync.target stopped first and a unit
# ordered after it queued while sdwdate has no success yet: it must run only after it.
m=$(mark)
systemctl stop sdwdate.service time-sync.target
rm -f /run/sdwdate/* /run/after-time-sync
systemctl start sdwdate.service
check "sdwdate-wait-sync: waits again after sdwdate's restart" active sdwdate-wait-sync.service activating
systemd-run --no-block --quiet --unit=after-time-sync --service-type=oneshot -p RemainAfterExit=yes \
	-p After=time-sync.target -p Wants=time-sync.target /bin/touch /run/after-time-sync
i=0; while [ ! -e /run/sdwdate/first_success ] && [ $i -lt 240 ]; do sleep 1; i=$((i + 1)); done
info "sdwdate: /run/sdwdate/first_success after $i s"
j=0; while [ ! -e /run/after-time-sync ] && [ $j -lt 20 ]; do sleep 1; j=$((j + 1)); done
check "sdwdate: through Tor, the first success" test -e /run/sdwdate/first_success || diag sdwdate.service
check "time-sync.target: reached after sdwdate's first success" active time-sync.target
check "time-sync.target: ... a unit ordered after it ran only after the first success" python3 -c 'import os, sys; sys.exit(not os.stat("/run/after-time-sync").st_mtime_ns >= os.stat("/run/sdwdate/first_success").st_mtime_ns)'
check "sdwdate-wait-sync: done (active, exited)" active sdwdate-wait-sync.service
off1=$(offset)
check "sdwdate: ... stepped the clock to within 2 s of the host's (offset now $off1 s)" within "$off1" 0 2
check "sdwdate: ... with a step, inside Tor's consensus window" sh -c "journalctl -b -u sdwdate --no-pager -o cat | tail -n +$((m + 1)) | grep -q 'clock stepped by +86' && journalctl -b -u sdwdate --no-pager -o cat | tail -n +$((m + 1)) | grep -q 'Tor consensus window'"
check "sdwdate: ... a day behind Tor's consensus: stepped forward into its window first" sh -c "journalctl -b -u sdwdate --no-pager -o cat | tail -n +$((m + 1)) | grep -q 'it was before Tor.s consensus valid-after'"
check "sdwdate: ... and the kernel is told the clock is synchronised (adjtimex 0, TIME_OK)" equals "$(kernel_sync)" 0
# The kernel's 11-minute mode copies the clock to the hardware clock (the guest's RTC booted
# a day slow) as soon as it is told the clock is synchronised.
rtc_off() { python3 -c 'import time; print("%.0f" % (int(open("/sys/class/rtc/rtc0/since_epoch").read()) - time.time()))'; }
i=0; while ! within "$(rtc_off)" 0 2 > /dev/null && [ $i -lt 20 ]; do sleep 1; i=$((i + 1)); done
check "sdwdate: ... and the hardware clock follows (RTC minus clock: $(rtc_off) s, after $i s)" within "$(rtc_off)" 0 2
if command -v timedatectl > /dev/null && timedatectl show > /dev/null 2>&1; then
	check "sdwdate: ... timedatectl: System clock synchronized: yes" equals "$(timedatectl show -p NTPSynchronized --value)" yes
fi
check "sdwdate: ... status files written" sh -c 'test -e /run/sdwdate/success && grep -q "\"icon\": \"success\"" /run/sdwdate/status && test -s /var/lib/sdwdate/time-replay-protection-utc-unixtime'
wait $waiter; rc=$?
check "sdwdate: timesync-check --wait returned success" equals "$rc" 0
check "sdwdate: timesync-check says synced (0)" timesync-check
# leaktest's host checks, installed, on this system as it now is: the sysctl from
# tcp-timestamps-off, the clock from sdwdate (through timesync-check), tirdad as installed.
install_alone tcp-timestamps-off
install_alone leaktest
leaktest --only host --json > /tmp/leaktest.json 2>/dev/null
verdict() { python3 -c 'import json, sys; d = json.load(open("/tmp/leaktest.json")); print(next((c["verdict"] for c in d["checks"] if c["check"] == sys.argv[1]), "missing"))' "$1"; }
check "leaktest: sees tcp timestamps off (tcp-timestamps-off installed)" equals "$(verdict 'tcp timestamps off')" PASS
check "leaktest: sees the clock synced by sdwdate" equals "$(verdict 'clock synced')" PASS
check "leaktest: sees tirdad not loaded on the stock kernel (FAIL, as it should be)" equals "$(verdict 'tirdad loaded')" FAIL
purge_clean leaktest
purge_clean tcp-timestamps-off /usr/lib/sysctl.d/30_tcp-timestamps-off.conf
# The next round slews: the clock set 3 s slow, sdwdate restarted with its run directory kept.
date -s "@$(python3 -c 'import time; print("%.3f" % (time.time() - 3))')" > /dev/null
m=$(mark); round success keep
sleep 1; o1=$(offset); sleep 30; o2=$(offset)
check "sdwdate: the next round slews instead of stepping" sh -c "journalctl -b -u sdwdate --no-pager -o cat | tail -n +$((m + 1)) | grep -q 'slewing the clock by +'"
check "sdwdate: ... and the clock moves towards the host's ($o1 s, then $o2 s 30 s later)" \
	python3 -c "import sys; sys.exit(not (-4 < $o1 < $o2 - 0.06 and $o2 < 0.5))"
# sdwdate-clock-jump (what sdwdate-gui's "Restart sdwdate" runs): after a first success, the
# next success steps anyway. The clock is put 5 s further off first.
date -s "@$(python3 -c 'import time; print("%.3f" % (time.time() - 5))')" > /dev/null
ino=$(stat -c %i /run/sdwdate/status)
m=$(mark)
check "sdwdate-clock-jump: runs" sdwdate-clock-jump
i=0; while [ ! -e /run/sdwdate/first_success ] && [ $i -lt 240 ]; do sleep 1; i=$((i + 1)); done
offj=$(offset)
check "sdwdate-clock-jump: the next success steps the clock (after $i s)" sh -c "journalctl -b -u sdwdate --no-pager -o cat | tail -n +$((m + 1)) | grep -q 'clock stepped by +'"
check "sdwdate-clock-jump: ... to within 2 s of the host's (offset now $offj s)" within "$offj" 0 2
check "sdwdate-clock-jump: ... and the request file is gone" test ! -e /run/sdwdate/clock_jump_do_once
check "sdwdate: /run/sdwdate/status is rewritten in place (sdwdate-gui's inotify watch survives)" equals "$(stat -c %i /run/sdwdate/status)" "$ino"
# Liars (2 hours fast) with the consensus window available: rejected, the clock stays put.
date -s "@$(python3 -c 'import time; print("%.3f" % (time.time() - float("'"$offj"'")))')" > /dev/null
# SYNC_HARDWARE_CLOCK=false: a success, and the kernel is told the clock is NOT synchronised
# (so it copies nothing to the hardware clock), even though an earlier run told it otherwise.
printf 'SYNC_HARDWARE_CLOCK=false\n' > /etc/sdwdate.d/60_hwclock.conf
round success keep
check "sdwdate: SYNC_HARDWARE_CLOCK=false: a success" test -e /run/sdwdate/success || diag sdwdate.service
check "sdwdate: ... and the kernel takes the clock as unsynchronised (adjtimex 5): no RTC copies" equals "$(kernel_sync)" 5
rm /etc/sdwdate.d/60_hwclock.conf
# A month behind (an RTC reset, a dead CMOS battery), an earlier success this boot: forward
# into Tor's consensus window, then the sources' time stepped, not slewed for years.
date -s "@$(($(date +%s) - 30 * 86400))" > /dev/null
m=$(mark); round success keep
offm=$(offset)
check "sdwdate: a month behind: stepped into Tor's consensus window first" sh -c "journalctl -b -u sdwdate --no-pager -o cat | tail -n +$((m + 1)) | grep -q 'it was before Tor.s consensus valid-after'" || diag sdwdate.service
check "sdwdate: ... then to within 2 s of the host's (offset now $offm s)" within "$offm" 0 2
check "sdwdate: ... the rest stepped (after a step into the window)" sh -c "journalctl -b -u sdwdate --no-pager -o cat | tail -n +$((m + 1)) | grep -q 'after a step into Tor.s consensus window'"
# A year ahead at boot (no success yet this boot): the sources' time, inside Tor's window, is
# stepped to; the replay-protection time written is theirs, never the year-ahead clock's.
date -s "@$(($(date +%s) + 365 * 86400))" > /dev/null
rm -f /run/sdwdate/first_success
m=$(mark); round first_success keep
offy=$(offset)
check "sdwdate: a year ahead at boot: stepped back to within 2 s of the host's (offset now $offy s)" within "$offy" 0 2
check "sdwdate: ... and the replay-protection time is the sources', not the year-ahead clock's" \
	python3 -c 'import sys, time; sys.exit(not int(open("/var/lib/sdwdate/time-replay-protection-utc-unixtime").read()) <= time.time() + 5)'
conf "$LIARS" 10.0.2.100:9051
m=$(mark); round fail keep
check "sdwdate: lying sources fail the round" test -e /run/sdwdate/fail
check "sdwdate: ... rejected by Tor's consensus window" sh -c "journalctl -b -u sdwdate --no-pager -o cat | tail -n +$((m + 1)) | grep -q 'rejected.*(fast)'"
off=$(offset)
check "sdwdate: ... and the clock was not moved (offset $off s)" within "$off" 0 2
# No consensus window, no time: honest sources, the clock a day slow again, a first round (it
# would step), but tor's control port is stopped / answers without a consensus.
date -s "@$(($(date +%s) - 86400))" > /dev/null
# (A round waits up to 120 s for tor's consensus before it fails; 15 s here.)
mkdir -p /etc/systemd/system/sdwdate.service.d
printf '[Service]\nExecStart=\nExecStart=/usr/bin/sdwdate --consensus-wait 15\n' > /etc/systemd/system/sdwdate.service.d/50-test.conf
systemctl daemon-reload
conf "$HONEST" 10.0.2.100:9052
m=$(mark); round fail
check "sdwdate: control port stopped: the round fails" test -e /run/sdwdate/fail
check "sdwdate: ... after waiting for it, saying there is no consensus window" sh -c "journalctl -b -u sdwdate --no-pager -o cat | tail -n +$((m + 1)) | grep -q 'waiting up to 15 s for Tor' && journalctl -b -u sdwdate --no-pager -o cat | tail -n +$((m + 1)) | grep -q 'no Tor consensus window'"
off=$(offset)
check "sdwdate: ... and the clock was not moved (offset $off s)" within "$off" -86400 5
# Debian's tor in the guest (no network, so no consensus): sdwdate reaches its control socket
# with the cookie through group debian-tor, and tor has no window to give.
systemctl start tor@default.service
i=0; while [ ! -S /run/tor/control ] && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done
conf "$HONEST" auto
m=$(mark); round fail
check "sdwdate: Debian's tor control socket without a consensus: the round fails" test -e /run/sdwdate/fail
# (Past AUTHENTICATE: tor says it has no consensus; a bad cookie would be "refused: 515".)
check "sdwdate: ... tor itself had no window to give (socket and cookie were usable, SAFECOOKIE)" sh -c "journalctl -b -u sdwdate --no-pager -o cat | tail -n +$((m + 1)) | grep 'no Tor consensus window' | grep -Eq 'unix:/run/tor/control: (no usable consensus|refused: 55)'" || diag sdwdate.service
off=$(offset)
check "sdwdate: ... and the clock was not moved (offset $off s)" within "$off" -86400 5
systemctl stop tor@default.service
date -s "@$(python3 -c 'import time; print("%.3f" % (time.time() - float("'"$off"'")))')" > /dev/null
# --- sdwdate with tor INSIDE the guest: Debian's tor@default (its control socket and cookie,
# group debian-tor) and then sdwdate's own arti, each a client of the private network (every
# node's port forwarded to the host; 127.0.0.1:PORT, where the consensus puts the nodes, is
# redirected there). The guest's clock -30 d, -1 d, +1 d, +1 y at "boot" (tor restarted with
# its cache, sdwdate's run directory emptied), and 6 h behind across a suspend.
. /root/tornet.env
PORTS=${PORTS:-}; TORRC=${TORRC:-}; ARTI=${ARTI:-}
sysctl -q -w net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.uplink.route_localnet=1
nft -f - <<NFT
table ip tornet_forward {
	chain out { type nat hook output priority -100; ip daddr 127.0.0.1 tcp dport { $(echo "$PORTS" | tr ' ' ',') } dnat to 10.0.2.100; }
	chain post { type nat hook postrouting priority 100; oifname "uplink" ip daddr 10.0.2.100 masquerade; }
}
NFT
# (A forward accepts any connection; an answer from the far side is what proves it.)
check "sdwdate (inside): each of the network's 6 DirPorts answers at 127.0.0.1:PORT in the guest" python3 -c '
import socket, sys
ports = sys.argv[1].split()[1::2]
assert len(ports) == 6, ports
for p in ports:
    s = socket.create_connection(("127.0.0.1", int(p)), timeout=10)
    s.settimeout(30)
    s.sendall(b"GET /tor/status-vote/current/consensus-microdesc HTTP/1.0\r\n\r\n")
    first = s.makefile("rb").readline()
    assert first.startswith(b"HTTP/1.0 200"), (p, first)' "$PORTS"
cp /etc/tor/torrc /root/torrc.saved
python3 -c 'import sys; open("/etc/tor/torrc", "w").write(bytes.fromhex(sys.argv[1]).decode())' "$TORRC"
python3 -c 'import sys; open("/etc/sdwdate.d/tornet-arti.toml", "w").write(bytes.fromhex(sys.argv[1]).decode())' "$ARTI"
rm -rf /etc/systemd/system/sdwdate.service.d; systemctl daemon-reload
# inside_conf TRANSPORT: the honest sources through the guest's own tor or arti.
inside_conf() {
	set -- "$1" $HONEST
	[ $# = 4 ] || set -- "$1" "" "" ""
	cat > /etc/sdwdate.d/50_test.conf <<CONF
TRANSPORT=$1
PROXY_IP=127.0.0.1
PROXY_PORT=9050
CONTROL_PORT=auto
ARTI_CONFIG=/etc/sdwdate.d/tornet-arti.toml
SDWDATE_POOL_ZERO=(
    "$2"
)
SDWDATE_POOL_ONE=(
    "$3"
)
SDWDATE_POOL_TWO=(
    "$4"
)
CONF
}
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# skew SECONDS: the clock SECONDS off the host's.
skew() {
	o=$(offset)
	date -s "@$(python3 -c 'import sys, time; print("%.3f" % (time.time() - float(sys.argv[1]) + float(sys.argv[2])))' "$o" "$1")" > /dev/null
}
# logged MARK PATTERN: the unit's journal since MARK has PATTERN.
logged() { since "$1" | grep -q "$2"; }
# boot_skewed TRANSPORT SECONDS NAME: sdwdate (and tor for socks) stopped, the clock SECONDS
# off, started again as at boot; up to 420 s for the first success.
boot_skewed() {
	systemctl stop sdwdate.service tor@default.service
	rm -f /run/sdwdate/*
	skew "$2"
	floor=$(cat /var/lib/sdwdate/time-replay-protection-utc-unixtime 2>/dev/null || echo 0)
	m=$(mark); t0=$(uptime_s)
	[ "$1" = socks ] && systemctl start tor@default.service
	systemctl start sdwdate.service
	i=0; while [ ! -e /run/sdwdate/first_success ] && [ $i -lt 420 ]; do sleep 1; i=$((i + 1)); done
	took=$(python3 -c "print('%.0f' % ($(uptime_s) - $t0))")
	o=$(offset)
	info "sdwdate ($1 inside): $3: first success after $took s, offset $o s"
	check "sdwdate ($1 inside): $3 at boot: within 2 s of the host's after $took s (offset $o s)" within "$o" 0 2 || { diag sdwdate.service; diag tor@default.service; }
	check "sdwdate ($1 inside): ... never below the replay floor ($floor), which is now the sources' time" \
		python3 -c "import sys, time; r = int(open('/var/lib/sdwdate/time-replay-protection-utc-unixtime').read()); sys.exit(not ($floor <= r <= time.time() + 5))"
}
inside_conf socks
boot_skewed socks -2592000 "a month behind"
check "sdwdate (socks inside): ... stepped into the consensus window of the guest's own tor first" logged "$m" 'it was before Tor.s consensus valid-after'
check "sdwdate (socks inside): ... through tor's control socket and its SocksPort (checked against it)" logged "$m" 'unix:/run/tor/control'
boot_skewed socks -86400 "a day behind"
boot_skewed socks 86400 "a day ahead"
# A clock left 6 hours behind (a paused VM), then a suspend: the resume does not explain 6 h,
# the consensus window does (forward into it), and the sources' time follows. The suspend is
# the kernel's own test suspend (pm_test=core: every step but the platform's, 5 s asleep,
# then it resumes by itself), so BOOTTIME gains 5 s on MONOTONIC as after a real one.
suspended_behind() { # TRANSPORT: sdwdate running after a success
	skew -21600
	m=$(mark)
	echo core > /sys/power/pm_test && echo mem > /sys/power/state
	info "sdwdate ($1 inside): test suspend: pm_test=$(cat /sys/power/pm_test), states: $(cat /sys/power/state)"
	echo none > /sys/power/pm_test
	t0=$(uptime_s)
	i=0; while ! within "$(offset)" 0 2 > /dev/null 2>&1 && [ $i -lt 300 ]; do sleep 2; i=$((i + 2)); done
	took=$(python3 -c "print('%.0f' % ($(uptime_s) - $t0))")
	o=$(offset)
	check "sdwdate ($1 inside): a suspend seen (the round after it at once)" logged "$m" 'the machine was suspended for' || diag sdwdate.service
	check "sdwdate ($1 inside): 6 h behind across a suspend: within 2 s after $took s (offset $o s)" within "$o" 0 2
	check "sdwdate ($1 inside): ... forward into the consensus window, not as a resume step" logged "$m" 'it was before Tor.s consensus valid-after'
}
suspended_behind socks
# A year ahead with the local tor: its relays' certificates look expired, it fetches no
# consensus, so there is no window and no time: the round fails, the clock is not moved.
mkdir -p /etc/systemd/system/sdwdate.service.d
printf '[Service]\nExecStart=\nExecStart=/usr/bin/sdwdate --consensus-wait 30 --timeout 30\n' > /etc/systemd/system/sdwdate.service.d/50-test.conf
systemctl daemon-reload
systemctl stop sdwdate.service tor@default.service
skew 31536000
rm -f /run/sdwdate/*; m=$(mark)
systemctl start tor@default.service; round fail keep
o=$(offset)
check "sdwdate (socks inside): a year ahead: no consensus from the local tor, the round fails" sh -c "test -e /run/sdwdate/fail && journalctl -b -u sdwdate --no-pager -o cat | tail -n +$((m + 1)) | grep -q 'no Tor consensus window'" || diag sdwdate.service
check "sdwdate (socks inside): ... and the clock was not moved (offset $o s)" within "$o" 31536000 10
systemctl stop sdwdate.service tor@default.service
inside_conf arti
round fail
o=$(offset)
check "sdwdate (arti): a year ahead: arti does not bootstrap, the round fails" sh -c "test -e /run/sdwdate/fail" || diag sdwdate.service
check "sdwdate (arti): ... and the clock was not moved (offset $o s)" within "$o" 31536000 10
rm -rf /etc/systemd/system/sdwdate.service.d; systemctl daemon-reload
skew 0
boot_skewed arti -2592000 "a month behind"
check "sdwdate (arti): ... stepped into the consensus window of its own arti first" logged "$m" 'it was before Tor.s consensus valid-after'
boot_skewed arti -86400 "a day behind"
boot_skewed arti 86400 "a day ahead"
check "sdwdate (arti): the daemon is sdwdate-arti, exec'd by the packaged sdwdate" logged "$m" 'transport arti'
suspended_behind arti
systemctl stop sdwdate.service
skew 0
nft delete table ip tornet_forward
sysctl -q -w net.ipv4.conf.all.route_localnet=0 net.ipv4.conf.uplink.route_localnet=0
mv /root/torrc.saved /etc/tor/torrc
rm -f /etc/sdwdate.d/tornet-arti.toml
conf "$HONEST" auto
check "sdwdate: no automatic restarts" equals "$(systemctl show -p NRestarts --value sdwdate.service)" 0
score sdwdate.service 2.0
journal_clean sdwdate.service
# Root's dry run beside the daemon: nothing written into the daemon's directories, so
# nothing there is root's. (Not arti: it would reach for the real Tor network.)
# (Without JOURNAL_STREAM: the log goes to stderr, not to the journal of the runner's unit.)
dry=$(env -u JOURNAL_STREAM sdwdate --once --dry-run --timeout 5 --consensus-wait 3 2>&1)
check "sdwdate: root's dry run beside the daemon says it writes nothing there" sh -c 'echo "$1" | grep -q "dry run: nothing written"' _ "$dry"
check "sdwdate: root's dry run left no root-owned file in /run/sdwdate and /var/lib/sdwdate" \
	equals "$(find /run/sdwdate /var/lib/sdwdate -user root | tr '\n' ' ')" ""
# Stopped, with files that say it synced this boot: never "synced" again.
systemctl start sdwdate.service; sleep 2
check "sdwdate: running: /run/sdwdate/pid is its main pid" equals "$(cat /run/sdwdate/pid 2>&1)" "$(systemctl show -p MainPID --value sdwdate.service)"
systemctl stop sdwdate.service
touch /run/sdwdate/first_success /run/sdwdate/success
timesync-check > /dev/null 2>&1; rc=$?
check "sdwdate: stopped: timesync-check says stopped (4), not synced" equals "$rc" 4
check "sdwdate: ... the status says so (the unit's stop hook)" grep -q '"message": "Not running' /run/sdwdate/status
check "sdwdate: ... and the pid file is gone" test ! -e /run/sdwdate/pid
# Killed (a crash): the stop hook runs after any exit.
systemctl start sdwdate.service; sleep 2
systemctl kill -s KILL sdwdate.service; sleep 2
timesync-check > /dev/null 2>&1; rc=$?
check "sdwdate: killed: timesync-check says stopped (4)" equals "$rc" 4
check "sdwdate: ... the status says it crashed" grep -q 'crashed (signal KILL)' /run/sdwdate/status || diag sdwdate.service
systemctl stop sdwdate.service; systemctl reset-failed sdwdate.service
# A bad line in the configuration: exit 78, no restart loop, file and line where users look.
printf 'NO_SUCH_KEY=1\n' > /etc/sdwdate.d/60_typo.conf
systemctl start sdwdate.service 2> /dev/null || true
sleep 12
check "sdwdate: a bad config line exits 78" equals "$(systemctl show -p ExecMainStatus --value sdwdate.service)" 78
check "sdwdate: ... the unit is failed, not restarted (after 12 s, RestartSec=10s)" equals "$(systemctl is-active sdwdate.service)" failed
check "sdwdate: ... the status file names file and line (sdwdate-gui)" grep -q '60_typo.conf:1' /run/sdwdate/status || diag sdwdate.service
check "sdwdate: ... and so does the journal" sh -c "journalctl -b -u sdwdate.service --no-pager -o cat | grep -q '60_typo.conf:1: unknown key'"
rm /etc/sdwdate.d/60_typo.conf; systemctl reset-failed sdwdate.service
check "sdwdate: disable --now" systemctl disable --now sdwdate.service
rm -f /etc/sdwdate.d/50_test.conf /etc/sdwdate.d/tornet.cookie
mv /root/30_default.conf.saved /etc/sdwdate.d/30_default.conf
rm -rf /etc/systemd/system/sdwdate.service.d
systemctl daemon-reload
purge_clean sdwdate /var/lib/sdwdate /run/sdwdate /etc/systemd/system/multi-user.target.wants/sdwdate.service /etc/systemd/system/sdwdate.service.wants
purge_clean timesync-check
ip link set uplink down

# --- kloak: enabled and started by the package; restarted after a crash.
install_alone kloak
wait_active kloak.service
check "kloak: enabled by the package" enabled kloak.service
check "kloak: active" active kloak.service
check "kloak: typed text reaches a reader of the twin intact (uinput test keyboard)" python3 /root/typist.py type
check "kloak: the twin keeps the keyboard's name, and Caps Lock's LED set on it reaches the real keyboard" python3 /root/typist.py led
python3 /root/typist.py hold > /tmp/hold.out 2>&1 & hold=$!
i=0; while ! grep -q held /tmp/hold.out && [ $i -lt 30 ]; do sleep 0.5; i=$((i + 1)); done
systemctl kill -s KILL kloak.service; sleep 4
# The key is still held on the test keyboard: the restarted kloak does not grab it until the
# key is up (or 10 s have passed), and is READY (active) only then.
check "kloak: restarted after SIGKILL (with a key held)" sh -c 'case $(systemctl is-active kloak.service) in active|activating) true;; *) false;; esac'
check "kloak: ... and waits for the held key before it grabs" sh -c 'journalctl -b -u kloak.service --no-pager -o cat | grep -q "key(s) held; grabbing once they are released"'
check "kloak: one restart counted" equals "$(systemctl show -p NRestarts --value kloak.service)" 1
check "kloak: no key left down after SIGKILL" equals "$(python3 /root/typist.py keys-down)" 0
kill $hold 2>/dev/null; wait $hold 2>/dev/null
wait_active kloak.service
check "kloak: active again" active kloak.service
python3 /root/typist.py escape
sleep 2
check "kloak: the escape combination ends it and it stays ended" active kloak.service inactive
check "kloak: ... without another restart" equals "$(systemctl show -p NRestarts --value kloak.service)" 1
score kloak.service 2.0
journal_clean kloak.service
check "kloak: disable" systemctl disable kloak.service
purge_clean kloak /etc/systemd/system/multi-user.target.wants/kloak.service

# --- anon-firewall: never enabled by the package; enabled on purpose it loads the rules;
# nftables.service cannot flush them; a bad file means lockdown with the reason in the journal.
install_alone anon-firewall
check "anon-firewall: not enabled by the package" enabled anon-firewall.service disabled
check "anon-firewall: not started by the package" active anon-firewall.service inactive
check "anon-firewall: no rules loaded by the package" sh -c '! nft list table inet anon_firewall'
printf 'role = "workstation"\n' > /etc/anon-firewall.d/50_user.toml
check "anon-firewall: enable --now" systemctl enable --now anon-firewall.service
check "anon-firewall: active" active anon-firewall.service || diag anon-firewall.service
check "anon-firewall: enabling it enabled its path unit (Also=)" enabled anon-firewall-timesync.path
check "anon-firewall: its table is loaded" nft list table inet anon_firewall
check "anon-firewall: status says loaded" anon-firewall status
# Rules that another tool removes are noticed (status exit 5, naming what is missing) and
# loaded again by anon-firewall-check.timer within a minute.
check "anon-firewall: enabling it enabled its check timer (Also=)" enabled anon-firewall-check.timer
check "anon-firewall: ... which runs" active anon-firewall-check.timer || diag anon-firewall-check.timer
check "anon-firewall: check-config as root ran nft's check mode" sh -c 'anon-firewall check-config | grep -q "nft accepted the ruleset"'
check "anon-firewall: check-config as nobody skips nft's check, saying so, exit 0" sh -c \
	'setpriv --reuid=65534 --regid=65534 --clear-groups anon-firewall check-config 2>&1 | grep -q "check skipped"'
check "anon-firewall: status as nobody cannot tell (exit 4), never 'not loaded'" sh -c \
	'setpriv --reuid=65534 --regid=65534 --clear-groups anon-firewall status > /tmp/st.out; [ $? = 4 ] && grep -q "loaded: unknown" /tmp/st.out'
nft delete table inet anon_firewall
check "anon-firewall: a table deleted by hand: status exits 5 and says it is missing" sh -c \
	'anon-firewall status > /tmp/st.out; [ $? = 5 ] && grep -q "anon_firewall is missing" /tmp/st.out'
i=0; while ! anon-firewall status >/dev/null 2>&1 && [ $i -lt 70 ]; do sleep 1; i=$((i + 1)); done
check "anon-firewall: ... the check timer loaded it again ($i s)" anon-firewall status || diag anon-firewall-check.service
check "anon-firewall: ... and anon-firewall-check.service says what it found" sh -c \
	'journalctl -b -u anon-firewall-check.service --no-pager | grep -q "the rules had changed: table inet anon_firewall is missing"'
nft 'flush chain inet anon_firewall output; chain inet anon_firewall input { policy accept; }'
check "anon-firewall: a chain flushed and a policy opened: status exits 5" sh -c \
	'anon-firewall status > /tmp/st.out; [ $? = 5 ] && grep -q "policy is accept" /tmp/st.out && grep -q "chain output: 0 rules" /tmp/st.out'
i=0; while ! anon-firewall status >/dev/null 2>&1 && [ $i -lt 70 ]; do sleep 1; i=$((i + 1)); done
check "anon-firewall: ... loaded again by the timer ($i s)" anon-firewall status || diag anon-firewall-check.service
journal_clean anon-firewall-check.service
score anon-firewall-check.service 5.0
# The rest of this section deletes the table on purpose: the timer must not race it.
systemctl mask --runtime --now anon-firewall-check.timer
systemctl start nftables.service
check "anon-firewall: nftables.service start is skipped while anon-firewall is enabled" active nftables.service inactive
check "anon-firewall: ... and the table survives it" nft list table inet anon_firewall
systemctl restart nftables.service; systemctl stop nftables.service
check "anon-firewall: the table survives nftables restart and stop" nft list table inet anon_firewall
echo 'allow_incomming_ssh = true' > /etc/anon-firewall.d/60_typo.toml
systemctl restart anon-firewall.service
check "anon-firewall: a bad file fails the unit" active anon-firewall.service failed
check "anon-firewall: ... and leaves lockdown" sh -c 'cat /run/anon-firewall/state | grep -qx lockdown'
check "anon-firewall: ... and the journal says why" sh -c 'journalctl -b -u anon-firewall --no-pager | grep -q "60_typo.toml:1"'
# ... and no network manager brings an interface up while anon-firewall is failed (ifupdown's
# networking.service with a dummy interface; systemd-networkd), until it is fixed.
cat > /etc/network/interfaces.d/anon-test <<'IF'
auto anontest0
iface anontest0 inet manual
	pre-up ip link add anontest0 type dummy
	up ip link set anontest0 up
	post-down ip link del anontest0
IF
systemctl stop networking.service; ip link del anontest0 2>/dev/null
check "anon-firewall: ... networking.service refuses to start" sh -c '! systemctl restart networking.service'
check "anon-firewall: ... the interface stays down (absent)" sh -c '! ip link show anontest0'
check "anon-firewall: ... networking's journal says why" sh -c 'journalctl -b -u networking --no-pager | grep -q "anon-firewall is in use but not active"'
check "anon-firewall: ... systemd-networkd refuses to start too" sh -c '! systemctl start systemd-networkd.service'
rm /etc/anon-firewall.d/60_typo.toml
systemctl reset-failed anon-firewall.service networking.service systemd-networkd.service
check "anon-firewall: fixed, it applies again" systemctl restart anon-firewall.service
check "anon-firewall: ... and networking.service brings the interface up" sh -c 'systemctl restart networking.service && ip link show anontest0 | grep -q ",UP"'
systemctl stop networking.service; rm /etc/network/interfaces.d/anon-test; ip link del anontest0 2>/dev/null
# The unit's sandbox cannot be set up (a path in ReadWritePaths= that does not exist): apply
# never runs, and neither does its `+` stop hook (systemd 252 fails it at step NAMESPACE too,
# found here); the OnFailure= unit, which has no sandbox, must still lock down.
mkdir -p /etc/systemd/system/anon-firewall.service.d
printf '[Service]\nReadWritePaths=/nonexistent-anon-test\n' > /etc/systemd/system/anon-firewall.service.d/broken.conf
systemctl daemon-reload; nft delete table inet anon_firewall
systemctl restart anon-firewall.service
check "anon-firewall: sandbox set-up fails: the unit fails" active anon-firewall.service failed
# OnFailure= starts the lockdown unit after the failure is reported: wait for it to finish
# (the table first, the state after it).
i=0; while ! { grep -qx lockdown /run/anon-firewall/state 2>/dev/null && nft list table inet anon_firewall >/dev/null 2>&1; } && [ $i -lt 40 ]; do sleep 0.5; i=$((i + 1)); done
check "anon-firewall: ... and anon-firewall-lockdown.service (OnFailure=) loaded lockdown" sh -c 'grep -qx lockdown /run/anon-firewall/state && nft list table inet anon_firewall >/dev/null' || diag anon-firewall-lockdown.service
check "anon-firewall: ... failed.status says why" grep -q 'ended with result' /run/anon-firewall/failed.status
rm /etc/systemd/system/anon-firewall.service.d/broken.conf; systemctl daemon-reload; systemctl reset-failed anon-firewall.service
check "anon-firewall: repaired, it applies again" systemctl restart anon-firewall.service
# Workstation in timesync-fail-closed mode, probed for real: a "gateway" network namespace
# (10.152.152.10, listeners on 9108 and 9050) behind a veth; before sdwdate's first success only
# 9108 is reachable, and when /run/sdwdate/first_success appears the path unit reloads to full.
ip netns add gw
ip link add eth0 type veth peer name gweth netns gw
ip addr add 10.152.152.11/18 dev eth0; ip link set eth0 up
ip -n gw addr add 10.152.152.10/18 dev gweth; ip -n gw link set gweth up; ip -n gw link set lo up
ip netns exec gw python3 -c '
import selectors, socket
sel = selectors.DefaultSelector()
for port in (9108, 9050):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.152.152.10", port)); s.listen(16); sel.register(s, selectors.EVENT_READ)
for _ in range(200):
    for key, _ in sel.select(timeout=120):
        c, _ = key.fileobj.accept(); c.close()
' & listener=$!
sleep 2
probe() { # PORT [USER] -> open | refused | timeout, connecting as USER (default root)
	u=$(id -u "${2:-root}")
	setpriv --reuid="$u" --regid="$u" --clear-groups python3 -c '
import socket, sys
s = socket.socket(); s.settimeout(3)
try:
    s.connect(("10.152.152.10", int(sys.argv[1]))); print("open")
except socket.timeout:
    print("timeout")
except OSError:
    print("refused")' "$1"
}
nft delete table inet anon_firewall
check "anon-firewall: without rules the probe reaches both gateway ports (so it can see a block)" \
	equals "$(probe 9108)$(probe 9050)" openopen
printf 'role = "workstation"\nmode = "timesync-fail-closed"\n' > /etc/anon-firewall.d/50_user.toml
rm -rf /run/sdwdate
check "anon-firewall: timesync-fail-closed applies" systemctl restart anon-firewall.service
# (User sdwdate is left from the sdwdate package above: a purge keeps system users.)
check "anon-firewall: before sdwdate's first success the gateway's 9108 is reachable for user sdwdate" equals "$(probe 9108 sdwdate)" open
check "anon-firewall: ... and not for root or another user" equals "$(probe 9108 root)$(probe 9108 nobody)" refusedrefused
check "anon-firewall: ... and the gateway's 9050 not even for sdwdate" equals "$(probe 9050 sdwdate)" refused
mkdir -p /run/sdwdate; touch /run/sdwdate/first_success
i=0; while [ "$(probe 9050)" != open ] && [ $i -lt 20 ]; do sleep 1; i=$((i + 1)); done
check "anon-firewall: after first_success the path unit reloaded to full (9050 reachable after $i s)" equals "$(probe 9050)" open
check "anon-firewall: ... by anon-firewall-timesync.service" sh -c 'journalctl -b -u anon-firewall-timesync.service --no-pager | grep -q "mode full"'
sleep 5
runs=$(journalctl -b -u anon-firewall-timesync.service --no-pager -o cat | grep -c '^Starting anon-firewall-timesync.service')
pstate=$(systemctl is-active anon-firewall-timesync.path); sstate=$(systemctl is-active anon-firewall-timesync.service)
check "anon-firewall: ... once, not in a loop (ran $runs time(s); path unit $pstate, service $sstate)" \
	equals "$runs $pstate $sstate" "1 active active" || diag anon-firewall-timesync.service
kill $listener 2>/dev/null; ip netns del gw; rm -rf /run/sdwdate
printf 'role = "workstation"\n' > /etc/anon-firewall.d/50_user.toml
# Gateway role from upstream's marker file, with Debian's tor user: only debian-tor gets out.
mkdir -p /usr/share/anon-gw-base-files; touch /usr/share/anon-gw-base-files/gateway
rm -f /etc/anon-firewall.d/50_user.toml
check "anon-firewall: gateway role (marker file) applies with Debian's tor user" systemctl restart anon-firewall.service
tor_uid=$(id -u debian-tor)
check "anon-firewall: ... and lets only debian-tor's uid out" sh -c \
	"nft list table inet anon_firewall | grep -Eq 'skuid (debian-tor|$tor_uid)'"
rm -rf /usr/share/anon-gw-base-files
printf 'role = "workstation"\n' > /etc/anon-firewall.d/50_user.toml
score anon-firewall.service 5.0
journal_clean anon-firewall.service
systemctl unmask --runtime anon-firewall-check.timer
check "anon-firewall: disable --now" systemctl disable --now anon-firewall.service
check "anon-firewall: ... disabled its check timer too (Also=)" enabled anon-firewall-check.timer disabled
rm -f /etc/anon-firewall.d/50_user.toml
purge_clean anon-firewall /run/anon-firewall /etc/systemd/system/sysinit.target.wants/anon-firewall.service \
	/etc/systemd/system/anon-firewall.service.wants/anon-firewall-timesync.path \
	/etc/systemd/system/anon-firewall.service.wants/anon-firewall-check.timer
check "anon-firewall: purge deleted its table" sh -c '! nft list table inet anon_firewall'

# --- tirdad-dkms on Debian's stock kernel (its headers and Debian's rustc installed, no
# CONFIG_RUST): DKMS builds the Rust logic with rustc beside the C shim, the package loads the
# module, it replaces ISNs and leaktest sees it working; modules-load.d loads it again.
install_alone tirdad-dkms
kver=$(uname -r)
check "tirdad-dkms: DKMS built and installed tirdad for $kver" sh -c "dkms status tirdad | grep -q '$kver.*installed'"
check "tirdad-dkms: ... its logic compiled by Debian's rustc" sh -c "find /var/lib/dkms/tirdad -name make.log -exec grep -l 'RUSTC.*tirdad_isn.o' {} + | grep -q . && dpkg -S /usr/bin/rustc | grep -q rustc"
check "tirdad-dkms: the package loaded it into the running kernel" grep -q '^tirdad ' /proc/modules
r0=$(cat /sys/module/tirdad/parameters/replaced)
python3 -c '
import socket
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(64)
for _ in range(20):
    c = socket.create_connection(l.getsockname()); a, _ = l.accept(); c.close(); a.close()
'
r1=$(cat /sys/module/tirdad/parameters/replaced)
check "tirdad: 20 loopback connections, 40 ISNs replaced (SYN and SYN-ACK; $r0 -> $r1)" sh -c "[ $((r1 - r0)) -ge 40 ]"
check "tirdad: none missed" equals "$(cat /sys/module/tirdad/parameters/missed)" 0
install_alone leaktest
leaktest --only host --json > /tmp/leaktest.json 2>/dev/null
check "leaktest: sees tirdad loaded and keeping up with the TCP opens" equals "$(verdict 'tirdad loaded')" PASS
purge_clean leaktest
check "tirdad-dkms: ordered before LKRG (softdep)" sh -c 'modprobe -c | grep -qx "softdep lkrg pre: tirdad"'
check "tirdad-dkms: rmmod" rmmod tirdad
check "tirdad-dkms: systemd-modules-load loads it again (as at boot)" sh -c 'systemctl restart systemd-modules-load.service && grep -q "^tirdad " /proc/modules'
check "tirdad-dkms: rmmod again" rmmod tirdad
purge_clean tirdad-dkms /var/lib/dkms/tirdad /usr/src/tirdad-0.1.0 "/lib/modules/$kver/updates/dkms/tirdad.ko" "/lib/modules/$kver/updates/dkms/tirdad.ko.xz"

# --- The autopkgtests (debian/tests), run as autopkgtest would: all packages installed.
all=""; for p in anon-firewall sdwdate kloak timesync-check leaktest; do all="$all $(deb $p)"; done
# shellcheck disable=SC2086
check "all packages: apt install together" apt-get install -y --no-install-recommends $all
for t in $(sed -n 's/^Tests: *//p' /root/autopkgtest/control); do
	check "autopkgtest $t" env AUTOPKGTEST_TMP="$(mktemp -d)" sh "/root/autopkgtest/$t"
done
check "all packages: apt purge together" apt-get purge -y anon-firewall sdwdate kloak timesync-check leaktest

# For the second boot: anon-firewall installed and enabled with a bad file, an ifupdown
# interface to bring up at boot; the files changed since the mark go to the scratch disk.
touch /root/phase1.mark; sleep 1
check "second boot prepared: anon-firewall installed" apt-get install -y --no-install-recommends "$(deb anon-firewall)"
check "second boot prepared: anon-firewall enabled" systemctl enable anon-firewall.service
mkdir -p /usr/share/anon-gw-base-files; touch /usr/share/anon-gw-base-files/gateway
echo 'allow_incomming_ssh = true' > /etc/anon-firewall.d/60_typo.toml
cat > /etc/network/interfaces.d/anon-test <<'IF'
auto anontest0
iface anontest0 inet manual
	pre-up ip link add anontest0 type dummy
	up ip link set anontest0 up
IF
touch /root/phase2
check "second boot prepared: the changes written to /dev/vda" sh -c \
	'cd / && find . -xdev \( -path ./tmp -o -path ./var/tmp -o -path ./var/cache -o -path ./var/lib/apt/lists -o -path ./proc -o -path ./sys -o -path ./dev -o -path ./run \) -prune -o -cnewer /root/phase1.mark -print | cpio -o -H newc --quiet > /dev/vda && sync'
echo "SYSTEM-EXIT $FAILED"
