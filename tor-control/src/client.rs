//! The blocking shell around [`crate::proto`]: connect, feed lines, read the cookie, and read
//! `/run/sdwdate` for its readers. Every step is bounded by a timeout.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::proto::{Action, AuthPolicy, Handshake, ProtoError, ReplyReader, MAX_LINE};
use crate::run_dir::{Files, FAIL, FIRST_SUCCESS, MSG, STATUS, SUCCESS};

/// Debian's control socket (tor-service-defaults-torrc: `ControlSocket /run/tor/control`).
pub const DEBIAN_SOCKET: &str = "/run/tor/control";
/// Debian's cookie (`CookieAuthFile /run/tor/control.authcookie`, group debian-tor).
pub const DEBIAN_COOKIE: &str = "/run/tor/control.authcookie";
/// Tor's conventional TCP ControlPort.
pub const DEFAULT_PORT: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9051,
));

/// Where tor's control port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAddr {
    /// `HOST:PORT`.
    Tcp(SocketAddr),
    /// `unix:/path` (or an absolute path).
    Unix(PathBuf),
    /// `auto`: Debian's socket when it exists, else 127.0.0.1:9051.
    Auto,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("`{0}` is not HOST:PORT, unix:/PATH or auto")]
    BadAddr(String),
    #[error("control port {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("control port {addr}: {source}")]
    Io { addr: String, source: io::Error },
    #[error("control port {addr} closed the connection")]
    Closed { addr: String },
    #[error("control port {addr}: cookie {path}: {source}")]
    Cookie {
        addr: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("control port {addr}: {source}")]
    Protocol { addr: String, source: ProtoError },
}

impl FromStr for ControlAddr {
    type Err = ControlError;
    fn from_str(s: &str) -> Result<Self, ControlError> {
        if s == "auto" {
            return Ok(ControlAddr::Auto);
        }
        if let Some(p) = s.strip_prefix("unix:").or(s.starts_with('/').then_some(s)) {
            if p.starts_with('/') {
                return Ok(ControlAddr::Unix(PathBuf::from(p)));
            }
            return Err(ControlError::BadAddr(s.to_owned()));
        }
        s.parse()
            .map(ControlAddr::Tcp)
            .map_err(|_| ControlError::BadAddr(s.to_owned()))
    }
}

impl fmt::Display for ControlAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlAddr::Tcp(a) => write!(f, "{a}"),
            ControlAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            ControlAddr::Auto => write!(f, "auto"),
        }
    }
}

impl ControlAddr {
    /// `Auto` made concrete, looking at the file system.
    pub fn resolve(&self) -> ControlAddr {
        match self {
            ControlAddr::Auto if Path::new(DEBIAN_SOCKET).exists() => {
                ControlAddr::Unix(PathBuf::from(DEBIAN_SOCKET))
            }
            ControlAddr::Auto => ControlAddr::Tcp(DEFAULT_PORT),
            a => a.clone(),
        }
    }

    /// Whom to trust at this (resolved) address. The cookie file is the configured one, else
    /// `<socket>.authcookie` beside a socket (Debian's layout), else Debian's cookie for a port
    /// on this host; none for a port on another host. NULL authentication is refused only on
    /// a port on this host: any local user may bind it before tor does.
    pub fn policy(&self, configured_cookie: Option<&Path>) -> AuthPolicy {
        let (expected, allow_null) = match self {
            ControlAddr::Unix(p) => {
                let mut c = p.clone().into_os_string();
                c.push(".authcookie");
                (Some(PathBuf::from(c)), true)
            }
            ControlAddr::Tcp(a) if a.ip().is_loopback() => (Some(DEBIAN_COOKIE.into()), false),
            ControlAddr::Tcp(_) | ControlAddr::Auto => (None, true),
        };
        AuthPolicy {
            cookie_file: configured_cookie.map(Path::to_owned).or(expected),
            cookie_configured: configured_cookie.is_some(),
            allow_null,
        }
    }
}

/// `(valid-after, valid-until)` of tor's current consensus, as unix times. Every step is
/// bounded by `timeout` (connect, each read and write).
pub fn consensus_window(
    addr: &ControlAddr,
    cookie: Option<&Path>,
    timeout: Duration,
) -> Result<(i64, i64), ControlError> {
    let addr = addr.resolve();
    let name = addr.to_string();
    let policy = addr.policy(cookie);
    let connect = |source| ControlError::Connect {
        addr: name.clone(),
        source,
    };
    let io = |source| ControlError::Io {
        addr: name.clone(),
        source,
    };
    let read = |p: &Path| std::fs::read(p);
    match &addr {
        ControlAddr::Tcp(a) => {
            let s = TcpStream::connect_timeout(a, timeout).map_err(connect)?;
            s.set_read_timeout(Some(timeout)).map_err(io)?;
            s.set_write_timeout(Some(timeout)).map_err(io)?;
            converse(s, &name, policy, rand::random(), &read)
        }
        ControlAddr::Unix(p) => {
            let s = UnixStream::connect(p).map_err(connect)?;
            s.set_read_timeout(Some(timeout)).map_err(io)?;
            s.set_write_timeout(Some(timeout)).map_err(io)?;
            converse(s, &name, policy, rand::random(), &read)
        }
        ControlAddr::Auto => unreachable!("resolved above"),
    }
}

/// Drives a [`Handshake`] over an open stream. `read` reads the cookie file (injected for
/// tests).
pub fn converse<S: Read + Write>(
    stream: S,
    addr: &str,
    policy: AuthPolicy,
    nonce: [u8; 32],
    read: &dyn Fn(&Path) -> io::Result<Vec<u8>>,
) -> Result<(i64, i64), ControlError> {
    let proto = |source| ControlError::Protocol {
        addr: addr.to_owned(),
        source,
    };
    let io = |source| ControlError::Io {
        addr: addr.to_owned(),
        source,
    };
    let mut r = BufReader::new(stream);
    let (mut h, mut action) = Handshake::new(policy, nonce);
    loop {
        action = match action {
            Action::Done {
                valid_after,
                valid_until,
            } => {
                let _ = r.get_mut().write_all(b"QUIT\r\n");
                return Ok((valid_after, valid_until));
            }
            Action::ReadCookie(path) => {
                let bytes = read(&path).map_err(|source| ControlError::Cookie {
                    addr: addr.to_owned(),
                    path: path.clone(),
                    source,
                })?;
                h.cookie(&bytes).map_err(proto)?
            }
            Action::Send(cmd) => {
                r.get_mut().write_all(cmd.as_bytes()).map_err(io)?;
                let mut reader = ReplyReader::default();
                let reply = loop {
                    let mut line = String::new();
                    let n = (&mut r)
                        .take(MAX_LINE as u64 + 2)
                        .read_line(&mut line)
                        .map_err(io)?;
                    if n == 0 {
                        return Err(ControlError::Closed {
                            addr: addr.to_owned(),
                        });
                    }
                    if let Some(reply) = reader
                        .line(line.trim_end_matches(['\r', '\n']))
                        .map_err(proto)?
                    {
                        break reply;
                    }
                };
                h.reply(&reply).map_err(proto)?
            }
        };
    }
}

/// Reads `/run/sdwdate` (or another directory) as a reader sees it.
pub fn read_run_dir(dir: &Path) -> Files {
    let text = |n: &str| std::fs::read_to_string(dir.join(n)).ok();
    Files {
        status: text(STATUS),
        msg: text(MSG).map(|m| m.trim().to_owned()),
        success: dir.join(SUCCESS).exists(),
        first_success: dir.join(FIRST_SUCCESS).exists(),
        fail: dir.join(FAIL).exists(),
    }
}

/// max of `floor` and every readable file's minimum time (see [`crate::time::parse_minimum`]);
/// files with other contents are returned in the second list, for a warning.
pub fn minimum_from_files(floor: i64, files: &[&Path]) -> (i64, Vec<PathBuf>) {
    let mut min = floor;
    let mut bad = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        match crate::time::parse_minimum(&text) {
            Some(t) => min = min.max(t),
            None => bad.push(f.to_path_buf()),
        }
    }
    (min, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A scripted peer: reads are the canned replies, writes are recorded.
    struct Peer {
        replies: Cursor<Vec<u8>>,
        sent: Vec<u8>,
    }
    impl Read for Peer {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.replies.read(b)
        }
    }
    impl Write for Peer {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.sent.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn drives_the_conversation_and_names_the_cookie_file() {
        let replies = "250-AUTH METHODS=NULL\r\n250 OK\r\n250 OK\r\n250-consensus/valid-after=2026-11-25 19:00:00\r\n250 OK\r\n250-consensus/valid-until=2026-11-25 22:00:00\r\n250 OK\r\n";
        let mut p = Peer {
            replies: Cursor::new(replies.into()),
            sent: Vec::new(),
        };
        let policy = ControlAddr::Unix(DEBIAN_SOCKET.into()).policy(None);
        let w = converse(&mut p, "t", policy.clone(), [0; 32], &|_| unreachable!());
        assert_eq!(w.expect("window"), (1_795_633_200, 1_795_644_000));
        assert!(String::from_utf8_lossy(&p.sent).ends_with("QUIT\r\n"));
        let p = Peer {
            replies: Cursor::new(b"250-AUTH METHODS=SAFECOOKIE\r\n250 OK\r\n".to_vec()),
            sent: Vec::new(),
        };
        let deny = |_: &Path| -> io::Result<Vec<u8>> {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        };
        let e = converse(p, "t", policy, [0; 32], &deny).expect_err("denied");
        assert!(e.to_string().contains(DEBIAN_COOKIE), "{e}");
        let p = Peer {
            replies: Cursor::new(b"250-AUTH".to_vec()),
            sent: Vec::new(),
        };
        let e = converse(
            p,
            "t",
            AuthPolicy {
                cookie_file: None,
                cookie_configured: false,
                allow_null: true,
            },
            [0; 32],
            &deny,
        );
        assert!(matches!(e, Err(ControlError::Closed { .. })), "{e:?}");
    }

    #[test]
    fn addresses_and_policies() {
        assert_eq!("auto".parse::<ControlAddr>().ok(), Some(ControlAddr::Auto));
        assert_eq!(
            "unix:/run/tor/control".parse::<ControlAddr>().ok(),
            Some(ControlAddr::Unix(DEBIAN_SOCKET.into()))
        );
        assert_eq!(
            "/run/tor/control".parse::<ControlAddr>().ok(),
            Some(ControlAddr::Unix(DEBIAN_SOCKET.into()))
        );
        assert_eq!(
            "127.0.0.1:9051".parse::<ControlAddr>().ok(),
            Some(ControlAddr::Tcp(DEFAULT_PORT))
        );
        for bad in ["unix:relative", "localhost", "9051", ""] {
            assert!(bad.parse::<ControlAddr>().is_err(), "{bad}");
        }
        assert_eq!(ControlAddr::Unix("/x".into()).to_string(), "unix:/x");
        let sock = ControlAddr::Unix(DEBIAN_SOCKET.into()).policy(None);
        assert_eq!(sock.cookie_file.as_deref(), Some(Path::new(DEBIAN_COOKIE)));
        assert!(sock.allow_null && !sock.cookie_configured);
        let local = ControlAddr::Tcp(DEFAULT_PORT).policy(None);
        assert!(!local.allow_null);
        let gw: ControlAddr = "10.152.152.10:9051".parse().expect("addr");
        assert_eq!(gw.policy(None).cookie_file, None);
        let set = gw.policy(Some(Path::new("/c")));
        assert!(set.cookie_configured && set.cookie_file.as_deref() == Some(Path::new("/c")));
    }
}
