//! The probes: every way out that does not go through Tor, each with a verdict.

use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

use crate::observer::Client;
use crate::verdict::{fact, network, Outcome, Seen};

/// What the checks need to know.
#[derive(Debug, Clone)]
pub struct Setup {
    /// A destination outside (no host needs to answer: the observer sees what leaves).
    pub target: IpAddr,
    pub target6: Option<IpAddr>,
    /// The gateway (SocksPorts, DnsPort).
    pub gateway: IpAddr,
    /// This host's addresses as the observer would see them leak.
    pub me: Vec<IpAddr>,
    pub marker: String,
}

/// Why a probe run as another user proves nothing (the check is skipped, naming this).
#[derive(Debug, Error)]
pub enum ProbeError {
    /// The probe could not be started as that user (the binary not executable by it, say).
    #[error("cannot run the probe {} as uid {uid}: {source}", exe.display())]
    Start {
        exe: PathBuf,
        uid: u32,
        #[source]
        source: std::io::Error,
    },
    /// A crash, a usage error or a signal.
    #[error("the probe as uid {uid} ended with {status}")]
    Ended { uid: u32, status: ExitStatus },
}

/// Runs the probe (`exe probe-tcp TO`) as `uid`: `Ok(true)` connected, `Ok(false)` refused.
pub fn run_probe(exe: &Path, to: SocketAddr, uid: u32) -> Result<bool, ProbeError> {
    use std::os::unix::process::CommandExt;
    let status = Command::new(exe)
        .arg("probe-tcp")
        .arg(to.to_string())
        .uid(uid)
        .gid(uid)
        .status()
        .map_err(|source| ProbeError::Start {
            exe: exe.to_owned(),
            uid,
            source,
        })?;
    probe_result(uid, status)
}

/// What the probe's exit status says: `Ok(true)` connected, `Ok(false)` refused.
pub fn probe_result(uid: u32, status: ExitStatus) -> Result<bool, ProbeError> {
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(ProbeError::Ended { uid, status }),
    }
}

const WAIT: Duration = Duration::from_millis(600);

/// Runs `probe`, then asks the observer what it saw (marker or our addresses).
fn observed(obs: &mut Option<Client>, s: &Setup, probe: impl FnOnce() -> String) -> (String, Seen) {
    if let Some(o) = obs.as_mut() {
        let _ = o.reset();
    }
    let local = probe();
    let seen = obs.as_mut().and_then(|o| {
        std::thread::sleep(WAIT);
        o.report(&s.marker, &s.me).ok()
    });
    (local, seen)
}

fn describe(r: std::io::Result<impl Sized>) -> String {
    match r {
        Ok(_) => "sent".into(),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            "refused locally (firewall)".into()
        }
        Err(e) => format!("failed locally ({e})"),
    }
}

fn payload(s: &Setup) -> Vec<u8> {
    let mut p = b"leaktest ".to_vec();
    p.extend_from_slice(&crate::observer::hex(&s.marker));
    p
}

/// The workstation's network checks.
pub fn network_checks(s: &Setup, obs: &mut Option<Client>) -> Vec<Outcome> {
    let mut out = Vec::new();
    // TCP to a few ports of an outside address. With transparent proxying the connection
    // succeeds, but ends in the gateway's TransPort: nothing from us may leave.
    for port in [80u16, 443, 9999] {
        let to = SocketAddr::new(s.target, port);
        let (local, seen) = observed(obs, s, || {
            match TcpStream::connect_timeout(&to, Duration::from_secs(3)) {
                Ok(_) => "connected (to the gateway's TransPort, if it is on)".into(),
                Err(e) => format!("not connected ({e})"),
            }
        });
        out.push(network(&format!("tcp {to}"), &local, &seen));
    }
    for port in [53u16, 123, 443, 9999] {
        let to = SocketAddr::new(s.target, port);
        let (local, seen) = observed(obs, s, || {
            describe(UdpSocket::bind("0.0.0.0:0").and_then(|u| u.send_to(&payload(s), to)))
        });
        out.push(network(&format!("udp {to}"), &local, &seen));
    }
    let (local, seen) = observed(obs, s, || describe(icmp_echo(s.target, &payload(s))));
    out.push(network(&format!("icmp echo {}", s.target), &local, &seen));
    for proto in [47, 132, 253] {
        let (local, seen) = observed(obs, s, || describe(raw_ip(s.target, proto, &payload(s))));
        out.push(network(&format!("ip proto {proto}"), &local, &seen));
    }
    if let Some(t6) = s.target6 {
        let to = SocketAddr::new(t6, 443);
        let (local, seen) = observed(obs, s, || {
            match TcpStream::connect_timeout(&to, Duration::from_secs(3)) {
                Ok(_) => "connected".into(),
                Err(e) => format!("not connected ({e})"),
            }
        });
        out.push(network(&format!("tcp {to}"), &local, &seen));
        let (local, seen) = observed(obs, s, || {
            describe(
                UdpSocket::bind("[::]:0")
                    .and_then(|u| u.send_to(&payload(s), SocketAddr::new(t6, 123))),
            )
        });
        out.push(network(&format!("udp [{t6}]:123"), &local, &seen));
        let (local, seen) = observed(obs, s, || describe(icmp_echo(t6, &payload(s))));
        out.push(network(&format!("icmpv6 echo {t6}"), &local, &seen));
    }
    // DNS through the system resolver: the name carries the marker, so a query that leaves
    // in clear is seen wherever it goes.
    let name = format!("lt{}.example.com:80", s.marker);
    let (local, seen) = observed(obs, s, || match name.to_socket_addrs() {
        Ok(a) => format!(
            "resolved to {:?} (through the gateway's DnsPort, if configured)",
            a.map(|x| x.ip()).collect::<Vec<_>>()
        ),
        Err(e) => format!("not resolved ({e})"),
    });
    out.push(network("dns (system resolver)", &local, &seen));
    // The SocksPorts must answer (Tor is usable at all).
    for port in [9050u16, 9100] {
        let to = SocketAddr::new(s.gateway, port);
        let ok = socks_answers(to);
        out.push(fact(
            &format!("socks {to}"),
            Some(ok),
            if ok {
                "answers SOCKS5".into()
            } else {
                "no SOCKS5 answer".into()
            },
        ));
    }
    out
}

fn icmp_echo(to: IpAddr, data: &[u8]) -> std::io::Result<usize> {
    let (domain, proto, ty) = if to.is_ipv4() {
        (Domain::IPV4, Protocol::ICMPV4, 8u8)
    } else {
        (Domain::IPV6, Protocol::ICMPV6, 128u8)
    };
    let s = Socket::new(domain, Type::RAW, Some(proto))?;
    let mut pkt = vec![ty, 0, 0, 0, 0x4c, 0x54, 0, 1];
    pkt.extend_from_slice(data);
    if to.is_ipv4() {
        let sum = checksum(&pkt);
        pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    s.send_to(&pkt, &SocketAddr::new(to, 0).into())
}

fn raw_ip(to: IpAddr, proto: i32, data: &[u8]) -> std::io::Result<usize> {
    let domain = if to.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(proto)))?;
    s.send_to(data, &SocketAddr::new(to, 0).into())
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn socks_answers(to: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_secs(3)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut r = [0u8; 2];
    s.write_all(&[5, 1, 0]).is_ok() && s.read_exact(&mut r).is_ok() && r == [5, 0]
}

/// tirdad's counters around three loopback connections of our own, against the kernel's TCP
/// open counters over the same window (see [`crate::verdict::tirdad_health`]).
fn tirdad_window() -> (Option<bool>, String) {
    let counter = |name: &str| -> Option<u64> {
        read_trim(&format!("/sys/module/tirdad/parameters/{name}"))?
            .parse()
            .ok()
    };
    let opens = || crate::verdict::tcp_opens(&std::fs::read_to_string("/proc/net/snmp").ok()?);
    // Three connections over IPv4 loopback (must work), three over IPv6 loopback where the
    // host has it: tirdad hooks both generators, and the kernel's TCP counters count both.
    let three = |ip: std::net::IpAddr| {
        std::net::TcpListener::bind((ip, 0)).and_then(|l| {
            let to = l.local_addr()?;
            for _ in 0..3 {
                let _c = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
                let _a = l.accept()?;
            }
            Ok(())
        })
    };
    // One window per family: an IPv6 loopback a host firewall drops must not throw away the
    // IPv4 evidence (it is then judged alone).
    let (r0, o0) = (counter("replaced"), opens());
    let v4 = three(std::net::Ipv4Addr::LOCALHOST.into()).is_ok();
    let (r1, o1) = (counter("replaced"), opens());
    let v6 = v4
        && std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_ok()
        && three(std::net::Ipv6Addr::LOCALHOST.into()).is_ok();
    let (r2, o2) = (counter("replaced"), opens());
    let delta = |a: Option<u64>, b: Option<u64>| b?.checked_sub(a?);
    let (replaced, opened) = match (v4, v6) {
        (true, true) => (delta(r0, r2), delta(o0, o2)),
        (true, false) => (delta(r0, r1), delta(o0, o1)),
        _ => (None, None),
    };
    crate::verdict::tirdad_health(counter("missed"), replaced, opened)
}

fn read_trim(p: &str) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// Where anon-firewall is, for the check that its rules are still what it loaded.
#[derive(Debug, Clone)]
pub struct Firewall {
    /// The `anon-firewall` program (found in PATH by default).
    pub exe: PathBuf,
    /// Its run directory (`/run/anon-firewall`).
    pub run_dir: PathBuf,
}

/// Runs `anon-firewall status`, which compares the kernel's table with what anon-firewall
/// loaded, and judges its exit code ([`crate::verdict::firewall_status`]).
pub fn firewall_check(fw: &Firewall) -> Outcome {
    const CHECK: &str = "firewall rules intact";
    let out = Command::new(&fw.exe)
        .arg("--run-dir")
        .arg(&fw.run_dir)
        .arg("status")
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fact(
                CHECK,
                None,
                format!(
                    "{} is not installed: anon-firewall's rules were not checked",
                    fw.exe.display()
                ),
            )
        }
        Err(e) => return fact(CHECK, None, format!("cannot run {}: {e}", fw.exe.display())),
    };
    let state = std::fs::read_to_string(fw.run_dir.join("state")).ok();
    let (ok, evidence) = crate::verdict::firewall_status(
        out.status.code(),
        &String::from_utf8_lossy(&out.stdout),
        state.as_deref(),
    );
    fact(CHECK, ok, evidence)
}

/// Settings of this host that identify it, and the firewall's rules.
pub fn host_checks(gateway_role: bool, firewall: &Firewall) -> Vec<Outcome> {
    let mut out = vec![firewall_check(firewall)];
    let ts = read_trim("/proc/sys/net/ipv4/tcp_timestamps");
    out.push(fact(
        "tcp timestamps off",
        ts.as_deref().map(|v| v == "0"),
        format!("net.ipv4.tcp_timestamps = {}", ts.as_deref().unwrap_or("?")),
    ));
    let tirdad = Path::new("/sys/module/tirdad").exists();
    if tirdad {
        let (ok, evidence) = tirdad_window();
        out.push(fact("tirdad loaded", ok, evidence));
    } else {
        out.push(fact(
            "tirdad loaded",
            Some(false),
            "not loaded: TCP ISNs leak the clock".into(),
        ));
    }
    if gateway_role {
        let fwd = read_trim("/proc/sys/net/ipv4/ip_forward");
        out.push(fact(
            "ip forwarding off",
            fwd.as_deref().map(|v| v == "0"),
            format!("net.ipv4.ip_forward = {}", fwd.as_deref().unwrap_or("?")),
        ));
    }
    // sdwdate's files, read by the same contract timesync-check reads them with.
    let v = tor_control::run_dir::judge(&tor_control::client::read_run_dir(Path::new(
        "/run/sdwdate",
    )));
    out.push(fact(
        "clock synced",
        Some(v.state == tor_control::run_dir::Sync::Synced),
        v.line,
    ));
    let tz_env = std::env::var("TZ").ok();
    let localtime = std::fs::read_link("/etc/localtime")
        .ok()
        .map(|p| p.display().to_string());
    let utc = |s: &str| {
        s.ends_with("UTC")
            || s.ends_with("UCT")
            || s.ends_with("Universal")
            || s.ends_with("Zulu")
            || s == ":UTC"
    };
    let ok = tz_env.as_deref().is_none_or(utc) && localtime.as_deref().is_none_or(utc);
    out.push(fact(
        "timezone UTC",
        Some(ok),
        format!(
            "TZ={}, /etc/localtime -> {}",
            tz_env.as_deref().unwrap_or("(unset)"),
            localtime.as_deref().unwrap_or("(none)")
        ),
    ));
    out
}

/// On a gateway: may root and an ordinary user reach the outside? (Only Tor may.)
pub fn gateway_checks(s: &Setup, obs: &mut Option<Client>, tor_uid: Option<u32>) -> Vec<Outcome> {
    let mut out = Vec::new();
    let to = SocketAddr::new(s.target, 443);
    let exe = std::env::current_exe().unwrap_or_else(|_| "leaktest".into());
    // The probe is this binary run as `uid`; a probe that cannot even start (the binary not
    // executable by that user, say) proves nothing, and must never read as "refused".
    let attempt = |uid: u32| run_probe(&exe, to, uid);
    for (who, uid) in [("root", 0u32), ("an ordinary user (nobody)", 65534)] {
        let check = format!("gateway: {who} out");
        let mut broken = None;
        let (local, seen) = observed(obs, s, || match attempt(uid) {
            Ok(true) => "connected".into(),
            Ok(false) => "refused".into(),
            Err(e) => {
                let e = e.to_string();
                broken = Some(e.clone());
                e
            }
        });
        if let Some(e) = broken {
            out.push(fact(&check, None, e));
            continue;
        }
        let mut o = network(&check, &local, &seen);
        if local == "connected" {
            o.verdict = crate::verdict::Verdict::Fail;
        }
        out.push(o);
    }
    if let Some(uid) = tor_uid {
        out.push(match attempt(uid) {
            Ok(ok) => fact(
                "gateway: tor user out",
                Some(ok),
                if ok {
                    "the Tor user reaches the outside".into()
                } else {
                    "the Tor user cannot get out: is Tor blocked?".into()
                },
            ),
            Err(e) => fact("gateway: tor user out", None, e.to_string()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn only_exit_codes_0_and_1_are_verdicts() {
        // wait(2) statuses: exit code in the second byte, a signal in the low bits.
        let exited = |code: i32| ExitStatus::from_raw(code << 8);
        assert!(matches!(probe_result(0, exited(0)), Ok(true)));
        assert!(matches!(probe_result(0, exited(1)), Ok(false)));
        for status in [exited(2), exited(101), ExitStatus::from_raw(9)] {
            assert!(
                matches!(
                    probe_result(65534, status),
                    Err(ProbeError::Ended { uid: 65534, .. })
                ),
                "{status}"
            );
        }
        // The evidence users read names the uid and how the probe ended.
        assert_eq!(
            probe_result(65534, exited(2))
                .expect_err("usage error")
                .to_string(),
            "the probe as uid 65534 ended with exit status: 2"
        );
    }

    #[test]
    fn a_probe_that_cannot_start_is_no_verdict() {
        let to = SocketAddr::from(([192, 0, 2, 1], 443));
        let e = run_probe(Path::new("/nonexistent/leaktest"), to, 0).expect_err("no binary");
        assert!(matches!(&e, ProbeError::Start { uid: 0, .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("cannot run the probe /nonexistent/leaktest as uid 0: "),
            "{e}"
        );
    }
}
