#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::AsFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

pub const INTERNET_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const GATEWAY_EXT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 152, 152, 10);
pub const WORKSTATION_IP: Ipv4Addr = Ipv4Addr::new(10, 152, 152, 11);
pub const INTERNET_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub const GATEWAY_EXT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
pub const GATEWAY_IP6: Ipv6Addr = Ipv6Addr::new(0xfd19, 0xc33d, 0x88bc, 0, 0, 0, 0, 0x10);
pub const WORKSTATION_IP6: Ipv6Addr = Ipv6Addr::new(0xfd19, 0xc33d, 0x88bc, 0, 0, 0, 0, 0x11);

/// Tests that need root and namespaces call this first. Outside CI they are skipped loudly
/// when not root; in CI (`CI=true`) a missing privilege is a failure, never a skip.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: needs root for network namespaces, and CI=true forbids skipping");
    }
    eprintln!("\n*** SKIPPED {test}: needs root (network namespaces, nft). Run the README's test command as root. ***\n");
    false
}

fn run(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A network namespace made by the test; deleted (with everything in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new(name: &str) -> io::Result<Netns> {
        // A leftover of a killed earlier run with the same name is ours to remove.
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NS ARGS...`
    pub fn ip(&self, args: &[&str]) -> io::Result<Output> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that will run inside this namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name])
            .arg(program)
            .stdin(Stdio::null());
        c
    }

    /// Runs a command inside the namespace and fails on a non-zero exit.
    pub fn exec(&self, args: &[&str]) -> io::Result<String> {
        let (prog, rest) = args
            .split_first()
            .ok_or_else(|| io::Error::other("empty command"))?;
        let out = run(self.command(prog).args(rest))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `f` on a thread that has joined this namespace, e.g. to create sockets there.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path)?;
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other("namespace thread panicked"))?
        })
    }

    /// A sysctl of this namespace only (net.* sysctls are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        self.exec(&["sysctl", "-qw", &format!("{key}={value}")])
            .map(drop)
    }

    /// Loads nft rules given in nft syntax into this namespace.
    pub fn nft(&self, rules: &str) -> io::Result<()> {
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no stdin"))?
            .write_all(rules.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "nft: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    pub fn tcp_listen(&self, addr: SocketAddr) -> io::Result<Listener> {
        let l = self.enter(|| TcpListener::bind(addr))??;
        l.set_nonblocking(true)?;
        Ok(Listener(l))
    }

    pub fn udp_bind(&self, addr: SocketAddr) -> io::Result<UdpSocket> {
        let s = self.enter(|| UdpSocket::bind(addr))??;
        s.set_nonblocking(true)?;
        Ok(s)
    }

    /// A TCP connection attempt from this namespace, as root.
    pub fn tcp_connect(&self, to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        self.enter(|| TcpStream::connect_timeout(&to, timeout))?
    }

    /// Sends one UDP datagram from this namespace; errors (a local reject) are returned.
    pub fn udp_send(&self, to: SocketAddr, payload: &[u8]) -> io::Result<usize> {
        self.enter(|| {
            let any: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                .parse()
                .map_err(io::Error::other)?;
            let s = UdpSocket::bind(any)?;
            s.send_to(payload, to)
        })?
    }

    /// Sends ICMP/ICMPv6 echo requests from this namespace (raw socket; no ping binary needed).
    pub fn ping(&self, to: IpAddr, count: u16) -> io::Result<()> {
        self.enter(|| {
            let (domain, proto, ty) = match to {
                IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8),
                IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128u8),
            };
            let s = Socket::new(domain, Type::RAW, Some(proto))?;
            for seq in 0..count {
                let mut pkt = [
                    ty,
                    0,
                    0,
                    0,
                    0x41,
                    0x46,
                    (seq >> 8) as u8,
                    seq as u8,
                    b'a',
                    b'n',
                    b'o',
                    b'n',
                ];
                if to.is_ipv4() {
                    let sum = checksum(&pkt);
                    pkt[2..4].copy_from_slice(&sum.to_be_bytes());
                } // the kernel fills in the ICMPv6 checksum
                  // A locally rejected echo is not an error for the prober: it is what we test.
                let _ = s.send_to(&pkt, &SocketAddr::new(to, 0).into());
            }
            Ok(())
        })?
    }

    /// A raw socket that sees every ICMP (or ICMPv6) packet arriving in this namespace.
    pub fn icmp_observer(&self, v6: bool) -> io::Result<IcmpObserver> {
        let s = self.enter(|| {
            if v6 {
                Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
            } else {
                Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
            }
        })??;
        s.set_nonblocking(true)?;
        Ok(IcmpObserver { sock: s, v6 })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Killing what still runs inside first lets the namespace go away at once.
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::SIGKILL,
                        );
                    }
                }
            });
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
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

/// A non-blocking TCP listener that reports what reached it.
#[derive(Debug)]
pub struct Listener(pub TcpListener);

/// One accepted connection: who came, and where they meant to go (SO_ORIGINAL_DST, which
/// differs from the listener's address when the connection was redirected).
#[derive(Debug)]
pub struct Accepted {
    pub peer: SocketAddr,
    pub original_dst: Option<SocketAddrV4>,
    pub stream: TcpStream,
}

impl Listener {
    /// Every connection accepted within `wait` (returns early once one arrived and no more
    /// come within 100 ms).
    pub fn accept_all(&self, wait: Duration) -> Vec<Accepted> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        while Instant::now() < deadline {
            match self.0.accept() {
                Ok((stream, peer)) => {
                    let original_dst = nix::sys::socket::getsockopt(
                        &stream,
                        nix::sys::socket::sockopt::OriginalDst,
                    )
                    .ok()
                    .map(|sa| {
                        SocketAddrV4::new(
                            Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
                            u16::from_be(sa.sin_port),
                        )
                    });
                    got.push(Accepted {
                        peer,
                        original_dst,
                        stream,
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        got
    }
}

/// Counts datagrams waiting on a non-blocking UDP socket, waiting up to `wait`.
pub fn udp_received(sock: &UdpSocket, wait: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => got.push((from, buf[..n].to_vec())),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    got
}

/// Sees ICMP echo requests arriving in a namespace.
#[derive(Debug)]
pub struct IcmpObserver {
    sock: Socket,
    v6: bool,
}

impl IcmpObserver {
    /// Echo requests seen within `wait`.
    pub fn echo_requests(&self, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        let mut n = 0;
        let mut buf = [0u8; 2048];
        let mut sock = &self.sock;
        while Instant::now() < deadline {
            match sock.read(&mut buf) {
                Ok(len) => {
                    // IPv4 raw sockets deliver the IP header; IPv6 ones do not.
                    let off = if self.v6 {
                        0
                    } else {
                        usize::from(buf[0] & 0x0f) * 4
                    };
                    let echo = if self.v6 { 128 } else { 8 };
                    if len > off && buf[off] == echo {
                        n += 1;
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        n
    }
}

/// The three hosts of DESIGN.md's test topology.
#[derive(Debug)]
pub struct Topology {
    pub internet: Netns,
    pub gateway: Netns,
    pub workstation: Netns,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Topology {
    /// Builds the topology under unique namespace names (tests may run in parallel).
    pub fn up(tag: &str) -> io::Result<Topology> {
        let id = format!(
            "{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let t = Topology {
            internet: Netns::new(&format!("{id}-inet"))?,
            gateway: Netns::new(&format!("{id}-gw"))?,
            workstation: Netns::new(&format!("{id}-ws"))?,
        };
        let (inet, gw, ws) = (&t.internet, &t.gateway, &t.workstation);
        gw.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            inet.name(),
        ])?;
        gw.ip(&[
            "link",
            "add",
            "eth1",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ws.name(),
        ])?;
        for (ns, dev, v4, v6) in [
            (inet, "up0", "198.51.100.1/24", "2001:db8:1::1/64"),
            (gw, "eth0", "198.51.100.2/24", "2001:db8:1::2/64"),
            (gw, "eth1", "10.152.152.10/18", "fd19:c33d:88bc::10/64"),
            (ws, "eth0", "10.152.152.11/18", "fd19:c33d:88bc::11/64"),
        ] {
            ns.ip(&["addr", "add", v4, "dev", dev])?;
            ns.ip(&["-6", "addr", "add", v6, "dev", dev, "nodad"])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        inet.ip(&["route", "add", "10.152.128.0/18", "via", "198.51.100.2"])?;
        inet.ip(&[
            "-6",
            "route",
            "add",
            "fd19:c33d:88bc::/64",
            "via",
            "2001:db8:1::2",
        ])?;
        ws.ip(&["route", "add", "default", "via", "10.152.152.10"])?;
        ws.ip(&["-6", "route", "add", "default", "via", "fd19:c33d:88bc::10"])?;
        // Routing on, so that without a firewall the workstation's packets WOULD reach the
        // internet: the tests then prove that the firewall, not the routing table, stops them.
        gw.sysctl("net.ipv4.ip_forward", "1")?;
        gw.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        Ok(t)
    }

    /// Counts, in the internet namespace, every packet that arrives from the gateway link
    /// except neighbour discovery and MLD (link housekeeping, not traffic). Read with
    /// [`Topology::leaked_packets`].
    pub fn install_leak_counter(&self) -> io::Result<()> {
        self.internet.nft(
            "table inet observer {
               counter leaked { }
               chain pre {
                 type filter hook prerouting priority -400; policy accept;
                 iifname != \"up0\" return
                 icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert,
                               mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report } return
                 counter name leaked
               }
             }",
        )
    }

    pub fn leaked_packets(&self) -> io::Result<u64> {
        let out = self
            .internet
            .exec(&["nft", "list", "counter", "inet", "observer", "leaked"])?;
        out.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| io::Error::other(format!("cannot read counter: {out}")))
    }

    pub fn reset_leak_counter(&self) -> io::Result<()> {
        self.internet
            .exec(&["nft", "reset", "counter", "inet", "observer", "leaked"])
            .map(drop)
    }
}

/// Runs `bash -c 'exec 3<>/dev/tcp/HOST/PORT'` in `ns` as `uid`: does a TCP connection as that
/// user get through? (A separate process, because a uid is per process.)
pub fn tcp_connect_as(ns: &Netns, uid: u32, to: SocketAddr, timeout: Duration) -> io::Result<bool> {
    Ok(tcp_probe_as(ns, uid, to, timeout)? == Probe::Open)
}

/// What a TCP connect saw: a connection, a refusal (a reset or an ICMP error: the quick
/// answer a reject gives), or nothing within the time (a drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Open,
    Refused,
    Timeout,
}

/// As user `uid` in `ns`, connects to `to` and says what happened within `timeout`.
pub fn tcp_probe_as(ns: &Netns, uid: u32, to: SocketAddr, timeout: Duration) -> io::Result<Probe> {
    let host = match to.ip() {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => a.to_string(),
    };
    let status = ns
        .command("timeout")
        .arg(format!("{}", timeout.as_secs_f32()))
        .args([
            "setpriv",
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
        ])
        .args([
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{host}/{}", to.port()),
        ])
        .stderr(Stdio::null())
        .status()?;
    Ok(match status.code() {
        Some(0) => Probe::Open,
        // timeout(1) exits 124 when it had to stop the command.
        Some(124) => Probe::Timeout,
        _ => Probe::Refused,
    })
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> io::Result<TempDir> {
        let p = std::env::temp_dir().join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
