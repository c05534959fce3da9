//! The control-port conversation that yields the consensus window, sans I/O: fed reply lines
//! and the cookie's bytes, it says what to send next. The shell ([`crate::client`]) owns the
//! socket; the tests feed transcripts.
//!
//! Who may answer is the point of this module. A control port on 127.0.0.1 can be bound by any
//! local user before tor starts, so:
//! - SAFECOOKIE is preferred: the peer must prove it knows the cookie (its server hash is
//!   checked) before we prove it (HMAC, the cookie itself never leaves);
//! - the cookie is read only from the configured or expected file, never from a path the peer
//!   names (a squatter would name a file it wrote itself);
//! - plain COOKIE (which hands the cookie to the peer) only when SAFECOOKIE is not offered, on
//!   a control socket, with a cookie path the admin configured (every tor since 0.2.3 offers
//!   SAFECOOKIE; on a TCP port a squatter would simply ask for COOKIE);
//! - NULL (no authentication) only where nobody else can listen first: a socket in tor's own
//!   directory, or a port on another host (the Whonix gateway's onion-grater).
//!
//! One GETINFO per key: onion-grater filters GETINFO per argument list.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The most lines one reply may have; a peer that streams forever is cut off.
pub const MAX_REPLY_LINES: usize = 64;
/// The longest line accepted.
pub const MAX_LINE: usize = 4096;

const SERVER_KEY: &[u8] = b"Tor safe cookie authentication server-to-controller hash";
const CLIENT_KEY: &[u8] = b"Tor safe cookie authentication controller-to-server hash";
/// Asked in this order; the last is optional (a filtering proxy such as onion-grater may
/// refuse it): the window's order and width are checked without it.
const KEYS: [&str; 3] = [
    "consensus/valid-after",
    "consensus/valid-until",
    "consensus/fresh-until",
];
const FRESH: usize = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    /// Tor (or onion-grater) answered with an error code, and these lines.
    #[error("refused: {code} {}", lines.join(" / "))]
    Refused { code: u16, lines: Vec<String> },
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    #[error("a reply of more than {MAX_REPLY_LINES} lines")]
    TooLong,
    #[error("it wants a password; only SAFECOOKIE, COOKIE and NULL authentication are supported")]
    NeedsPassword,
    #[error("it offers no authentication, but it is a TCP port on this host, which any local user could have bound before tor (use tor's control socket, or cookie authentication)")]
    NullOnLoopback,
    #[error("it names the cookie file {named}, not the expected {expected}: refused (a squatter names a file it wrote)")]
    UnexpectedCookieFile { named: PathBuf, expected: PathBuf },
    #[error("it wants cookie authentication, but there is no cookie file to trust here (set the cookie file explicitly)")]
    NoCookieFile,
    #[error("it offers only COOKIE, which hands the cookie to whoever listens; allowed only on a control socket with an explicitly configured cookie file")]
    CookieWithoutSafeCookie,
    #[error("cookie {path} has {len} bytes, not 32")]
    CookieLength { path: PathBuf, len: usize },
    #[error("its SAFECOOKIE server hash is wrong: it does not know tor's cookie (a squatter?)")]
    ServerHash,
    #[error("no usable {0} in the answer (tor has no consensus yet?)")]
    Missing(&'static str),
    #[error("its consensus window cannot be Tor's: {0}")]
    Implausible(#[from] crate::time::ImplausibleWindow),
    #[error("the conversation is already over")]
    Finished,
}

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write this command line (with its CRLF) and feed the reply's lines.
    Send(String),
    /// Read this file and pass its bytes to [`Handshake::cookie`].
    ReadCookie(PathBuf),
    /// The window (and, if asked for, tor's SOCKS listeners as it writes them: `127.0.0.1:9050`,
    /// `[::1]:9050`, `unix:/run/tor/socks`); the shell may send `QUIT` and close.
    Done {
        valid_after: i64,
        valid_until: i64,
        socks: Option<Vec<String>>,
    },
}

/// Whom to trust, decided from the address before connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPolicy {
    /// The only cookie file that is read: the configured one, else the one expected for the
    /// address (`None`: no cookie can be trusted, e.g. a port on another host).
    pub cookie_file: Option<PathBuf>,
    /// The admin named `cookie_file`: the peer's COOKIEFILE is then not looked at (a control
    /// port on another host names a path on that host). Unset, a COOKIEFILE other than the
    /// expected file is refused.
    pub cookie_configured: bool,
    /// Plain COOKIE is acceptable: a control socket whose cookie file the admin configured.
    pub allow_plain_cookie: bool,
    /// NULL authentication is acceptable (not on a loopback TCP port).
    pub allow_null: bool,
}

/// One complete reply: the status code and the text of each line (after `250-`, `250 `...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

/// Collects lines into replies (`250-a`, `250+data` ... `.`, `250 OK`).
#[derive(Debug, Default)]
pub struct ReplyReader {
    lines: Vec<String>,
    in_data: bool,
}

impl ReplyReader {
    /// Feeds one line (without CRLF). `Some` once the reply is complete.
    pub fn line(&mut self, line: &str) -> Result<Option<Reply>, ProtoError> {
        if line.len() > MAX_LINE {
            return Err(ProtoError::TooLong);
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ProtoError::TooLong);
        }
        if self.in_data {
            if line == "." {
                self.in_data = false;
            } else {
                self.lines
                    .push(line.strip_prefix('.').unwrap_or(line).to_owned());
            }
            return Ok(None);
        }
        let malformed = || ProtoError::Malformed(line.chars().take(80).collect());
        let code: u16 = line
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse().ok())
            .ok_or_else(malformed)?;
        let sep = line.as_bytes().get(3).copied().unwrap_or(b' ');
        let text = line.get(4..).unwrap_or("").to_owned();
        self.lines.push(text);
        match sep {
            b' ' => Ok(Some(Reply {
                code,
                lines: std::mem::take(&mut self.lines),
            })),
            b'-' => Ok(None),
            b'+' => {
                self.in_data = true;
                Ok(None)
            }
            _ => Err(malformed()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    ProtocolInfo,
    Cookie {
        safe: bool,
    },
    Challenge {
        cookie: Vec<u8>,
    },
    Authenticate,
    GetInfo {
        key: usize,
    },
    /// The window is known and plausible; tor's SOCKS listeners asked for.
    Socks {
        valid_after: i64,
        valid_until: i64,
    },
    Done,
}

/// The SocksPorts tor itself says it listens on (`GETINFO net/listeners/socks`).
pub const SOCKS_KEY: &str = "net/listeners/socks";

/// The conversation: PROTOCOLINFO, authentication, one GETINFO per key.
#[derive(Debug)]
pub struct Handshake {
    policy: AuthPolicy,
    client_nonce: [u8; 32],
    state: State,
    values: [Option<i64>; 3],
    /// Also ask for tor's SOCKS listeners (after the window).
    want_socks: bool,
}

impl Handshake {
    /// The conversation and its first command. `client_nonce` must be random (SAFECOOKIE).
    pub fn new(policy: AuthPolicy, client_nonce: [u8; 32]) -> (Handshake, Action) {
        let h = Handshake {
            policy,
            client_nonce,
            state: State::ProtocolInfo,
            values: [None; 3],
            want_socks: false,
        };
        (h, Action::Send("PROTOCOLINFO 1\r\n".into()))
    }

    /// Also asks for the SocksPorts tor listens on, so that the caller can tell tor's port
    /// from one a local user bound first; [`Action::Done`] then carries them.
    pub fn asking_socks(mut self) -> Handshake {
        self.want_socks = true;
        self
    }

    /// Feeds a complete reply to the last command.
    pub fn reply(&mut self, r: &Reply) -> Result<Action, ProtoError> {
        if r.code != 250 && self.state == (State::GetInfo { key: FRESH }) {
            return self.done();
        }
        if r.code != 250 {
            return Err(ProtoError::Refused {
                code: r.code,
                lines: r.lines.clone(),
            });
        }
        match std::mem::replace(&mut self.state, State::Done) {
            State::ProtocolInfo => self.protocol_info(r),
            State::Challenge { cookie } => self.challenge(r, &cookie),
            State::Authenticate => self.get_info(0),
            State::Socks {
                valid_after,
                valid_until,
            } => {
                let value = r
                    .lines
                    .iter()
                    .find_map(|l| l.strip_prefix(SOCKS_KEY)?.strip_prefix('='))
                    .ok_or(ProtoError::Missing(SOCKS_KEY))?;
                self.state = State::Done;
                Ok(Action::Done {
                    valid_after,
                    valid_until,
                    socks: Some(quoted_list(value)),
                })
            }
            State::GetInfo { key } => {
                let name = KEYS[key];
                let v = r
                    .lines
                    .iter()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                    .and_then(crate::time::parse_time)
                    .ok_or(ProtoError::Missing(name))?;
                self.values[key] = Some(v);
                if key == FRESH {
                    self.done()
                } else {
                    self.get_info(key + 1)
                }
            }
            State::Cookie { .. } | State::Done => Err(ProtoError::Finished),
        }
    }

    /// Feeds the bytes of the cookie file asked for with [`Action::ReadCookie`].
    pub fn cookie(&mut self, bytes: &[u8]) -> Result<Action, ProtoError> {
        let State::Cookie { safe } = std::mem::replace(&mut self.state, State::Done) else {
            return Err(ProtoError::Finished);
        };
        if bytes.len() != 32 {
            return Err(ProtoError::CookieLength {
                // Set: the cookie is asked for only when the policy names its file.
                path: self.policy.cookie_file.clone().unwrap_or_default(),
                len: bytes.len(),
            });
        }
        if safe {
            self.state = State::Challenge {
                cookie: bytes.to_vec(),
            };
            Ok(Action::Send(format!(
                "AUTHCHALLENGE SAFECOOKIE {}\r\n",
                hex(&self.client_nonce)
            )))
        } else {
            self.state = State::Authenticate;
            Ok(Action::Send(format!("AUTHENTICATE {}\r\n", hex(bytes))))
        }
    }

    fn protocol_info(&mut self, r: &Reply) -> Result<Action, ProtoError> {
        let auth = r
            .lines
            .iter()
            .find_map(|l| l.strip_prefix("AUTH "))
            .unwrap_or("");
        let methods: Vec<&str> = field(auth, "METHODS")
            .map(|m| m.split(',').collect())
            .unwrap_or_default();
        let named = quoted(auth, "COOKIEFILE").map(PathBuf::from);
        let has = |m: &str| methods.contains(&m);
        if has("NULL") && self.policy.allow_null {
            self.state = State::Authenticate;
            return Ok(Action::Send("AUTHENTICATE\r\n".into()));
        }
        if has("SAFECOOKIE") || has("COOKIE") {
            let expected = self
                .policy
                .cookie_file
                .clone()
                .ok_or(ProtoError::NoCookieFile)?;
            // The named file is never read: only compared, when no file was configured.
            if let Some(named) = named.filter(|_| !self.policy.cookie_configured) {
                if named != expected {
                    return Err(ProtoError::UnexpectedCookieFile { named, expected });
                }
            }
            let safe = has("SAFECOOKIE");
            if !safe && !self.policy.allow_plain_cookie {
                return Err(ProtoError::CookieWithoutSafeCookie);
            }
            self.state = State::Cookie { safe };
            return Ok(Action::ReadCookie(expected));
        }
        if has("NULL") {
            return Err(ProtoError::NullOnLoopback);
        }
        Err(ProtoError::NeedsPassword)
    }

    fn challenge(&mut self, r: &Reply, cookie: &[u8]) -> Result<Action, ProtoError> {
        let line = r
            .lines
            .iter()
            .find_map(|l| l.strip_prefix("AUTHCHALLENGE "))
            .ok_or_else(|| ProtoError::Malformed(r.lines.join(" / ")))?;
        let bad = || ProtoError::Malformed(line.chars().take(200).collect());
        let server_hash = field(line, "SERVERHASH").and_then(unhex).ok_or_else(bad)?;
        let server_nonce = field(line, "SERVERNONCE").and_then(unhex).ok_or_else(bad)?;
        let mac = |key: &[u8]| {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
            m.update(cookie);
            m.update(&self.client_nonce);
            m.update(&server_nonce);
            m
        };
        // Constant-time comparison: the peer learns nothing from how fast we refuse.
        mac(SERVER_KEY)
            .verify_slice(&server_hash)
            .map_err(|_| ProtoError::ServerHash)?;
        let client_hash = mac(CLIENT_KEY).finalize().into_bytes();
        self.state = State::Authenticate;
        Ok(Action::Send(format!(
            "AUTHENTICATE {}\r\n",
            hex(&client_hash)
        )))
    }

    /// All asked: the window, if Tor could have made it.
    fn done(&mut self) -> Result<Action, ProtoError> {
        self.state = State::Done;
        let [Some(valid_after), Some(valid_until), fresh_until] = self.values else {
            return Err(ProtoError::Finished);
        };
        crate::time::plausible_window(valid_after, fresh_until, valid_until)?;
        if self.want_socks {
            self.state = State::Socks {
                valid_after,
                valid_until,
            };
            return Ok(Action::Send(format!("GETINFO {SOCKS_KEY}\r\n")));
        }
        Ok(Action::Done {
            valid_after,
            valid_until,
            socks: None,
        })
    }

    fn get_info(&mut self, key: usize) -> Result<Action, ProtoError> {
        self.state = State::GetInfo { key };
        Ok(Action::Send(format!("GETINFO {}\r\n", KEYS[key])))
    }
}

/// Whether `proxy` is one of tor's SOCKS `listeners` (as [`SOCKS_KEY`] gives them): the same
/// address, or a wildcard listener (0.0.0.0, ::) on the same port and family.
pub fn is_tor_socks(listeners: &[String], proxy: std::net::SocketAddr) -> bool {
    listeners
        .iter()
        .filter_map(|l| l.parse::<std::net::SocketAddr>().ok())
        .any(|l| {
            l == proxy
                || (l.port() == proxy.port()
                    && l.ip().is_unspecified()
                    && l.is_ipv4() == proxy.is_ipv4())
        })
}

/// `"a" "b"`: the quoted strings, in order (tor quotes each listener; none inside).
fn quoted_list(value: &str) -> Vec<String> {
    value
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// `KEY=value` in a space-separated line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// `KEY="value"` (no escapes inside: tor writes paths as they are).
fn quoted<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.split(&format!("{key}=\"")).nth(1)?;
    rest.split('"').next()
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02X}");
            s
        })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a conversation gives: the window, and tor's SOCKS listeners if they were asked for.
pub type Answer = ((i64, i64), Option<Vec<String>>);

/// Runs a whole transcript through a [`Handshake`]: `replies` are the peer's lines, `cookie`
/// the file system. Returns the commands sent and the result. For tests and fuzzing.
pub fn run_transcript(
    policy: AuthPolicy,
    nonce: [u8; 32],
    replies: &str,
    cookie: &dyn Fn(&Path) -> Option<Vec<u8>>,
) -> (Vec<String>, Result<(i64, i64), ProtoError>) {
    let (sent, r) = run_transcript_with(policy, nonce, replies, cookie, false);
    (sent, r.map(|(w, _)| w))
}

/// [`run_transcript`], asking for tor's SOCKS listeners too if `socks`.
pub fn run_transcript_with(
    policy: AuthPolicy,
    nonce: [u8; 32],
    replies: &str,
    cookie: &dyn Fn(&Path) -> Option<Vec<u8>>,
    socks: bool,
) -> (Vec<String>, Result<Answer, ProtoError>) {
    let (h, mut action) = Handshake::new(policy, nonce);
    let mut h = if socks { h.asking_socks() } else { h };
    let mut sent = Vec::new();
    let mut lines = replies.split("\r\n");
    let mut reader = ReplyReader::default();
    let result = loop {
        match action {
            Action::Done {
                valid_after,
                valid_until,
                socks,
            } => break Ok(((valid_after, valid_until), socks)),
            Action::ReadCookie(p) => match cookie(&p) {
                Some(b) => match h.cookie(&b) {
                    Ok(a) => action = a,
                    Err(e) => break Err(e),
                },
                None => break Err(ProtoError::NoCookieFile),
            },
            Action::Send(cmd) => {
                sent.push(cmd);
                let reply = loop {
                    match lines.next() {
                        None | Some("") => break Err(ProtoError::Finished),
                        Some(l) => match reader.line(l) {
                            Ok(Some(r)) => break Ok(r),
                            Ok(None) => {}
                            Err(e) => break Err(e),
                        },
                    }
                };
                match reply.and_then(|r| h.reply(&r)) {
                    Ok(a) => action = a,
                    Err(e) => break Err(e),
                }
            }
        }
    };
    (sent, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOKIE: [u8; 32] = [7; 32];
    const NONCE: [u8; 32] = [1; 32];
    const SNONCE: [u8; 32] = [9; 32];
    const WINDOW: &str = "250-consensus/valid-after=2026-11-25 19:00:00\r\n250 OK\r\n250-consensus/valid-until=2026-11-25 22:00:00\r\n250 OK\r\n250-consensus/fresh-until=2026-11-25 20:00:00\r\n250 OK\r\n";

    fn debian() -> AuthPolicy {
        AuthPolicy {
            cookie_file: Some("/run/tor/control.authcookie".into()),
            cookie_configured: false,
            allow_plain_cookie: false,
            allow_null: true,
        }
    }

    fn server_hash(cookie: &[u8]) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(SERVER_KEY).expect("key");
        m.update(cookie);
        m.update(&NONCE);
        m.update(&SNONCE);
        hex(&m.finalize().into_bytes())
    }

    fn safecookie_transcript(hash: &str) -> String {
        format!(
            "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE=\"/run/tor/control.authcookie\"\r\n250-VERSION Tor=\"0.4.8.16\"\r\n250 OK\r\n\
             250 AUTHCHALLENGE SERVERHASH={hash} SERVERNONCE={}\r\n250 OK\r\n{WINDOW}",
            hex(&SNONCE)
        )
    }

    fn cookie(p: &Path) -> Option<Vec<u8>> {
        assert_eq!(
            p,
            Path::new("/run/tor/control.authcookie"),
            "only the expected file is read"
        );
        Some(COOKIE.to_vec())
    }

    #[test]
    fn safecookie_like_debians_tor() {
        let (sent, r) = run_transcript(
            debian(),
            NONCE,
            &safecookie_transcript(&server_hash(&COOKIE)),
            &cookie,
        );
        assert_eq!(r, Ok((1_795_633_200, 1_795_644_000)));
        assert_eq!(
            sent[1],
            format!("AUTHCHALLENGE SAFECOOKIE {}\r\n", hex(&NONCE))
        );
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(CLIENT_KEY).expect("key");
        m.update(&COOKIE);
        m.update(&NONCE);
        m.update(&SNONCE);
        assert_eq!(
            sent[2],
            format!("AUTHENTICATE {}\r\n", hex(&m.finalize().into_bytes()))
        );
        // One GETINFO per key, and the cookie itself never goes out.
        assert_eq!(
            sent[3..],
            [
                "GETINFO consensus/valid-after\r\n",
                "GETINFO consensus/valid-until\r\n",
                "GETINFO consensus/fresh-until\r\n"
            ]
        );
        assert!(!sent.iter().any(|s| s.contains(&hex(&COOKIE))));
    }

    /// The window must be one Tor could have made, whatever answers: a control port that
    /// hands out a decade-wide or reversed window bounds nothing. fresh-until may be refused
    /// (onion-grater filters keys it does not know): then order and width still count.
    #[test]
    fn an_implausible_window_is_refused_and_fresh_until_is_optional() {
        let null = "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250 OK\r\n250 OK\r\n";
        let unix = AuthPolicy {
            cookie_file: None,
            cookie_configured: false,
            allow_plain_cookie: false,
            allow_null: true,
        };
        let window = |after: &str, until: &str, fresh: &str| {
            format!(
                "{null}250-consensus/valid-after={after}\r\n250 OK\r\n250-consensus/valid-until={until}\r\n250 OK\r\n{fresh}"
            )
        };
        let fresh = |t: &str| format!("250-consensus/fresh-until={t}\r\n250 OK\r\n");
        let none = |_: &Path| -> Option<Vec<u8>> { None };
        let run = |t: &str| run_transcript(unix.clone(), NONCE, t, &none).1;
        let (a, u) = ("2026-11-25 19:00:00", "2026-11-25 22:00:00");
        assert_eq!(
            run(&window(a, u, &fresh("2026-11-25 20:00:00"))),
            Ok((1_795_633_200, 1_795_644_000))
        );
        // Filtered by onion-grater, or a tor that does not know the key.
        for refused in ["510 Command filtered\r\n", "552 Unrecognized key\r\n"] {
            assert_eq!(
                run(&window(a, u, refused)),
                Ok((1_795_633_200, 1_795_644_000))
            );
        }
        for (after, until, f) in [
            (u, a, fresh("2026-11-25 20:00:00")), // reversed
            (a, "2036-11-25 22:00:00", "510 Command filtered\r\n".into()), // ten years
            (a, "2026-11-25 19:00:05", "510 Command filtered\r\n".into()), // five seconds
            (a, u, fresh("2026-11-25 23:00:00")), // fresh after valid-until
            (a, u, fresh("2026-11-25 21:00:00")), // 1.5 intervals
        ] {
            let r = run(&window(after, until, &f));
            assert!(
                matches!(r, Err(ProtoError::Implausible(_))),
                "{after} {until} {f}: {r:?}"
            );
        }
    }

    /// Asked for, tor's SocksPorts come after the window, as tor lists them; a control port
    /// that will not say is an error (the caller then cannot tell tor's port from a
    /// squatter's), and the proxy must be one of them.
    #[test]
    fn tor_says_where_its_socks_ports_are() {
        let null = "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250 OK\r\n250 OK\r\n";
        let unix = AuthPolicy {
            cookie_file: None,
            cookie_configured: false,
            allow_plain_cookie: false,
            allow_null: true,
        };
        let none = |_: &Path| -> Option<Vec<u8>> { None };
        let t = format!(
            "{null}{WINDOW}250-net/listeners/socks=\"127.0.0.1:9050\" \"[::1]:9150\" \"unix:/run/tor/socks\"\r\n250 OK\r\n"
        );
        let (sent, r) = run_transcript_with(unix.clone(), NONCE, &t, &none, true);
        let (window, socks) = r.expect("answer");
        assert_eq!(window, (1_795_633_200, 1_795_644_000));
        assert_eq!(
            sent.last().map(String::as_str),
            Some("GETINFO net/listeners/socks\r\n")
        );
        let socks = socks.expect("listeners");
        assert_eq!(
            socks,
            ["127.0.0.1:9050", "[::1]:9150", "unix:/run/tor/socks"]
        );
        let sa = |s: &str| s.parse::<std::net::SocketAddr>().expect("addr");
        assert!(is_tor_socks(&socks, sa("127.0.0.1:9050")));
        assert!(is_tor_socks(&socks, sa("[::1]:9150")));
        assert!(!is_tor_socks(&socks, sa("127.0.0.1:9051")), "another port");
        assert!(
            !is_tor_socks(&socks, sa("127.0.0.2:9050")),
            "another address"
        );
        assert!(
            !is_tor_socks(&[], sa("127.0.0.1:9050")),
            "tor has no SocksPort"
        );
        let wild = ["0.0.0.0:9050".to_owned()];
        assert!(is_tor_socks(&wild, sa("127.0.0.1:9050")));
        assert!(!is_tor_socks(&wild, sa("[::1]:9050")), "another family");
        // Refused (onion-grater, an old tor): an error, never "no listeners".
        let t = format!("{null}{WINDOW}510 Command filtered\r\n");
        let (_, r) = run_transcript_with(unix, NONCE, &t, &none, true);
        assert!(
            matches!(r, Err(ProtoError::Refused { code: 510, .. })),
            "{r:?}"
        );
    }

    #[test]
    fn a_squatter_without_the_cookie_is_refused_before_we_authenticate() {
        let (sent, r) = run_transcript(
            debian(),
            NONCE,
            &safecookie_transcript(&server_hash(&[0; 32])),
            &cookie,
        );
        assert_eq!(r, Err(ProtoError::ServerHash));
        assert_eq!(
            sent.len(),
            2,
            "no AUTHENTICATE after a wrong server hash: {sent:?}"
        );
        // A squatter that names its own cookie file.
        let t = "250-AUTH METHODS=SAFECOOKIE COOKIEFILE=\"/tmp/mine\"\r\n250 OK\r\n";
        let (sent, r) = run_transcript(debian(), NONCE, t, &|_| panic!("never read"));
        assert!(
            matches!(r, Err(ProtoError::UnexpectedCookieFile { .. })),
            "{r:?}"
        );
        assert_eq!(sent.len(), 1);
        // A squatter offering only COOKIE would receive the cookie: refused unless configured.
        let t = "250-AUTH METHODS=COOKIE\r\n250 OK\r\n";
        let (_, r) = run_transcript(debian(), NONCE, t, &|_| panic!("never read"));
        assert_eq!(r, Err(ProtoError::CookieWithoutSafeCookie));
        // A squatter on 127.0.0.1 offering NULL.
        let loopback = AuthPolicy {
            allow_null: false,
            ..debian()
        };
        let t = "250-AUTH METHODS=NULL\r\n250 OK\r\n";
        let (_, r) = run_transcript(loopback.clone(), NONCE, t, &cookie);
        assert_eq!(r, Err(ProtoError::NullOnLoopback));
        // ... while a real tor there offering NULL and SAFECOOKIE is fine.
        let t = format!(
            "250-AUTH METHODS=NULL,SAFECOOKIE\r\n250 OK\r\n250 AUTHCHALLENGE SERVERHASH={} SERVERNONCE={}\r\n250 OK\r\n{WINDOW}",
            server_hash(&COOKIE),
            hex(&SNONCE)
        );
        assert!(run_transcript(loopback, NONCE, &t, &cookie).1.is_ok());
    }

    #[test]
    fn configured_cookie_and_null() {
        // A socket with a configured cookie file, and a tor that only knows COOKIE.
        let configured = AuthPolicy {
            cookie_file: Some("/etc/tor/c".into()),
            cookie_configured: true,
            allow_plain_cookie: true,
            allow_null: true,
        };
        let t = format!("250-AUTH METHODS=COOKIE\r\n250 OK\r\n250 OK\r\n{WINDOW}");
        let (sent, r) = run_transcript(configured, NONCE, &t, &|p| {
            assert_eq!(p, Path::new("/etc/tor/c"));
            Some(COOKIE.to_vec())
        });
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(sent[1], format!("AUTHENTICATE {}\r\n", hex(&COOKIE)));
        // A port on another host with a configured cookie: the path it names (on that host)
        // is neither read nor compared; SAFECOOKIE still needs its proof.
        let remote = AuthPolicy {
            cookie_file: Some("/etc/sdwdate.d/gw.cookie".into()),
            cookie_configured: true,
            allow_plain_cookie: false,
            allow_null: true,
        };
        let t = format!(
            "250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE=\"/var/lib/tor/control_auth_cookie\"\r\n250 OK\r\n250 AUTHCHALLENGE SERVERHASH={} SERVERNONCE={}\r\n250 OK\r\n{WINDOW}",
            server_hash(&COOKIE),
            hex(&SNONCE)
        );
        let (_, r) = run_transcript(remote.clone(), NONCE, &t, &|p| {
            assert_eq!(p, Path::new("/etc/sdwdate.d/gw.cookie"));
            Some(COOKIE.to_vec())
        });
        assert!(r.is_ok(), "{r:?}");
        let bad = t.replace(&server_hash(&COOKIE), &server_hash(&[1; 32]));
        let (_, r) = run_transcript(remote, NONCE, &bad, &|_| Some(COOKIE.to_vec()));
        assert_eq!(r, Err(ProtoError::ServerHash));
        // NULL (the Whonix gateway's onion-grater, a socket).
        let t =
            format!("250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250 OK\r\n250 OK\r\n{WINDOW}");
        let (sent, r) = run_transcript(debian(), NONCE, &t, &|_| panic!("no cookie"));
        assert!(r.is_ok() && sent[1] == "AUTHENTICATE\r\n", "{r:?} {sent:?}");
    }

    #[test]
    fn refusals_and_malformed_replies() {
        let null = |rest: &str| format!("250-AUTH METHODS=NULL\r\n250 OK\r\n{rest}");
        let none = |_: &Path| -> Option<Vec<u8>> { panic!("no cookie") };
        type Expect = fn(&ProtoError) -> bool;
        let cases: [(String, Expect); 9] = [
            (null("515 Authentication failed\r\n"), |e| {
                *e == ProtoError::Refused {
                    code: 515,
                    lines: vec!["Authentication failed".into()],
                }
            }),
            // onion-grater refuses what its profile does not allow.
            (null("250 OK\r\n510 Command filtered\r\n"), |e| {
                matches!(e, ProtoError::Refused { code: 510, .. })
            }),
            (
                null("250 OK\r\n551 Could not open cached consensus\r\n"),
                |e| matches!(e, ProtoError::Refused { code: 551, .. }),
            ),
            (
                null("250 OK\r\n250-consensus/valid-after=yesterday\r\n250 OK\r\n"),
                |e| *e == ProtoError::Missing("consensus/valid-after"),
            ),
            (null("250 OK\r\n250 OK\r\n"), |e| {
                matches!(e, ProtoError::Missing(_))
            }),
            (
                "250-AUTH METHODS=HASHEDPASSWORD\r\n250 OK\r\n".into(),
                |e| *e == ProtoError::NeedsPassword,
            ),
            ("250-AUTH".into(), |e| *e == ProtoError::Finished),
            ("25".into(), |e| matches!(e, ProtoError::Malformed(_))),
            ("250-x\r\n".repeat(100), |e| *e == ProtoError::TooLong),
        ];
        for (t, ok) in cases {
            let (_, r) = run_transcript(debian(), NONCE, &t, &none);
            assert!(r.as_ref().is_err_and(ok), "{t:?}: {r:?}");
        }
        // A refusal reads as tor wrote it (sdwdate's status and timesync-check show it).
        assert_eq!(
            ProtoError::Refused {
                code: 552,
                lines: vec!["Unrecognized key".into(), "more".into()]
            }
            .to_string(),
            "refused: 552 Unrecognized key / more"
        );
        // A malformed challenge and a cookie of the wrong size.
        let t = "250-AUTH METHODS=SAFECOOKIE\r\n250 OK\r\n250 AUTHCHALLENGE SERVERHASH=zz SERVERNONCE=00\r\n";
        assert!(matches!(
            run_transcript(debian(), NONCE, t, &cookie).1,
            Err(ProtoError::Malformed(_))
        ));
        let t = "250-AUTH METHODS=SAFECOOKIE\r\n250 OK\r\n";
        let short = |_: &Path| Some(vec![1, 2, 3]);
        assert!(matches!(
            run_transcript(debian(), NONCE, t, &short).1,
            Err(ProtoError::CookieLength { len: 3, .. })
        ));
        // Cookie auth with no trusted file (a port on another host).
        let remote = AuthPolicy {
            cookie_file: None,
            cookie_configured: false,
            allow_plain_cookie: false,
            allow_null: true,
        };
        assert_eq!(
            run_transcript(remote, NONCE, t, &cookie).1,
            Err(ProtoError::NoCookieFile)
        );
    }

    #[test]
    fn data_replies_are_read_to_their_end() {
        let mut r = ReplyReader::default();
        assert_eq!(r.line("250+consensus/valid-after="), Ok(None));
        assert_eq!(r.line("2026-11-25 19:00:00"), Ok(None));
        assert_eq!(r.line("."), Ok(None));
        let done = r.line("250 OK").expect("ok").expect("reply");
        assert_eq!(
            done.lines,
            ["consensus/valid-after=", "2026-11-25 19:00:00", "OK"]
        );
    }
}
