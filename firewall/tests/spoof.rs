//! Root on the workstation sends with any source address (issue 26, part 1). It names an
//! internet host as the source of packets to the gateway; whatever the gateway answers, if it
//! is routed out of the uplink, tells that host the gateway's real address. A capture in the
//! internet namespace counts every packet that arrives addressed to the spoofed address: with
//! our rules it must be 0, whatever the rp_filter sysctls say (Debian's loose 2, or 0), in
//! full and in timesync-fail-closed mode, with Tor's ports served by the Tor user and with no
//! listener at all (the kernel's own resets and ICMP errors). Without rules the same probes
//! must be counted, and an honest workstation must still be answered, so the test fails
//! both ways.

mod common;
use common::*;

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::process::Child;

use socket2::{Domain, Socket, Type};

/// The internet host whose address the workstation's root forges (INTERNET_IP, INTERNET_IP6).
const SPOOFED: Ipv4Addr = INTERNET_IP;
const SPOOFED6: Ipv6Addr = INTERNET_IP6;
/// An address beyond the uplink (TransPort path) and an on-link uplink host (forward path).
const REMOTE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const ONLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 5);
const ONLINK6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 5);
/// Tor's ports on the gateway the listeners stand in for.
const TCP_PORTS: [u16; 3] = [9050, 9108, 9040];
const DNS_PORT: u16 = 5300;

/// The counter in the internet namespace: every packet that arrives on its link to the
/// gateway addressed to the spoofed addresses, but neighbour discovery (the gateway looking
/// up the address is not an answer).
fn install_answer_counter(t: &Topology) {
    t.internet
        .nft(&format!(
            "table inet spoofwatch {{
               counter answers {{ }}
               chain pre {{
                 type filter hook prerouting priority -400; policy accept;
                 iifname != \"up0\" return
                 icmpv6 type {{ nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert,
                               mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report }} return
                 ip daddr {SPOOFED} counter name answers
                 ip6 daddr {SPOOFED6} counter name answers
                 ip daddr {SPOOFED} counter
                 ip6 daddr {SPOOFED6} counter
                 ip daddr {SPOOFED} meta l4proto tcp counter
                 ip daddr {SPOOFED} meta l4proto udp counter
                 ip daddr {SPOOFED} meta l4proto icmp counter
                 ip6 daddr {SPOOFED6} meta l4proto tcp counter
                 ip6 daddr {SPOOFED6} meta l4proto udp counter
                 ip6 daddr {SPOOFED6} meta l4proto ipv6-icmp counter
               }}
             }}"
        ))
        .expect("answer counter");
}

/// The counters by family and protocol, for a failure message.
fn answer_details(t: &Topology) -> String {
    t.internet
        .exec(&["nft", "list", "table", "inet", "spoofwatch"])
        .unwrap_or_else(|e| e.to_string())
}

fn answers(t: &Topology) -> u64 {
    let out = t
        .internet
        .exec(&["nft", "list", "counter", "inet", "spoofwatch", "answers"])
        .expect("list counter");
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the counter: {out}"))
}

fn reset_answers(t: &Topology) {
    t.internet
        .exec(&["nft", "reset", "counters", "table", "inet", "spoofwatch"])
        .expect("reset counters");
    t.internet
        .exec(&["nft", "reset", "counter", "inet", "spoofwatch", "answers"])
        .expect("reset counter");
}

/// Tor's listeners, run as the Tor user (a copy of this test binary, so that the uid can read
/// it, started with `--ignored --exact tor_user_listeners`): TCP on [`TCP_PORTS`] accepting
/// and holding connections, UDP on [`DNS_PORT`] answering every datagram, IPv4 and IPv6.
struct TorListeners {
    child: Child,
    _dir: TempDir,
}

impl TorListeners {
    fn start(ns: &Netns) -> TorListeners {
        let dir = TempDir::new("afw-spoof-bin").expect("tmp");
        let exe = dir.path().join("listeners");
        std::fs::copy(std::env::current_exe().expect("exe"), &exe).expect("copy test binary");
        for p in [dir.path(), exe.as_path()] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let mut child = ns
            .command("setpriv")
            .args([
                &format!("--reuid={TOR_UID}"),
                &format!("--regid={TOR_UID}"),
                "--clear-groups",
            ])
            .arg(&exe)
            .args(["--ignored", "--exact", "tor_user_listeners", "--nocapture"])
            .env("AFW_TOR_LISTENERS", "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start listeners");
        // Up once it says so (after binding every port), whatever the rules let through.
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut line = String::new();
            while stdout.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line.contains("listeners ready") {
                    let _ = tx.send(());
                }
                line.clear();
            }
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(30)).is_ok(),
            "the Tor user's listeners did not come up"
        );
        TorListeners { child, _dir: dir }
    }
}

impl Drop for TorListeners {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Not a test on its own: the body of [`TorListeners`], run as the Tor user in the gateway's
/// namespace. Bounded: it ends after a minute even if nobody kills it.
#[test]
#[ignore = "run by the spoofing tests as the Tor user"]
fn tor_user_listeners() {
    if std::env::var_os("AFW_TOR_LISTENERS").is_none() {
        return;
    }
    assert_ne!(nix::unistd::geteuid().as_raw(), 0, "must not run as root");
    let listeners: Vec<TcpListener> = TCP_PORTS
        .iter()
        .map(|p| TcpListener::bind(sa(Ipv6Addr::UNSPECIFIED, *p)).expect("tcp listen"))
        .collect();
    let mut held = Vec::new();
    for l in &listeners {
        l.set_nonblocking(true).expect("nonblocking");
    }
    let udp = UdpSocket::bind(sa(Ipv6Addr::UNSPECIFIED, DNS_PORT)).expect("udp bind");
    udp.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    println!("listeners ready");
    let end = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 512];
    while Instant::now() < end {
        for l in &listeners {
            while let Ok((s, _)) = l.accept() {
                held.push(s);
            }
        }
        if let Ok((_, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(b"answer", from);
        }
    }
}

/// Sockets the workstation's root opens with the spoofed source addresses, kept open so that
/// the kernel keeps retransmitting SYNs while the capture counts.
struct Forged(#[allow(dead_code)] Vec<Socket>);

/// From the workstation, with the internet host's addresses as source (each probe from its
/// own source port, `base` + k): UDP to the gateway's 53 and 5300 and to a remote 53, TCP to
/// the Tor ports and to a remote address (the TransPort path), TCP and UDP to an on-link
/// uplink host (the forward path), and the same over IPv6 to the gateway's internal address.
fn forge(ws: &Netns, base: u16) -> Forged {
    let gw6 = anon_netns::GATEWAY_IP6;
    let mut udp: Vec<SocketAddr> = vec![
        sa(GATEWAY_IP, 53),
        sa(GATEWAY_IP, DNS_PORT),
        sa(REMOTE, 53),
        sa(ONLINK, 9999),
        sa(gw6, 53),
        sa(gw6, DNS_PORT),
        sa(ONLINK6, 9999),
    ];
    let mut tcp: Vec<SocketAddr> = TCP_PORTS.iter().map(|p| sa(GATEWAY_IP, *p)).collect();
    tcp.extend([sa(REMOTE, 80), sa(ONLINK, 80)]);
    tcp.extend(TCP_PORTS.iter().map(|p| sa(gw6, *p)));
    tcp.push(sa(ONLINK6, 80));
    let mut port = base;
    let mut next = || {
        port += 1;
        port
    };
    let mut out = Vec::new();
    ws.enter(|| {
        for to in udp.drain(..) {
            let from = spoofed_source(&to, next());
            let s = Socket::new(Domain::for_address(to), Type::DGRAM, None).expect("udp");
            s.bind(&from.into()).expect("bind the spoofed source");
            let _ = s.send_to(b"who?", &to.into());
            out.push(s);
        }
        for to in tcp.drain(..) {
            let from = spoofed_source(&to, next());
            let s = Socket::new(Domain::for_address(to), Type::STREAM, None).expect("tcp");
            s.set_nonblocking(true).expect("nonblocking");
            s.bind(&from.into()).expect("bind the spoofed source");
            let _ = s.connect(&to.into()); // EINPROGRESS: the SYN is on its way
            out.push(s);
        }
    })
    .expect("enter the workstation");
    Forged(out)
}

fn spoofed_source(to: &SocketAddr, port: u16) -> SocketAddr {
    if to.is_ipv4() {
        sa(SPOOFED, port)
    } else {
        sa(SPOOFED6, port)
    }
}

/// The workstation's root takes the internet host's addresses. It runs no firewall: it is the
/// attacker.
fn arm_the_workstation(t: &Topology) {
    t.workstation
        .ip(&["addr", "add", &format!("{SPOOFED}/32"), "dev", "eth0"])
        .expect("spoofed v4");
    t.workstation
        .ip(&[
            "-6",
            "addr",
            "add",
            &format!("{SPOOFED6}/128"),
            "dev",
            "eth0",
            "nodad",
        ])
        .expect("spoofed v6");
    // The on-link uplink host, answering for itself.
    t.internet
        .ip(&["addr", "add", "198.51.100.5/24", "dev", "up0"])
        .expect("on-link v4");
    t.internet
        .ip(&[
            "-6",
            "addr",
            "add",
            "2001:db8:1::5/64",
            "dev",
            "up0",
            "nodad",
        ])
        .expect("on-link v6");
}

fn set_rp_filter(gw: &Netns, value: &str) {
    for iface in ["all", "default", "eth0", "eth1"] {
        gw.sysctl(&format!("net.ipv4.conf.{iface}.rp_filter"), value)
            .expect("rp_filter");
    }
}

/// Both uplink neighbours resolved before the first round: the gateway's answers in a round
/// without rules must arrive in that round, not sit in a neighbour queue (which netfilter has
/// already passed) and come out under the next round's rules. Bounded: 50 tries, 5 s.
fn resolve_uplink_neighbours(t: &Topology) {
    for to in [IpAddr::V4(SPOOFED), IpAddr::V6(SPOOFED6)] {
        let watch = t
            .internet
            .icmp_observer(to.is_ipv6())
            .expect("icmp observer");
        let seen = (0..50).any(|_| {
            t.gateway.ping(to, 1).expect("ping");
            watch.echo_requests(Duration::from_millis(100)) > 0
        });
        assert!(seen, "the gateway cannot reach {to} on the uplink");
    }
}

/// Waits (at most 8 s) until the counter has not moved for a second: whatever a round
/// provoked has arrived before it is read.
fn settle(t: &Topology) {
    let mut last = answers(t);
    let mut quiet = 0;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(200));
        let now = answers(t);
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
        if quiet >= 5 {
            return;
        }
    }
}

/// What arrives at the internet host, addressed to it, after one round of forged probes.
fn answers_to_forged(t: &Topology, base: u16) -> u64 {
    reset_answers(t);
    let forged = forge(&t.workstation, base);
    // The kernel answers at once; SYNs are retransmitted after a second, answered again.
    std::thread::sleep(Duration::from_millis(1500));
    drop(forged);
    // Late answers count for this round, and none is left to be counted in the next.
    settle(t);
    answers(t)
}

/// An honest workstation (its own address) is still served: DNS through the redirect (full
/// mode) and a SocksPort (9050 in full mode, sdwdate's 9108 in timesync mode).
fn assert_honest_workstation_served(t: &Topology, mode: Mode) {
    let socks = match mode {
        Mode::Full => 9050,
        Mode::TimesyncFailClosed => 9108,
    };
    assert!(
        t.workstation
            .tcp_connect(sa(GATEWAY_IP, socks), PATIENT)
            .is_ok(),
        "{mode}: the honest workstation cannot reach {socks}"
    );
    if mode == Mode::Full {
        let s = t.workstation.udp_bind(sa(WORKSTATION_IP, 0)).expect("bind");
        s.send_to(b"dns?", sa(GATEWAY_IP, 53)).expect("send");
        let got = udp_received(&s, PATIENT);
        assert_eq!(
            got.len(),
            1,
            "{mode}: the honest DNS query was not answered"
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    TimesyncFailClosed,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Full => "full",
            Mode::TimesyncFailClosed => "timesync-fail-closed",
        })
    }
}

#[test]
fn a_workstation_forging_an_internet_source_gets_no_answer_out_of_the_uplink() {
    if !require_root("a_workstation_forging_an_internet_source_gets_no_answer_out_of_the_uplink") {
        return;
    }
    let t = Topology::up("afw-spoof").expect("topology");
    install_answer_counter(&t);
    arm_the_workstation(&t);
    resolve_uplink_neighbours(&t);
    let mut base = 20000;
    for rp in ["2", "0"] {
        set_rp_filter(&t.gateway, rp);
        for listeners in [true, false] {
            // Baseline: no rules on the gateway; what the probes provoke reaches the host.
            t.gateway
                .exec(&["nft", "flush", "ruleset"])
                .expect("no rules");
            // Fresh listeners for each round: nothing queued in a round is answered in the next,
            // under other rules.
            let tor = listeners.then(|| TorListeners::start(&t.gateway));
            base += 100;
            let leaked = answers_to_forged(&t, base);
            drop(tor);
            assert!(
                leaked > 0,
                "rp_filter={rp}, listeners={listeners}: without rules the probes must provoke \
                 answers to the forged source, or this test proves nothing"
            );
            for mode in [Mode::Full, Mode::TimesyncFailClosed] {
                let mut config = format!("role = \"gateway\"\ntor_user = {TOR_UID}\n");
                if mode == Mode::TimesyncFailClosed {
                    config.push_str("mode = \"timesync-fail-closed\"\n");
                }
                Fw::new(&config).apply(&t.gateway);
                let tor = listeners.then(|| TorListeners::start(&t.gateway));
                base += 100;
                let n = answers_to_forged(&t, base);
                assert_eq!(
                    n,
                    0,
                    "rp_filter={rp}, listeners={listeners}, {mode}: {n} packets answered the \
                     forged source out of the uplink (baseline {leaked})\n{}\n{}",
                    answer_details(&t),
                    ruleset(&t.gateway)
                );
                if tor.is_some() {
                    assert_honest_workstation_served(&t, mode);
                }
            }
        }
    }
}

/// The mark on connections that came in on the internal interface: even when the gateway's
/// routing would send their packets out of the uplink (a route an admin, a DHCP client or an
/// attacker's earlier packets put there), nothing of them leaves by it. Without rules the same
/// route carries them out, so the capture can see the leak.
#[test]
fn replies_to_the_internal_side_never_leave_by_the_uplink() {
    if !require_root("replies_to_the_internal_side_never_leave_by_the_uplink") {
        return;
    }
    let t = Topology::up("afw-mark").expect("topology");
    t.internet
        .nft(&format!(
            "table inet watch {{
               counter wrong_way {{ }}
               chain pre {{
                 type filter hook prerouting priority -400; policy accept;
                 iifname \"up0\" ip daddr {WORKSTATION_IP} counter name wrong_way
               }}
             }}"
        ))
        .expect("counter");
    let wrong_way = || {
        let out = t
            .internet
            .exec(&["nft", "list", "counter", "inet", "watch", "wrong_way"])
            .expect("list");
        out.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .expect("packets")
    };
    let socks = listen(&t.gateway, ANY, 9050);
    for (rules, what) in [(false, "without rules"), (true, "with our rules")] {
        if rules {
            Fw::new(&gateway_config()).apply(&t.gateway);
        }
        let _ws_side = t
            .workstation
            .tcp_connect(sa(GATEWAY_IP, 9050), PATIENT)
            .expect("connect");
        let mut got = socks.accept_all(SHORT);
        assert_eq!(got.len(), 1, "{what}: the connection");
        // Now the gateway's route to the workstation points out of the uplink.
        t.gateway
            .ip(&[
                "route",
                "add",
                &format!("{WORKSTATION_IP}/32"),
                "via",
                "198.51.100.1",
                "dev",
                "eth0",
            ])
            .expect("route");
        use std::io::Write;
        let before = wrong_way();
        let stream = &mut got[0].stream;
        for _ in 0..5 {
            let _ = stream.write_all(b"reply data");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(SHORT);
        let n = wrong_way() - before;
        t.gateway
            .ip(&["route", "del", &format!("{WORKSTATION_IP}/32")])
            .expect("route del");
        if rules {
            assert_eq!(n, 0, "{what}: {n} reply packets left by the uplink");
        } else {
            assert!(
                n > 0,
                "{what}: the route must carry the replies out, or this proves nothing"
            );
        }
    }
}
