//! isnprobe (runs in the VM): opens N TCP connections over loopback on one fixed 4-tuple,
//! captures the SYNs and SYN-ACKs on a packet socket, and says how many consecutive deltas
//! follow the stock kernel's formula. Stock ISN = siphash(4-tuple) + realtime_ns / 64, so on a
//! fixed tuple the ISN delta equals the elapsed ns / 64; the stock TCP timestamp is
//! monotonic ms + a per-tuple offset, so its delta equals the elapsed ms.
//!
//! Usage: isnprobe 4|6 COUNT. Prints `ISNPROBE v4 SYN n=.. time-derived=..` (also SYNACK, TSVAL).
// The packet socket's libc calls (nix has no link-layer bind) and one setsockopt are allowed
// on the functions that make them.
#![deny(unsafe_code)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anon_wait::wait_until;
use socket2::{Domain, Socket, Type};

const LISTEN_PORT: u16 = 5555;
const CLIENT_PORT: u16 = 40000;

struct Seen {
    synack: bool,
    seq: u32,
    tsval: Option<u32>,
}

#[allow(unsafe_code)]
fn packet_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked and owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK,
            i32::from((libc::ETH_P_ALL as u16).to_be()),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let ifindex = nix::net::if_::if_nametoindex("lo").map_err(std::io::Error::from)?;
    // SAFETY: sockaddr_ll is plain data; zero is a valid starting value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll of the size passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Packets arriving on the packet socket within `wait` (IP packets: the loopback Ethernet
/// header stripped, the outgoing copy that loopback also shows skipped).
#[allow(unsafe_code)]
fn incoming(fd: &OwnedFd, wait: Duration) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        // SAFETY: sockaddr_ll is plain data.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: buf and from are valid for the sizes given.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&raw mut from).cast(),
                &mut len,
            )
        };
        if n <= 14 {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if from.sll_pkttype != libc::PACKET_OUTGOING {
            out.push(buf[14..n as usize].to_vec());
        }
    }
    out
}

/// The TSval of a TCP segment's timestamp option, if it has one.
fn tsval(tcp: &[u8]) -> Option<u32> {
    let hdr = (usize::from(*tcp.get(12)? >> 4) * 4).min(tcp.len());
    let mut i = 20;
    while i < hdr {
        match tcp[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(*tcp.get(i + 1).unwrap_or(&0)).max(2);
                if kind == 8 && len == 10 && i + 6 <= hdr {
                    return Some(u32::from_be_bytes([
                        tcp[i + 2],
                        tcp[i + 3],
                        tcp[i + 4],
                        tcp[i + 5],
                    ]));
                }
                i += len;
            }
        }
    }
    None
}

/// Reads every captured packet and keeps the handshake segments of our tuple.
fn capture(fd: &OwnedFd, v6: bool) -> Vec<Seen> {
    let mut out = Vec::new();
    for p in incoming(fd, Duration::from_millis(500)) {
        let p = p.as_slice();
        let tcp = if v6 {
            if p.len() < 40 || p[0] >> 4 != 6 || p[6] != 6 {
                continue;
            }
            &p[40..]
        } else {
            if p.len() < 20 || p[0] >> 4 != 4 || p[9] != 6 {
                continue;
            }
            &p[usize::from(p[0] & 0x0f) * 4..]
        };
        if tcp.len() < 20 {
            continue;
        }
        let (sport, dport) = (
            u16::from_be_bytes([tcp[0], tcp[1]]),
            u16::from_be_bytes([tcp[2], tcp[3]]),
        );
        let flags = tcp[13];
        if flags & 0x02 == 0 {
            continue;
        }
        let synack = flags & 0x10 != 0;
        if (sport, dport)
            != if synack {
                (LISTEN_PORT, CLIENT_PORT)
            } else {
                (CLIENT_PORT, LISTEN_PORT)
            }
        {
            continue;
        }
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let tsval = tsval(tcp);
        out.push(Seen { synack, seq, tsval });
    }
    out
}

/// How many consecutive deltas of `values` match the expected deltas within `tol`.
fn time_derived(values: &[u32], expected: &[u64], tol: i64) -> (usize, usize) {
    let mut hits = 0;
    let pairs = values.len().min(expected.len()).saturating_sub(1);
    for i in 1..=pairs {
        let d = values[i].wrapping_sub(values[i - 1]);
        let e = (expected[i].wrapping_sub(expected[i - 1])) as u32;
        if i64::from(d.wrapping_sub(e) as i32).abs() < tol {
            hits += 1;
        }
    }
    (pairs, hits)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(25);
    let r = match mode.as_str() {
        "stats" => stats(n),
        "rate" => {
            rate(Duration::from_secs(n as u64)).map(|r| println!("ISNRATE per_second={r:.0}"))
        }
        "load" => rate(Duration::from_secs(n as u64)).map(drop),
        "cookies" => cookies(n),
        "burst" => burst(n),
        fam => run(fam == "6", n),
    };
    if let Err(e) = r {
        println!("ISNPROBE error: {e}");
    }
}

/// One loopback connection from an ephemeral port, closed with RST.
fn connect_once(listener: &Socket, server: SocketAddr) -> std::io::Result<()> {
    let c = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    c.connect(&server.into())?;
    let (a, _) = listener.accept()?;
    a.set_linger(Some(Duration::ZERO))?;
    c.set_linger(Some(Duration::ZERO))?;
    Ok(())
}

fn listen(port: u16) -> std::io::Result<(Socket, SocketAddr)> {
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let l = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    l.set_reuse_address(true)?;
    l.bind(&server.into())?;
    l.listen(128)?;
    Ok((l, server))
}

/// Connections per second for `d` (the benchmark), or as background load.
fn rate(d: Duration) -> std::io::Result<f64> {
    let (l, server) = listen(5557)?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        connect_once(&l, server)?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// `n` connections completed through SYN cookies (the caller sets net.ipv4.tcp_syncookies=2
/// and timestamps on), each moving 64 KiB each way; and the largest jump of the server's
/// TSval between its SYN-ACK and its later segments (a timestamp offset that changed between
/// the SYN-ACK and the cookie check shows as a jump of up to 2^32 ms).
fn cookies(n: usize) -> std::io::Result<()> {
    use std::io::{Read, Write};
    const PORT: u16 = 5558;
    let cap = packet_socket()?;
    big_buffer(&cap);
    let (l, server) = listen(PORT)?;
    let l: std::net::TcpListener = l.into();
    let mut ok = 0;
    for _ in 0..n {
        let r = (|| -> std::io::Result<bool> {
            let mut c = std::net::TcpStream::connect(server)?;
            let (mut a, _) = l.accept()?;
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            a.set_read_timeout(Some(Duration::from_secs(10)))?;
            let data: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
            let writer = {
                let mut a2 = a.try_clone()?;
                let d = data.clone();
                std::thread::spawn(move || a2.write_all(&d))
            };
            let mut got = vec![0u8; data.len()];
            c.read_exact(&mut got)?;
            writer
                .join()
                .map_err(|_| std::io::Error::other("writer"))??;
            c.write_all(&got)?;
            let mut back = vec![0u8; data.len()];
            a.read_exact(&mut back)?;
            Ok(got == data && back == data)
        })();
        if matches!(r, Ok(true)) {
            ok += 1;
        }
    }
    // The server's TSvals per connection (by client port), in capture order.
    let mut by_port: std::collections::HashMap<u16, Vec<u32>> = std::collections::HashMap::new();
    for p in incoming(&cap, Duration::from_millis(800)) {
        if p.len() < 20 || p[0] >> 4 != 4 || p[9] != 6 {
            continue;
        }
        let tcp = &p[usize::from(p[0] & 0x0f) * 4..];
        if tcp.len() < 20 || u16::from_be_bytes([tcp[0], tcp[1]]) != PORT {
            continue;
        }
        if let Some(ts) = tsval(tcp) {
            by_port
                .entry(u16::from_be_bytes([tcp[2], tcp[3]]))
                .or_default()
                .push(ts);
        }
    }
    let jump = by_port
        .values()
        .flat_map(|v| {
            v.windows(2)
                .map(|w| i64::from(w[1].wrapping_sub(w[0]) as i32).abs())
        })
        .max()
        .unwrap_or(-1);
    println!(
        "ISNCOOKIE n={n} ok={ok} connections_seen={} max_tsval_jump_ms={jump}",
        by_port.len()
    );
    Ok(())
}

/// `threads` threads connecting at once, 50 connections each: more ISNs in flight than CPUs.
fn burst(threads: usize) -> std::io::Result<()> {
    let (l, server) = listen(5559)?;
    let l: std::net::TcpListener = l.into();
    let total = threads * 50;
    l.set_nonblocking(true)?;
    let acceptor = std::thread::spawn(move || {
        let mut n = 0;
        // Every connection waiting, then a look again 1 ms later, until all came or 120 s.
        wait_until(Duration::from_secs(120), Duration::from_millis(1), || {
            while n < total {
                let Ok((a, _)) = l.accept() else { break };
                let s: Socket = a.into();
                let _ = s.set_linger(Some(Duration::ZERO));
                n += 1;
            }
            n >= total
        });
    });
    let start = std::sync::Arc::new(std::sync::Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let mut ok = 0;
                for _ in 0..50 {
                    if let Ok(c) = std::net::TcpStream::connect(server) {
                        let s: Socket = c.into();
                        let _ = s.set_linger(Some(Duration::ZERO));
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let ok: usize = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
    let _ = acceptor.join();
    println!("ISNBURST threads={threads} connections={ok}");
    Ok(())
}

/// 32 MiB of receive buffer on the capture socket, so that nothing captured is dropped before
/// it is read.
#[allow(unsafe_code)]
fn big_buffer(cap: &OwnedFd) {
    let big: libc::c_int = 32 << 20;
    // SAFETY: a valid int option on a socket we own; SO_RCVBUFFORCE needs root, as this runs.
    unsafe {
        libc::setsockopt(
            cap.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const big).cast(),
            4,
        )
    };
}

/// Chi-square over 16 bins of a 4-bit field, and the lag-1 serial correlation.
fn stats(n: usize) -> std::io::Result<()> {
    let cap = packet_socket()?;
    big_buffer(&cap);
    let (l, server) = listen(5556)?;
    for _ in 0..n {
        connect_once(&l, server)?;
    }
    let isns: Vec<u32> = capture_port(&cap, 5556);
    let chi2 = |shift: u32| -> f64 {
        let mut bins = [0f64; 16];
        for v in &isns {
            bins[((v >> shift) & 0xf) as usize] += 1.0;
        }
        let e = isns.len() as f64 / 16.0;
        bins.iter().map(|b| (b - e) * (b - e) / e).sum()
    };
    let x: Vec<f64> = isns.iter().map(|v| f64::from(*v)).collect();
    let mean = x.iter().sum::<f64>() / x.len().max(1) as f64;
    let var: f64 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
    let cov: f64 = x.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum();
    println!(
        "ISNSTATS n={} chi2_high={:.1} chi2_low={:.1} corr={:.4}",
        isns.len(),
        chi2(28),
        chi2(0),
        cov / var.max(1.0)
    );
    Ok(())
}

/// SYN sequence numbers to `port` captured so far.
fn capture_port(fd: &OwnedFd, port: u16) -> Vec<u32> {
    let mut out = Vec::new();
    for p in incoming(fd, Duration::from_millis(800)) {
        if p.len() < 20 || p[0] >> 4 != 4 || p[9] != 6 {
            continue;
        }
        let tcp = &p[usize::from(p[0] & 0x0f) * 4..];
        if tcp.len() >= 20 && u16::from_be_bytes([tcp[2], tcp[3]]) == port && tcp[13] & 0x12 == 0x02
        {
            out.push(u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]));
        }
    }
    out
}

fn run(v6: bool, count: usize) -> std::io::Result<()> {
    let cap = packet_socket()?;
    let (domain, server): (Domain, SocketAddr) = if v6 {
        (
            Domain::IPV6,
            SocketAddr::from((Ipv6Addr::LOCALHOST, LISTEN_PORT)),
        )
    } else {
        (
            Domain::IPV4,
            SocketAddr::from((Ipv4Addr::LOCALHOST, LISTEN_PORT)),
        )
    };
    let client = SocketAddr::new(server.ip(), CLIENT_PORT);
    let listener = Socket::new(domain, Type::STREAM, None)?;
    listener.set_reuse_address(true)?;
    listener.bind(&server.into())?;
    listener.listen(64)?;
    let mut real_ns = Vec::new();
    let mut mono_ms = Vec::new();
    let start = Instant::now();
    for _ in 0..count {
        let c = Socket::new(domain, Type::STREAM, None)?;
        c.set_reuse_address(true)?;
        c.bind(&client.into())?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(std::io::Error::other)?;
        real_ns.push(u64::try_from(now.as_nanos()).unwrap_or(0) >> 6);
        mono_ms.push(u64::try_from(start.elapsed().as_millis()).unwrap_or(0));
        c.connect(&server.into())?;
        let (a, _) = listener.accept()?;
        // RST instead of FIN: no TIME_WAIT, so the same tuple can be used again at once.
        a.set_linger(Some(Duration::ZERO))?;
        c.set_linger(Some(Duration::ZERO))?;
        drop(c);
        drop(a);
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = capture(&cap, v6);
    let fam = if v6 { "v6" } else { "v4" };
    let syn: Vec<u32> = seen.iter().filter(|s| !s.synack).map(|s| s.seq).collect();
    let synack: Vec<u32> = seen.iter().filter(|s| s.synack).map(|s| s.seq).collect();
    let ts: Vec<u32> = seen
        .iter()
        .filter(|s| !s.synack)
        .filter_map(|s| s.tsval)
        .collect();
    // Tolerances: 2^20 (about 67 ms of ns/64) for ISNs, 100 ms for timestamps, generous for
    // TCG; the chance that a random value falls inside is below 1 in 2000 per pair.
    for (kind, values, expected, tol) in [
        ("SYN", &syn, &real_ns, 1i64 << 20),
        ("SYNACK", &synack, &real_ns, 1 << 20),
        ("TSVAL", &ts, &mono_ms, 100),
    ] {
        let (n, hits) = time_derived(values, expected, tol);
        println!("ISNPROBE {fam} {kind} n={n} time-derived={hits}");
    }
    Ok(())
}
