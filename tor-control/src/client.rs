//! The blocking shell around [`crate::proto`]: connect, feed lines, read the cookie, and read
//! `/run/sdwdate` for its readers. Every step is bounded by a timeout.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::proto::{Action, Answer, AuthPolicy, Handshake, ProtoError, ReplyReader, MAX_LINE};
use crate::run_dir::{Files, FAIL, FIRST_SUCCESS, MSG, PID, STATUS, SUCCESS};

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

/// Debian's tor package: where it is installed, its control socket is the control port, and
/// `auto` waits for that socket (tor restarting, or still starting at boot) instead of trying
/// 127.0.0.1:9051, where anyone may listen meanwhile.
pub const DEBIAN_TOR_DEFAULTS: &str = "/usr/share/tor/tor-service-defaults-torrc";

impl ControlAddr {
    /// `Auto` made concrete, looking at the file system.
    pub fn resolve(&self) -> ControlAddr {
        match self {
            ControlAddr::Auto
                if Path::new(DEBIAN_SOCKET).exists() || Path::new(DEBIAN_TOR_DEFAULTS).exists() =>
            {
                ControlAddr::Unix(PathBuf::from(DEBIAN_SOCKET))
            }
            ControlAddr::Auto => ControlAddr::Tcp(DEFAULT_PORT),
            a => a.clone(),
        }
    }

    /// Whom to trust at this (resolved) address. The cookie file is the configured one, else
    /// `<socket>.authcookie` beside a socket (Debian's layout), else Debian's cookie for a port
    /// on this host; none for a port on another host.
    ///
    /// NULL authentication only where nobody else can listen first: a socket in a directory
    /// that no group or other user may write (Debian's /run/tor), or a port on another host
    /// (the Whonix gateway's onion-grater). A port on this host (loopback, any local address,
    /// the unspecified address) can be bound by any local user before tor. Plain COOKIE only on
    /// a socket, with a configured cookie file.
    pub fn policy(&self, configured_cookie: Option<&Path>) -> AuthPolicy {
        let (expected, allow_null, socket) = match self {
            ControlAddr::Unix(p) => {
                let mut c = p.clone().into_os_string();
                c.push(".authcookie");
                (Some(PathBuf::from(c)), private_dir(p), true)
            }
            ControlAddr::Tcp(a) if is_local(a.ip()) => (Some(DEBIAN_COOKIE.into()), false, false),
            ControlAddr::Tcp(_) | ControlAddr::Auto => (None, true, false),
        };
        AuthPolicy {
            cookie_file: configured_cookie.map(Path::to_owned).or(expected),
            cookie_configured: configured_cookie.is_some(),
            allow_plain_cookie: socket && configured_cookie.is_some(),
            allow_null,
        }
    }
}

/// An address of this host: loopback, unspecified, or one of its interfaces' addresses.
/// (Not "can a socket bind it" first: in a network namespace whose interfaces are down, any
/// address binds.) Where the interfaces cannot be listed (sdwdate's unit allows no netlink
/// socket), an address a UDP socket can bind counts as local.
pub fn is_local(ip: std::net::IpAddr) -> bool {
    let ip = ip.to_canonical();
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return std::net::UdpSocket::bind((ip, 0)).is_ok();
    };
    addrs.filter_map(|a| a.address).any(|a| {
        let found = a
            .as_sockaddr_in()
            .map(|s| std::net::IpAddr::V4(s.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|s| std::net::IpAddr::V6(s.ip())));
        found.is_some_and(|f| f.to_canonical() == ip)
    })
}

/// The socket's directory may be written by its owner only (so only that owner, or root,
/// could have put a socket there). A missing directory counts as not private.
fn private_dir(socket: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    socket
        .parent()
        .and_then(|d| std::fs::metadata(d).ok())
        .is_some_and(|m| m.mode() & 0o022 == 0)
}

/// Reads a cookie file: a regular file (no symlink followed, no FIFO waited on) of at most 64
/// bytes; the protocol checks that it has 32.
fn read_cookie(path: &Path) -> io::Result<Vec<u8>> {
    small_file(path, 64)
}

/// A regular file of at most `max` bytes, opened without following a symlink or blocking.
fn small_file(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if meta.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A stream that refuses to read or write after a deadline: with a timeout per read alone, a
/// peer sending a byte now and then could hold a conversation open for weeks.
struct Deadline<S> {
    inner: S,
    until: Instant,
}

impl<S> Deadline<S> {
    fn check(&self) -> io::Result<()> {
        if Instant::now() > self.until {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the conversation took too long",
            ));
        }
        Ok(())
    }
}

impl<S: Read> Read for Deadline<S> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        self.inner.read(b)
    }
}

impl<S: Write> Write for Deadline<S> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.check()?;
        self.inner.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `(valid-after, valid-until)` of tor's current consensus, as unix times. The connect, each
/// read and write, and the whole conversation are bounded by `timeout`.
pub fn consensus_window(
    addr: &ControlAddr,
    cookie: Option<&Path>,
    timeout: Duration,
) -> Result<(i64, i64), ControlError> {
    query(addr, cookie, timeout, false).map(|(w, _)| w)
}

/// [`consensus_window`], and if `socks`, the SocksPorts tor says it listens on.
pub fn query(
    addr: &ControlAddr,
    cookie: Option<&Path>,
    timeout: Duration,
    socks: bool,
) -> Result<Answer, ControlError> {
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
    let until = Instant::now() + timeout;
    match &addr {
        ControlAddr::Tcp(a) => {
            let s = TcpStream::connect_timeout(a, timeout).map_err(connect)?;
            s.set_read_timeout(Some(timeout)).map_err(io)?;
            s.set_write_timeout(Some(timeout)).map_err(io)?;
            let s = Deadline { inner: s, until };
            converse_with(s, &name, policy, rand::random(), &read_cookie, socks)
        }
        ControlAddr::Unix(p) => {
            let s = UnixStream::connect(p).map_err(connect)?;
            s.set_read_timeout(Some(timeout)).map_err(io)?;
            s.set_write_timeout(Some(timeout)).map_err(io)?;
            let s = Deadline { inner: s, until };
            converse_with(s, &name, policy, rand::random(), &read_cookie, socks)
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
    converse_with(stream, addr, policy, nonce, read, false).map(|(w, _)| w)
}

/// [`converse`], asking for tor's SOCKS listeners too if `socks`.
pub fn converse_with<S: Read + Write>(
    stream: S,
    addr: &str,
    policy: AuthPolicy,
    nonce: [u8; 32],
    read: &dyn Fn(&Path) -> io::Result<Vec<u8>>,
    socks: bool,
) -> Result<Answer, ControlError> {
    let proto = |source| ControlError::Protocol {
        addr: addr.to_owned(),
        source,
    };
    let io = |source| ControlError::Io {
        addr: addr.to_owned(),
        source,
    };
    let mut r = BufReader::new(stream);
    let (h, mut action) = Handshake::new(policy, nonce);
    let mut h = if socks { h.asking_socks() } else { h };
    loop {
        action = match action {
            Action::Done {
                valid_after,
                valid_until,
                socks,
            } => {
                let _ = r.get_mut().write_all(b"QUIT\r\n");
                return Ok(((valid_after, valid_until), socks));
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

/// Reads `/run/sdwdate` (or another directory) as a reader sees it. The directory belongs to
/// user sdwdate, and readers may run as root: no symlink is followed, no FIFO waited on, and
/// no file is read past 64 KiB.
pub fn read_run_dir(dir: &Path) -> Files {
    let text = |n: &str| {
        small_file(&dir.join(n), 64 * 1024)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    // sdwdate rewrites `status` in place (truncate, then write: the inode upstream's readers
    // watch stays the same), so a reader can catch it empty or half-written for an instant.
    // Such a read is taken again, a few times over 50 ms; a status still empty then is the
    // empty file tmpfiles makes at boot (sdwdate not running yet).
    let mut status = text(STATUS);
    for _ in 0..10 {
        let whole = status.as_deref().is_none_or(|s| {
            serde_json::from_str::<serde_json::Value>(s).is_ok_and(|v| v.get("icon").is_some())
        });
        if whole {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        status = text(STATUS);
    }
    Files {
        status,
        msg: text(MSG).map(|m| m.trim().to_owned()),
        success: dir.join(SUCCESS).exists(),
        first_success: dir.join(FIRST_SUCCESS).exists(),
        fail: dir.join(FAIL).exists(),
        running: text(PID).is_some_and(|p| alive(&p)),
    }
}

/// Whether the pid in `text` is a live sdwdate. `kill(pid, 0)` answers for another user's
/// process too (EPERM: it exists), whatever /proc's hidepid hides; where /proc shows the
/// process, its name must be sdwdate's, so that a pid reused after an unclean death (the
/// unit's stop hook removes the file after any exit, but a daemon run by hand has none) is
/// not taken for it.
fn alive(text: &str) -> bool {
    use nix::errno::Errno;
    let pid = match text.trim().parse::<i32>() {
        Ok(pid) if pid > 1 => pid,
        _ => return false,
    };
    let exists = matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Ok(()) | Err(Errno::EPERM)
    );
    exists
        && match small_file(Path::new(&format!("/proc/{pid}/comm")), 64) {
            Ok(comm) => comm.strip_suffix(b"\n").unwrap_or(&comm) == b"sdwdate",
            // Hidden (hidepid): the signal's answer is all there is.
            Err(_) => true,
        }
}

/// max of `floor` and every readable file's minimum time (see [`crate::time::parse_minimum`]);
/// files with other contents are returned in the second list, for a warning.
pub fn minimum_from_files(floor: i64, files: &[&Path]) -> (i64, Vec<PathBuf>) {
    let mut min = floor;
    let mut bad = Vec::new();
    for f in files {
        let Ok(bytes) = small_file(f, 4096) else {
            continue;
        };
        match crate::time::parse_minimum(&String::from_utf8_lossy(&bytes)) {
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
        let replies = "250-AUTH METHODS=NULL\r\n250 OK\r\n250 OK\r\n250-consensus/valid-after=2026-11-25 19:00:00\r\n250 OK\r\n250-consensus/valid-until=2026-11-25 22:00:00\r\n250 OK\r\n552 Unrecognized key \"consensus/fresh-until\"\r\n";
        let mut p = Peer {
            replies: Cursor::new(replies.into()),
            sent: Vec::new(),
        };
        let policy = AuthPolicy {
            cookie_file: Some(DEBIAN_COOKIE.into()),
            cookie_configured: false,
            allow_plain_cookie: false,
            allow_null: true,
        };
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
                allow_plain_cookie: false,
                allow_null: true,
            },
            [0; 32],
            &deny,
        );
        assert!(matches!(e, Err(ControlError::Closed { .. })), "{e:?}");
    }

    #[test]
    fn a_conversation_past_its_deadline_ends() {
        let mut late = Deadline {
            inner: Cursor::new(b"250 OK\r\n".to_vec()),
            until: Instant::now() - Duration::from_secs(1),
        };
        let mut b = [0u8; 8];
        assert_eq!(
            late.read(&mut b).map_err(|e| e.kind()),
            Err(io::ErrorKind::TimedOut)
        );
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
        // /run/tor may not exist here: then the socket's directory is not known to be private.
        assert!(!sock.allow_plain_cookie);
        for local in [
            "127.0.0.1:9051",
            "[::1]:9051",
            "[::ffff:127.0.0.1]:9051",
            "0.0.0.0:9051",
        ] {
            let p = local.parse::<ControlAddr>().expect("addr").policy(None);
            assert!(
                !p.allow_null && p.cookie_file.as_deref() == Some(Path::new(DEBIAN_COOKIE)),
                "{local}"
            );
        }
        // A socket in a directory others may write: no NULL there.
        assert!(
            !ControlAddr::Unix("/tmp/control".into())
                .policy(None)
                .allow_null
        );
        let dir = std::env::temp_dir().join(format!("tc-priv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).expect("chmod");
        let private = ControlAddr::Unix(dir.join("control")).policy(Some(Path::new("/c")));
        assert!(private.allow_null && private.allow_plain_cookie);
        // Cookie files: regular, small, never through a symlink.
        std::fs::write(dir.join("cookie"), [7u8; 32]).expect("write");
        assert_eq!(read_cookie(&dir.join("cookie")).expect("read").len(), 32);
        std::os::unix::fs::symlink("/dev/zero", dir.join("link")).expect("symlink");
        assert!(read_cookie(&dir.join("link")).is_err());
        assert!(read_cookie(Path::new("/dev/zero")).is_err());
        std::fs::write(dir.join("big"), vec![0u8; 100]).expect("write");
        assert!(read_cookie(&dir.join("big")).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
        let gw: ControlAddr = "10.152.152.10:9051".parse().expect("addr");
        assert_eq!(gw.policy(None).cookie_file, None);
        let set = gw.policy(Some(Path::new("/c")));
        assert!(!set.allow_plain_cookie && set.cookie_file.as_deref() == Some(Path::new("/c")));
    }
}
