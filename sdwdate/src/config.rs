//! `/etc/sdwdate.d/*.conf` in upstream's format, parsed strictly.
//!
//! Upstream matches lines with regexes and silently skips anything else, so a typo can drop a
//! whole pool or a failure ratio without a word. Here every line is a comment, a blank, a pool
//! delimiter, a member or a known key; anything else is an error naming file and line.
//!
//! ```text
//! MAX_FAILURE_RATIO=0.34
//! SDWDATE_POOL_ZERO=(
//!     "http://<56 chars>.onion # comment"
//!     [
//!         "http://<56 chars>.onion # one organisation, several onions: one is picked"
//!         "https://<56 chars>.onion:8443/path # ..."
//!     ]
//! )
//! ```

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{}:{line}: {error}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        error: LineError,
    },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pool {0} has no members (hint: every SDWDATE_POOL_* needs at least one source)")]
    EmptyPool(&'static str),
}

/// What is wrong with one line (or one value).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineError {
    #[error("`{0}`: a source must start with http:// or https://")]
    Scheme(String),
    #[error("`{0}` is not a port")]
    Port(String),
    #[error("`{0}` is not an onion address: time sources must be onion services (end-to-end authenticated)")]
    NotOnion(String),
    #[error("`{0}`: bad subdomain")]
    Subdomain(String),
    #[error("`{0}` is not a v3 onion address (56 characters a-z, 2-7)")]
    NotV3(String),
    #[error("`{0}`: spaces or control characters in the path")]
    Path(String),
    #[error("`{0}` is not a member: expected \"url.onion # comment\"")]
    NotMember(String),
    #[error("unknown pool `{0}` (expected one of SDWDATE_POOL_ZERO, SDWDATE_POOL_ONE, SDWDATE_POOL_TWO)")]
    UnknownPool(String),
    #[error("`]` without a matching `[`")]
    UnmatchedClose,
    #[error("empty `[` ... `]` group")]
    EmptyGroup,
    #[error("nested `[` (the group opened on line {0} is not closed)")]
    Nested(usize),
    #[error("`)` inside the group opened on line {0}")]
    CloseInGroup(usize),
    #[error("{0} is not closed with `)`")]
    NotClosed(&'static str),
    #[error("`{0}` is neither a comment, a pool nor KEY=VALUE")]
    Neither(String),
    #[error("unknown key `{0}` (known: MAX_FAILURE_RATIO, RANDOMIZE_TIME, PROXY_IP, PROXY_PORT, TRANSPORT, CONTROL_PORT, CONTROL_COOKIE, ARTI_CONFIG, SDWDATE_POOL_*=()")]
    UnknownKey(String),
    #[error("{key}: {error}")]
    Value { key: &'static str, error: BadValue },
    #[error("{onion}.onion is already in {pool} ({}:{line}): one onion may answer for one pool only, or one operator could move the median", file.display())]
    Duplicate {
        onion: String,
        pool: &'static str,
        file: PathBuf,
        line: usize,
    },
}

/// A value that is not one of the accepted ones (config keys and command-line options).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("`{value}` is not {expected}")]
pub struct BadValue {
    pub value: String,
    pub expected: &'static str,
}

fn bad(value: &str, expected: &'static str) -> BadValue {
    BadValue {
        value: value.to_owned(),
        expected,
    }
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// One time source: an onion URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub scheme: Scheme,
    /// `<56 base32 chars>.onion`, resolved by Tor, never locally.
    pub host: String,
    pub port: u16,
    pub path: String,
    pub comment: String,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        let default = matches!(
            (self.scheme, self.port),
            (Scheme::Http, 80) | (Scheme::Https, 443)
        );
        if default {
            write!(f, "{scheme}://{}{}", self.host, self.path)
        } else {
            write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

impl Source {
    /// The onion service itself: the 56-character label (subdomains, port and path aside).
    pub fn onion(&self) -> &str {
        let label = self.host.strip_suffix(".onion").unwrap_or(&self.host);
        label.rsplit('.').next().unwrap_or(label)
    }

    /// Parses `http[s]://<v3 onion>[:port][/path]`.
    pub fn parse_url(url: &str, comment: &str) -> Result<Source, LineError> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (Scheme::Https, r)
        } else {
            return Err(LineError::Scheme(url.to_owned()));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| LineError::Port(p.to_owned()))?,
            ),
            None => (authority, if scheme == Scheme::Http { 80 } else { 443 }),
        };
        let label = host
            .strip_suffix(".onion")
            .ok_or_else(|| LineError::NotOnion(host.to_owned()))?;
        // Subdomains (`www.<onion>.onion`) are allowed; the onion itself is the last label.
        let (subdomains, label) = label.rsplit_once('.').unwrap_or(("", label));
        let dns_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !subdomains.is_empty() && !subdomains.split('.').all(dns_label) {
            return Err(LineError::Subdomain(host.to_owned()));
        }
        if label.len() != 56
            || !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        {
            return Err(LineError::NotV3(host.to_owned()));
        }
        if path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(LineError::Path(path.to_owned()));
        }
        Ok(Source {
            scheme,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            comment: comment.to_owned(),
        })
    }
}

/// A pool member: one source, or a group of one organisation's onions of which one is
/// picked at start so that the organisation counts once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    One(Source),
    Group(Vec<Source>),
}

pub const POOL_NAMES: [&str; 3] = ["SDWDATE_POOL_ZERO", "SDWDATE_POOL_ONE", "SDWDATE_POOL_TWO"];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub pools: [Vec<Member>; 3],
    pub max_failure_ratio: f64,
    pub randomize_time: bool,
    /// `SYNC_HARDWARE_CLOCK=true|false` (default true): after a success the kernel is told the
    /// clock is synchronised, which also starts its 11-minute copy of the system clock to the
    /// hardware clock. `false` leaves the kernel's "unsynchronised" flag alone, as chrony
    /// without `rtcsync`: the hardware clock keeps what it has, and `timedatectl` says "System
    /// clock synchronized: no" (time-sync.target still follows sdwdate's first success).
    pub sync_hardware_clock: bool,
    pub proxy_ip: Option<IpAddr>,
    pub proxy_port: Option<u16>,
    /// `TRANSPORT=socks|arti`; unset: decided at start (see [`TransportKind`]).
    pub transport: Option<TransportKind>,
    /// `ARTI_CONFIG=/path.toml`: extra arti settings in arti's own TOML format (a private
    /// test network); never set by the package.
    pub arti_config: Option<PathBuf>,
    /// `CONTROL_PORT=HOST:PORT|unix:/PATH|auto|none`: where tor's consensus window comes
    /// from with the socks transport. `none` turns the consensus bound off (documented as
    /// weaker); any other value makes the window required: no window, no time.
    pub control_port: Option<ControlSetting>,
    /// `CONTROL_COOKIE=/path`: the control port's cookie file, trusted for SAFECOOKIE (and for
    /// plain COOKIE). Unset: the one expected at the address (`/run/tor/control.authcookie`).
    pub control_cookie: Option<PathBuf>,
    /// Where each onion was listed first (pool, file, line): one onion may answer for one
    /// pool only, or a single operator could move the median.
    pub origins: std::collections::BTreeMap<String, (usize, PathBuf, usize)>,
}

/// `CONTROL_PORT` / `--control-port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlSetting {
    Addr(tor_control::ControlAddr),
    None,
}

impl std::str::FromStr for ControlSetting {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        match s {
            "none" => Ok(ControlSetting::None),
            a => a
                .parse()
                .map(ControlSetting::Addr)
                .map_err(|_| bad(a, "HOST:PORT, unix:/PATH, auto or none")),
        }
    }
}

/// How sdwdate reaches Tor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// SOCKS5 to a tor daemon (the system's, or the Whonix gateway's 9108).
    Socks,
    /// The embedded arti client: no tor daemon needed.
    Arti,
}

impl std::str::FromStr for TransportKind {
    type Err = BadValue;
    fn from_str(s: &str) -> Result<Self, BadValue> {
        match s {
            "socks" => Ok(TransportKind::Socks),
            "arti" => Ok(TransportKind::Arti),
            _ => Err(bad(s, "socks or arti")),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pools: Default::default(),
            max_failure_ratio: 0.34,
            randomize_time: false,
            sync_hardware_clock: true,
            proxy_ip: None,
            proxy_port: None,
            transport: None,
            arti_config: None,
            control_port: None,
            control_cookie: None,
            origins: Default::default(),
        }
    }
}

/// Where the parser is inside a file.
enum State {
    Top,
    Pool {
        idx: usize,
        started: usize,
        members: Vec<Member>,
    },
    Group {
        idx: usize,
        started: usize,
        members: Vec<Member>,
        group: Vec<Source>,
        group_started: usize,
        /// Members left out as repeats of an onion already in this pool.
        dups: usize,
    },
}

impl Config {
    /// Applies one file. A pool named again (in this or a later file) gets more members, as
    /// upstream's read_pools does: a `50_user.conf` with one `SDWDATE_POOL_ONE=(` member adds
    /// that onion to the shipped pool one.
    pub fn merge_str(&mut self, file: &Path, text: &str) -> Result<(), ConfigError> {
        let err = |line: usize, error: LineError| ConfigError::Syntax {
            file: file.to_owned(),
            line,
            error,
        };
        let mut state = State::Top;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            state = match state {
                State::Top => {
                    if let Some(name) = line.strip_suffix("=(") {
                        let idx = POOL_NAMES
                            .iter()
                            .position(|p| *p == name)
                            .ok_or_else(|| err(n, LineError::UnknownPool(name.to_owned())))?;
                        State::Pool {
                            idx,
                            started: n,
                            members: Vec::new(),
                        }
                    } else {
                        self.key(line).map_err(|m| err(n, m))?;
                        State::Top
                    }
                }
                State::Pool {
                    idx,
                    started,
                    mut members,
                } => match line {
                    ")" => {
                        self.pools[idx].extend(members);
                        State::Top
                    }
                    "[" => State::Group {
                        idx,
                        started,
                        members,
                        group: Vec::new(),
                        group_started: n,
                        dups: 0,
                    },
                    "]" => return Err(err(n, LineError::UnmatchedClose)),
                    _ => {
                        let m = member(line).map_err(|m| err(n, m))?;
                        if self.claim(&m, idx, file, n).map_err(|e| err(n, e))? {
                            members.push(Member::One(m));
                        }
                        State::Pool {
                            idx,
                            started,
                            members,
                        }
                    }
                },
                State::Group {
                    idx,
                    started,
                    mut members,
                    mut group,
                    group_started,
                    mut dups,
                } => match line {
                    "]" if group.is_empty() && dups == 0 => {
                        return Err(err(n, LineError::EmptyGroup))
                    }
                    "]" => {
                        if !group.is_empty() {
                            members.push(Member::Group(group));
                        }
                        State::Pool {
                            idx,
                            started,
                            members,
                        }
                    }
                    "[" => return Err(err(n, LineError::Nested(group_started))),
                    ")" => return Err(err(n, LineError::CloseInGroup(group_started))),
                    _ => {
                        let m = member(line).map_err(|m| err(n, m))?;
                        if self.claim(&m, idx, file, n).map_err(|e| err(n, e))? {
                            group.push(m);
                        } else {
                            dups += 1;
                        }
                        State::Group {
                            idx,
                            started,
                            members,
                            group,
                            group_started,
                            dups,
                        }
                    }
                },
            };
        }
        match state {
            State::Top => Ok(()),
            State::Pool { idx, started, .. } | State::Group { idx, started, .. } => {
                Err(err(started, LineError::NotClosed(POOL_NAMES[idx])))
            }
        }
    }

    /// Records that `src` answers for `pool`; the same onion (whatever its path, port or
    /// subdomain) in another pool is an error naming where it was listed first. `false`: it
    /// is already in this pool (a user file repeating a shipped member, harmless under
    /// upstream's adding semantics), and is left out, so that it neither counts twice in the
    /// failure budget nor is asked twice in a round.
    fn claim(
        &mut self,
        src: &Source,
        pool: usize,
        file: &Path,
        line: usize,
    ) -> Result<bool, LineError> {
        let onion = src.onion().to_owned();
        match self.origins.get(&onion) {
            Some((p, f, l)) if *p != pool => Err(LineError::Duplicate {
                onion,
                pool: POOL_NAMES[*p],
                file: f.clone(),
                line: *l,
            }),
            Some(_) => Ok(false),
            None => {
                self.origins.insert(onion, (pool, file.to_owned(), line));
                Ok(true)
            }
        }
    }

    fn key(&mut self, line: &str) -> Result<(), LineError> {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| LineError::Neither(line.to_owned()))?;
        let value = value.trim().trim_matches('"');
        let v = |key: &'static str, expected: &'static str| LineError::Value {
            key,
            error: bad(value, expected),
        };
        let path = |key: &'static str| {
            value
                .starts_with('/')
                .then(|| PathBuf::from(value))
                .ok_or_else(|| v(key, "an absolute path"))
        };
        match key.trim() {
            "MAX_FAILURE_RATIO" => {
                self.max_failure_ratio = value
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| v("MAX_FAILURE_RATIO", "a number in 0..1"))?;
            }
            "RANDOMIZE_TIME" => {
                self.randomize_time = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(v("RANDOMIZE_TIME", "true or false")),
                }
            }
            "SYNC_HARDWARE_CLOCK" => {
                self.sync_hardware_clock = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(v("SYNC_HARDWARE_CLOCK", "true or false")),
                }
            }
            "PROXY_IP" => {
                self.proxy_ip = Some(value.parse().map_err(|_| v("PROXY_IP", "an IP address"))?)
            }
            "PROXY_PORT" => {
                self.proxy_port = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| v("PROXY_PORT", "a port"))?,
                )
            }
            "TRANSPORT" => {
                self.transport = Some(value.parse().map_err(|error| LineError::Value {
                    key: "TRANSPORT",
                    error,
                })?)
            }
            "CONTROL_PORT" => {
                self.control_port = Some(value.parse().map_err(|error| LineError::Value {
                    key: "CONTROL_PORT",
                    error,
                })?)
            }
            "CONTROL_COOKIE" => self.control_cookie = Some(path("CONTROL_COOKIE")?),
            "ARTI_CONFIG" => self.arti_config = Some(path("ARTI_CONFIG")?),
            other => return Err(LineError::UnknownKey(other.to_owned())),
        }
        Ok(())
    }

    /// Loads every `*.conf` of `dir` in lexical order and checks that no pool is empty.
    pub fn load_dir(dir: &Path) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        let rd = std::fs::read_dir(dir).map_err(|source| ConfigError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
                path: path.clone(),
                source,
            })?;
            cfg.merge_str(&path, &text)?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, p) in self.pools.iter().enumerate() {
            if p.is_empty() {
                return Err(ConfigError::EmptyPool(POOL_NAMES[i]));
            }
        }
        Ok(())
    }

    /// Members across all pools (a group counts once), as upstream counts them.
    pub fn total_members(&self) -> usize {
        self.pools.iter().map(Vec::len).sum()
    }
}

/// `"url # comment"` (the comment is optional).
fn member(line: &str) -> Result<Source, LineError> {
    let inner = line
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .ok_or_else(|| LineError::NotMember(line.to_owned()))?;
    let (url, comment) = inner.split_once('#').unwrap_or((inner, ""));
    Source::parse_url(url.trim(), comment.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONION: &str = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx";
    const ONION2: &str = "bbcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx";
    const ONION3: &str = "cbcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        c.merge_str(Path::new("/etc/sdwdate.d/50_user.conf"), text)?;
        Ok(c)
    }

    #[test]
    fn upstream_default_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/sdwdate.d/30_default.conf");
        let text = std::fs::read_to_string(&path).expect("upstream default");
        let c = parse(&text).expect("upstream default parses");
        c.validate().expect("no empty pool");
        let counts: Vec<usize> = c.pools.iter().map(Vec::len).collect();
        assert!(counts.iter().all(|n| *n >= 5), "{counts:?}");
        assert!(c
            .pools
            .iter()
            .flatten()
            .any(|m| matches!(m, Member::Group(g) if g.len() >= 2)));
        assert_eq!(c.max_failure_ratio, 0.34);
        assert!(!c.randomize_time && c.proxy_ip.is_none());
        assert!(
            c.sync_hardware_clock,
            "the hardware clock follows unless turned off"
        );
        let off = parse("SYNC_HARDWARE_CLOCK=false\n").expect("parses");
        assert!(!off.sync_hardware_clock);
    }

    #[test]
    fn members_groups_and_keys() {
        let text = format!(
            "MAX_FAILURE_RATIO=0.5\nRANDOMIZE_TIME=true\nPROXY_IP=10.152.152.10\nPROXY_PORT=9108\n\
             SDWDATE_POOL_ONE=(\n  ## comment\n  \"http://{ONION}.onion # a\"\n  [\n    \"https://{ONION2}.onion:8443/x # b\"\n    \"http://{ONION3}.onion\"\n  ]\n  #\"http://disabled\"\n)\n"
        );
        let c = parse(&text).expect("parses");
        assert_eq!(c.max_failure_ratio, 0.5);
        assert!(c.randomize_time);
        assert_eq!(c.proxy_port, Some(9108));
        assert_eq!(c.transport, None);
        let k = parse("TRANSPORT=\"arti\"\nARTI_CONFIG=/etc/sdwdate/arti.toml\n").expect("ok");
        assert_eq!(k.transport, Some(TransportKind::Arti));
        assert_eq!(
            k.arti_config.as_deref(),
            Some(Path::new("/etc/sdwdate/arti.toml"))
        );
        let k = parse("TRANSPORT=socks\n").expect("ok");
        assert_eq!(k.transport, Some(TransportKind::Socks));
        for (v, want) in [
            ("none", ControlSetting::None),
            ("auto", ControlSetting::Addr(tor_control::ControlAddr::Auto)),
            (
                "unix:/run/tor/control",
                ControlSetting::Addr(tor_control::ControlAddr::Unix("/run/tor/control".into())),
            ),
            (
                "10.152.152.10:9051",
                ControlSetting::Addr(tor_control::ControlAddr::Tcp(
                    ([10, 152, 152, 10], 9051).into(),
                )),
            ),
        ] {
            let k = parse(&format!("CONTROL_PORT={v}\n")).expect("ok");
            assert_eq!(k.control_port, Some(want), "{v}");
        }
        assert_eq!(c.pools[1].len(), 2);
        let Member::Group(g) = &c.pools[1][1] else {
            panic!("group expected")
        };
        assert_eq!(
            (g[0].scheme, g[0].port, g[0].path.as_str()),
            (Scheme::Https, 8443, "/x")
        );
        assert_eq!(g[0].to_string(), format!("https://{ONION2}.onion:8443/x"));
        assert_eq!(g[1].comment, "");
        assert!(c.validate().is_err(), "pools zero and two are empty");
    }

    /// Upstream's read_pools appends: an upstream-style `50_user.conf` that adds one onion to
    /// a pool keeps the shipped pools.
    #[test]
    fn a_user_file_adds_to_the_shipped_pools() {
        let dir = std::env::temp_dir().join(format!("sdw-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/sdwdate.d/30_default.conf");
        std::fs::copy(&shipped, dir.join("30_default.conf")).expect("copy");
        let default = Config::load_dir(&dir).expect("default");
        let extra = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstu222";
        std::fs::write(
            dir.join("50_user.conf"),
            format!(
                "## added by the user\nSDWDATE_POOL_ONE=(\n\"http://{extra}.onion # mine\"\n)\n"
            ),
        )
        .expect("write");
        let c = Config::load_dir(&dir).expect("with the user's file");
        assert_eq!(c.pools[0], default.pools[0]);
        assert_eq!(c.pools[2], default.pools[2]);
        assert_eq!(c.pools[1].len(), default.pools[1].len() + 1);
        assert_eq!(c.pools[1][..default.pools[1].len()], default.pools[1][..]);
        assert!(matches!(c.pools[1].last(), Some(Member::One(s)) if s.onion() == extra));
        // Repeating members of the same pool (a copy of the shipped file) adds nothing.
        std::fs::copy(&shipped, dir.join("55_copy.conf")).expect("copy");
        let again = Config::load_dir(&dir).expect("a repeat in the same pool is fine");
        assert_eq!(again.pools, c.pools);
        assert_eq!(again.total_members(), c.total_members());
        std::fs::remove_file(dir.join("55_copy.conf")).expect("rm");
        // The same onion in another pool: an error naming both places.
        let again = format!("SDWDATE_POOL_TWO=(\n\"https://www.{extra}.onion/x\"\n)\n");
        std::fs::write(dir.join("60_bad.conf"), again).expect("write");
        let e = Config::load_dir(&dir).expect_err("duplicate");
        assert!(
            matches!(&e, ConfigError::Syntax { file, line: 2, error: LineError::Duplicate { file: first, line: 3, pool: "SDWDATE_POOL_ONE", .. } }
                if file.ends_with("60_bad.conf") && first.ends_with("50_user.conf")),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        use LineError as E;
        type Is = fn(&LineError) -> bool;
        let value = |key: &'static str| move |e: &LineError| matches!(e, E::Value { key: k, .. } if *k == key);
        type Check = Box<dyn Fn(&LineError) -> bool>;
        let cases: Vec<(String, usize, Check)> = vec![
            ("FOO=1".into(), 1, Box::new(|e| *e == E::UnknownKey("FOO".into()))),
            ("\nMAX_FAILURE_RATIO=abc".into(), 2, Box::new(value("MAX_FAILURE_RATIO"))),
            ("MAX_FAILURE_RATIO=2".into(), 1, Box::new(value("MAX_FAILURE_RATIO"))),
            ("RANDOMIZE_TIME=yes".into(), 1, Box::new(value("RANDOMIZE_TIME"))),
            ("SYNC_HARDWARE_CLOCK=no".into(), 1, Box::new(value("SYNC_HARDWARE_CLOCK"))),
            ("PROXY_IP=localhost".into(), 1, Box::new(value("PROXY_IP"))),
            ("PROXY_PORT=0".into(), 1, Box::new(value("PROXY_PORT"))),
            ("TRANSPORT=tor".into(), 1, Box::new(value("TRANSPORT"))),
            ("CONTROL_PORT=localhost:9051".into(), 1, Box::new(value("CONTROL_PORT"))),
            ("ARTI_CONFIG=arti.toml".into(), 1, Box::new(value("ARTI_CONFIG"))),
            ("CONTROL_COOKIE=cookie".into(), 1, Box::new(value("CONTROL_COOKIE"))),
            ("SDWDATE_POOL_THREE=(".into(), 1, Box::new((|e| matches!(e, E::UnknownPool(_))) as Is)),
            ("SDWDATE_POOL_ZERO=(\n\"http://example.com # x\"\n)".into(), 2, Box::new((|e| matches!(e, E::NotOnion(_))) as Is)),
            ("SDWDATE_POOL_ZERO=(\n\"http://short.onion\"\n)".into(), 2, Box::new((|e| matches!(e, E::NotV3(_))) as Is)),
            ("SDWDATE_POOL_ZERO=(\n\"ftp://x.onion\"\n)".into(), 2, Box::new((|e| matches!(e, E::Scheme(_))) as Is)),
            ("SDWDATE_POOL_ZERO=(\nhttp://x.onion\n)".into(), 2, Box::new((|e| matches!(e, E::NotMember(_))) as Is)),
            (format!("SDWDATE_POOL_ZERO=(\n\"http://{ONION}.onion:99999\"\n)"), 2, Box::new((|e| matches!(e, E::Port(_))) as Is)),
            ("SDWDATE_POOL_ZERO=(\n[\n]\n)".into(), 3, Box::new((|e| *e == E::EmptyGroup) as Is)),
            ("SDWDATE_POOL_ZERO=(\n[\n[\n".into(), 3, Box::new((|e| *e == E::Nested(2)) as Is)),
            ("SDWDATE_POOL_ZERO=(\n[\n)\n".into(), 3, Box::new((|e| *e == E::CloseInGroup(2)) as Is)),
            ("SDWDATE_POOL_ZERO=(\n]\n)".into(), 2, Box::new((|e| *e == E::UnmatchedClose) as Is)),
            (format!("\n\nSDWDATE_POOL_ZERO=(\n\"http://{ONION}.onion\"\n"), 3, Box::new((|e| *e == E::NotClosed("SDWDATE_POOL_ZERO")) as Is)),
            ("just words".into(), 1, Box::new((|e| matches!(e, E::Neither(_))) as Is)),
            (
                format!("SDWDATE_POOL_ZERO=(\n\"http://{ONION}.onion\"\n)\nSDWDATE_POOL_ONE=(\n[\n\"http://{ONION}.onion/b\"\n]\n)"),
                6,
                Box::new((|e| matches!(e, E::Duplicate { pool: "SDWDATE_POOL_ZERO", line: 2, .. })) as Is),
            ),
        ];
        for (text, line, is) in cases {
            let e = parse(&text).expect_err(&text);
            let ConfigError::Syntax {
                file,
                line: l,
                error,
            } = &e
            else {
                panic!("{text:?}: {e}")
            };
            assert_eq!(
                (file.as_path(), *l),
                (Path::new("/etc/sdwdate.d/50_user.conf"), line),
                "{text:?}: {e}"
            );
            assert!(is(error), "{text:?}: {error:?}");
            assert!(
                e.to_string()
                    .starts_with(&format!("/etc/sdwdate.d/50_user.conf:{line}: ")),
                "{e}"
            );
        }
        // The messages name the key and the accepted values.
        let e = parse("TRANSPORT=tor").expect_err("bad").to_string();
        assert!(e.ends_with("TRANSPORT: `tor` is not socks or arti"), "{e}");
    }
}
