//! `leaktest observer`: captures what passes an interface where leaks would show (the
//! gateway's uplink) and answers the workstation's questions over a TCP control channel.
//!
//! Protocol, one JSON object per line: `{"cmd":"reset"}` clears the capture and answers
//! `{"ok":true,"peer":"<address the control connection came from>"}`;
//! `{"cmd":"report","marker":"<hex>","from":["<ip>",...]}` answers
//! `{"packets":["udp 10.152.152.11:40000 -> 192.0.2.1:123 marker", ...]}`: every captured packet
//! that carries the marker or comes from one of the addresses. The control connection's own
//! packets are never reported.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{self as sock, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use thiserror::Error;

/// What went wrong on either side of the observer.
#[derive(Debug, Error)]
pub enum ObserverError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("interface {iface}: {source}")]
    Interface {
        iface: String,
        #[source]
        source: nix::Error,
    },
    /// An answer that is not JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// An answer to `report` without a packet list (the observer's `error`, say).
    #[error("observer: {0}")]
    NoPackets(serde_json::Value),
}

/// One captured packet.
#[derive(Debug, Clone)]
pub struct Packet {
    pub proto: &'static str,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// The first bytes of the payload, where markers travel.
    pub payload: Vec<u8>,
}

impl Packet {
    pub fn describe(&self, marker: &[u8]) -> String {
        let m = if contains(&self.payload, marker) {
            " marker"
        } else {
            ""
        };
        format!(
            "{} {} -> {}{m}",
            self.proto,
            SocketAddr::new(self.src, self.sport),
            SocketAddr::new(self.dst, self.dport)
        )
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Parses an Ethernet frame (veth and most NICs) into a packet record.
pub fn parse(frame: &[u8]) -> Option<Packet> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let p = frame.get(14..)?;
    let (src, dst, proto, l4): (IpAddr, IpAddr, u8, &[u8]) = match ethertype {
        0x0800 if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let s = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            let d = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            (s.into(), d.into(), p[9], p.get(ihl..)?)
        }
        0x86dd if p.len() >= 40 => {
            let a = |o: usize| -> Option<Ipv6Addr> {
                <[u8; 16]>::try_from(p.get(o..o + 16)?)
                    .ok()
                    .map(Ipv6Addr::from)
            };
            (a(8)?.into(), a(24)?.into(), p[6], &p[40..])
        }
        _ => return None,
    };
    let ports = |l: &[u8]| {
        (
            u16::from_be_bytes([l[0], l[1]]),
            u16::from_be_bytes([l[2], l[3]]),
        )
    };
    let (name, (sport, dport), payload) = match proto {
        6 if l4.len() >= 20 => (
            "tcp",
            ports(l4),
            l4.get(usize::from(l4[12] >> 4) * 4..).unwrap_or_default(),
        ),
        17 if l4.len() >= 8 => ("udp", ports(l4), &l4[8..]),
        1 => ("icmp", (0, 0), l4.get(8..).unwrap_or_default()),
        58 => ("icmpv6", (0, 0), l4.get(8..).unwrap_or_default()),
        _ => ("ip", (0, u16::from(proto)), l4),
    };
    // ICMPv6 neighbour discovery and MLD are link housekeeping, not traffic.
    if proto == 58 && l4.first().is_some_and(|t| (130..=143).contains(t)) {
        return None;
    }
    Some(Packet {
        proto: name,
        src,
        dst,
        sport,
        dport,
        payload: payload.iter().take(512).copied().collect(),
    })
}

/// Opens a packet socket on `iface` (both directions).
pub fn capture_socket(iface: &str) -> Result<OwnedFd, ObserverError> {
    let fd = sock::socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::empty(),
        SockProtocol::EthAll,
    )
    .map_err(io::Error::from)?;
    let index =
        nix::net::if_::if_nametoindex(iface).map_err(|source| ObserverError::Interface {
            iface: iface.to_owned(),
            source,
        })?;
    let sll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: (libc::ETH_P_ALL as u16).to_be(),
        sll_ifindex: index as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: `fd` is an open socket we own, and `sll` a complete sockaddr_ll that lives
    // through the call, passed with its own size; bind(2) only reads it. (nix has no safe way
    // to build a link-layer address to bind to.)
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error().into());
    }
    Ok(fd)
}

/// Runs the observer until killed.
pub fn run(iface: &str, listen: SocketAddr) -> Result<(), ObserverError> {
    let cap = capture_socket(iface)?;
    let packets: Arc<Mutex<Vec<Packet>>> = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&packets);
    let control_port = listen.port();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = match sock::recv(cap.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) if n > 0 => n,
                _ => continue,
            };
            if let Some(p) = parse(&buf[..n]) {
                if p.sport == control_port || p.dport == control_port {
                    continue;
                }
                if let Ok(mut v) = store.lock() {
                    if v.len() < 100_000 {
                        v.push(p);
                    }
                }
            }
        }
    });
    let l = TcpListener::bind(listen)?;
    eprintln!("leaktest observer: capturing on {iface}, answering on {listen}");
    for conn in l.incoming().flatten() {
        let packets = Arc::clone(&packets);
        std::thread::spawn(move || serve(conn, &packets));
    }
    Ok(())
}

fn serve(conn: TcpStream, packets: &Mutex<Vec<Packet>>) {
    let peer = conn
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let _ = conn.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(mut w) = conn.try_clone() else { return };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        let answer = answer(&line, &peer, packets);
        if writeln!(w, "{answer}").is_err() {
            return;
        }
    }
}

/// The observer's answer to one request line of the control channel (the protocol above).
/// Sans-IO, so that it can be tested and fuzzed without a socket.
pub fn answer(line: &str, peer: &str, packets: &Mutex<Vec<Packet>>) -> serde_json::Value {
    let req: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    match req["cmd"].as_str() {
        Some("reset") => {
            if let Ok(mut v) = packets.lock() {
                v.clear();
            }
            serde_json::json!({"ok": true, "peer": peer})
        }
        Some("report") => {
            let marker = hex(req["marker"].as_str().unwrap_or_default());
            let from: Vec<IpAddr> = req["from"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str()?.parse().ok())
                .collect();
            let seen = packets.lock().map(|v| {
                v.iter()
                    .filter(|p| contains(&p.payload, &marker) || from.contains(&p.src))
                    .map(|p| p.describe(&marker))
                    .collect::<Vec<String>>()
            });
            // A capture that cannot be read must not look like "nothing seen".
            match seen {
                Ok(seen) => serde_json::json!({"packets": seen}),
                Err(_) => serde_json::json!({"error": "capture unavailable"}),
            }
        }
        _ => serde_json::json!({"error": "unknown command"}),
    }
}

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The workstation's side of the control channel.
#[derive(Debug)]
pub struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
    /// Where the observer saw the control connection come from.
    pub peer: String,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Result<Client, ObserverError> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut c = Client {
            w: s.try_clone()?,
            r: BufReader::new(s),
            peer: String::new(),
        };
        c.peer = c.ask(&serde_json::json!({"cmd": "reset"}))?["peer"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(c)
    }

    fn ask(&mut self, req: &serde_json::Value) -> Result<serde_json::Value, ObserverError> {
        writeln!(self.w, "{req}")?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }

    pub fn reset(&mut self) -> Result<(), ObserverError> {
        self.ask(&serde_json::json!({"cmd": "reset"})).map(drop)
    }

    /// Packets with `marker` or from `from`, captured since the last reset.
    pub fn report(&mut self, marker: &str, from: &[IpAddr]) -> Result<Vec<String>, ObserverError> {
        let from: Vec<String> = from.iter().map(ToString::to_string).collect();
        let v = self.ask(&serde_json::json!({"cmd": "report", "marker": marker, "from": from}))?;
        // No list means no answer (an error), never "nothing seen".
        match v["packets"].as_array() {
            Some(list) => Ok(list
                .iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()),
            None => Err(ObserverError::NoPackets(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_udp_with_marker() {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 152, 152, 11, 192, 0, 2, 1,
        ];
        ip.extend_from_slice(&[0x9c, 0x40, 0, 123, 0, 12, 0, 0]);
        ip.extend_from_slice(b"LTabcd");
        f.extend(ip);
        let p = parse(&f).expect("udp");
        assert_eq!((p.proto, p.sport, p.dport), ("udp", 40000, 123));
        assert!(contains(&p.payload, &hex("4c5461")));
        assert_eq!(
            p.describe(b"LTa"),
            "udp 10.152.152.11:40000 -> 192.0.2.1:123 marker"
        );
    }
}
