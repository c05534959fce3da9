//! Tor's consensus window from its control port, written once for sdwdate and timesync-check.
//!
//! Debian's tor listens on a control *socket* (`/run/tor/control`, group debian-tor) with its
//! cookie in `/run/tor/control.authcookie` (group-readable); other setups use a TCP
//! ControlPort (9051). [`ControlAddr::Auto`] tries the socket first, as stem does. Only NULL
//! and COOKIE authentication are spoken: a password would have to sit in a config file.
//!
//! The protocol part ([`converse`]) is generic over the stream, so it is tested without tor.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Debian's control socket (tor-service-defaults-torrc: `ControlSocket /run/tor/control`).
pub const DEBIAN_SOCKET: &str = "/run/tor/control";
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
    #[error("control port {addr} refused: {line}")]
    Refused { addr: String, line: String },
    #[error("control port {addr} closed the connection")]
    Closed { addr: String },
    #[error(
        "control port {addr} wants a password; only NULL and COOKIE authentication are supported"
    )]
    NeedsPassword { addr: String },
    #[error("control port {addr}: cookie {path}: {source}")]
    Cookie {
        addr: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("control port {addr}: no usable {key} in the answer (tor has no consensus yet?)")]
    Missing { addr: String, key: &'static str },
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
    let connect = |source| ControlError::Connect {
        addr: name.clone(),
        source,
    };
    let io = |source| ControlError::Io {
        addr: name.clone(),
        source,
    };
    match &addr {
        ControlAddr::Tcp(a) => {
            let s = TcpStream::connect_timeout(a, timeout).map_err(connect)?;
            s.set_read_timeout(Some(timeout)).map_err(io)?;
            s.set_write_timeout(Some(timeout)).map_err(io)?;
            converse(s, &name, cookie, &|p| std::fs::read(p))
        }
        ControlAddr::Unix(p) => {
            let s = UnixStream::connect(p).map_err(connect)?;
            s.set_read_timeout(Some(timeout)).map_err(io)?;
            s.set_write_timeout(Some(timeout)).map_err(io)?;
            converse(s, &name, cookie, &|p| std::fs::read(p))
        }
        ControlAddr::Auto => unreachable!("resolved above"),
    }
}

/// PROTOCOLINFO, AUTHENTICATE, GETINFO on an open stream. `read` reads the cookie file
/// (injected for tests). The cookie comes from `cookie`, else from PROTOCOLINFO's COOKIEFILE.
pub fn converse<S: Read + Write>(
    stream: S,
    addr: &str,
    cookie: Option<&Path>,
    read: &dyn Fn(&Path) -> io::Result<Vec<u8>>,
) -> Result<(i64, i64), ControlError> {
    let mut conn = Conn {
        r: BufReader::new(stream),
        addr,
    };
    let info = conn.ask("PROTOCOLINFO 1\r\n")?;
    let methods = info
        .iter()
        .find_map(|l| l.split("METHODS=").nth(1))
        .and_then(|r| r.split(' ').next())
        .unwrap_or("");
    let auth = if methods.split(',').any(|m| m == "NULL") {
        "AUTHENTICATE\r\n".to_owned()
    } else if methods
        .split(',')
        .any(|m| m == "COOKIE" || m == "SAFECOOKIE")
    {
        let path = match cookie {
            Some(p) => p.to_owned(),
            None => info
                .iter()
                .find_map(|l| l.split("COOKIEFILE=\"").nth(1)?.split('"').next())
                .map(PathBuf::from)
                .ok_or_else(|| ControlError::NeedsPassword {
                    addr: addr.to_owned(),
                })?,
        };
        let c = read(&path).map_err(|source| ControlError::Cookie {
            addr: addr.to_owned(),
            path: path.clone(),
            source,
        })?;
        format!(
            "AUTHENTICATE {}\r\n",
            c.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    } else {
        return Err(ControlError::NeedsPassword {
            addr: addr.to_owned(),
        });
    };
    conn.ask(&auth)?;
    let got = conn.ask("GETINFO consensus/valid-after consensus/valid-until\r\n")?;
    let value = |key: &'static str| {
        got.iter()
            .find_map(|l| l.split(&format!("{key}=")).nth(1))
            .and_then(parse_time)
            .ok_or(ControlError::Missing {
                addr: addr.to_owned(),
                key,
            })
    };
    let window = (
        value("consensus/valid-after")?,
        value("consensus/valid-until")?,
    );
    let _ = conn.r.get_mut().write_all(b"QUIT\r\n");
    Ok(window)
}

struct Conn<'a, S> {
    r: BufReader<S>,
    addr: &'a str,
}

impl<S: Read + Write> Conn<'_, S> {
    /// Sends one command and reads its reply up to the final `250 ` line.
    fn ask(&mut self, cmd: &str) -> Result<Vec<String>, ControlError> {
        let io = |source| ControlError::Io {
            addr: self.addr.to_owned(),
            source,
        };
        self.r.get_mut().write_all(cmd.as_bytes()).map_err(io)?;
        let mut out = Vec::new();
        // A reply is a few lines; a peer that streams forever is cut off.
        for _ in 0..64 {
            let mut line = String::new();
            let n = (&mut self.r)
                .take(4096)
                .read_line(&mut line)
                .map_err(|source| ControlError::Io {
                    addr: self.addr.to_owned(),
                    source,
                })?;
            if n == 0 {
                return Err(ControlError::Closed {
                    addr: self.addr.to_owned(),
                });
            }
            let line = line.trim_end().to_owned();
            if !line.starts_with("250") {
                return Err(ControlError::Refused {
                    addr: self.addr.to_owned(),
                    line,
                });
            }
            let last = line.as_bytes().get(3) == Some(&b' ');
            out.push(line);
            if last {
                return Ok(out);
            }
        }
        Err(ControlError::Refused {
            addr: self.addr.to_owned(),
            line: "a reply of more than 64 lines".into(),
        })
    }
}

/// Days since 1970-01-01 of a Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Tor's `YYYY-MM-DD HH:MM:SS` (UTC, optionally quoted) as unix time.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim().trim_matches('"');
    let (date, time) = s.split_once(' ')?;
    let num = |p: &str| {
        p.parse::<i64>()
            .ok()
            .filter(|_| p.bytes().all(|b| b.is_ascii_digit()))
    };
    let d: Vec<i64> = date.split('-').map(num).collect::<Option<_>>()?;
    let t: Vec<i64> = time.split(':').map(num).collect::<Option<_>>()?;
    let [y, mo, da] = <[i64; 3]>::try_from(d).ok()?;
    let [h, mi, se] = <[i64; 3]>::try_from(t).ok()?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + se)
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
    fn peer(replies: &str) -> Peer {
        Peer {
            replies: Cursor::new(replies.as_bytes().to_vec()),
            sent: Vec::new(),
        }
    }
    const WINDOW: &str = "250-consensus/valid-after=2026-11-25 19:00:00\r\n250-consensus/valid-until=2026-11-25 22:00:00\r\n250 OK\r\n";

    #[test]
    fn cookie_from_protocolinfo_like_debian() {
        let replies = format!(
            "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE=\"/run/tor/control.authcookie\"\r\n250-VERSION Tor=\"0.4.8\"\r\n250 OK\r\n250 OK\r\n{WINDOW}"
        );
        let mut p = peer(&replies);
        let read = |path: &Path| {
            assert_eq!(path, Path::new("/run/tor/control.authcookie"));
            Ok(vec![0xab, 0x01])
        };
        let (a, u) = converse(&mut p, "t", None, &read).expect("window");
        assert_eq!((a, u - a), (1_795_633_200, 3 * 3600));
        let sent = String::from_utf8(p.sent).expect("utf8");
        assert!(sent.contains("AUTHENTICATE ab01\r\n"), "{sent}");
    }

    #[test]
    fn null_auth_and_failures() {
        let ok = format!("250-AUTH METHODS=NULL\r\n250 OK\r\n250 OK\r\n{WINDOW}");
        let none = |_: &Path| -> io::Result<Vec<u8>> { panic!("no cookie for NULL") };
        assert!(converse(peer(&ok), "t", None, &none).is_ok());
        // Refused authentication, a password-only tor, no consensus yet, a closed peer.
        let bad_auth = "250-AUTH METHODS=NULL\r\n250 OK\r\n515 Authentication failed\r\n";
        assert!(matches!(
            converse(peer(bad_auth), "t", None, &none),
            Err(ControlError::Refused { .. })
        ));
        let pw = "250-AUTH METHODS=HASHEDPASSWORD\r\n250 OK\r\n";
        assert!(matches!(
            converse(peer(pw), "t", None, &none),
            Err(ControlError::NeedsPassword { .. })
        ));
        let no_consensus =
            "250-AUTH METHODS=NULL\r\n250 OK\r\n250 OK\r\n551 Could not open cached consensus\r\n";
        assert!(matches!(
            converse(peer(no_consensus), "t", None, &none),
            Err(ControlError::Refused { .. })
        ));
        let garbled = "250-AUTH METHODS=NULL\r\n250 OK\r\n250 OK\r\n250-consensus/valid-after=yesterday\r\n250 OK\r\n";
        assert!(matches!(
            converse(peer(garbled), "t", None, &none),
            Err(ControlError::Missing { .. })
        ));
        assert!(matches!(
            converse(peer("250-AUTH"), "t", None, &none),
            Err(ControlError::Closed { .. })
        ));
        let endless = "250-x\r\n".repeat(100);
        assert!(converse(peer(&endless), "t", None, &none).is_err());
    }

    #[test]
    fn unreadable_cookie_is_an_error_naming_the_file() {
        let r = "250-AUTH METHODS=COOKIE COOKIEFILE=\"/nope\"\r\n250 OK\r\n";
        let deny = |_: &Path| -> io::Result<Vec<u8>> {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        };
        let e = converse(peer(r), "t", None, &deny).expect_err("denied");
        assert!(e.to_string().contains("/nope"), "{e}");
    }

    #[test]
    fn addresses() {
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
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("2026-11-25 19:00:00"), Some(1_795_633_200));
        assert_eq!(parse_time("\"1970-01-01 00:00:00\""), Some(0));
        for bad in [
            "2026-13-01 00:00:00",
            "2026-11-25",
            "2026-11-25 24:00:00",
            "2026-+1-25 19:00:00",
            "2026-11-25 19:00:00:00",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
