//! Configuration: compiled-in defaults, then `/etc/anon-firewall.d/*.toml` in lexical order,
//! later files win key by key (a list given in a later file replaces the earlier list).
//!
//! Parsing is strict because a typo in a firewall config must never silently open a port or
//! silently keep one closed: unknown keys and bad values are errors naming file, line and key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use thiserror::Error;

/// Where a value came from, for error messages that point at the line to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: PathBuf,
    pub line: usize,
    pub key: String,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: key `{}`",
            self.file.display(),
            self.line,
            self.key
        )
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    /// Not TOML, or a value the key does not take: the TOML parser's message (which carries
    /// the value's own error, e.g. a [`ValueError`], as text).
    #[error("{}:{line}: {}{message}", file.display(), key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    Parse {
        file: PathBuf,
        line: usize,
        key: Option<String>,
        message: String,
    },
    /// A key anon-firewall does not know, with the known key it is closest to (a typo).
    #[error(
        "{}:{line}: {}unknown key `{unknown}` ({})",
        file.display(),
        key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default(),
        closest.as_ref().map_or_else(|| "see anon-firewall(8) for the keys".to_owned(), |k| format!("did you mean `{k}`?"))
    )]
    UnknownKey {
        file: PathBuf,
        line: usize,
        key: Option<String>,
        unknown: String,
        closest: Option<String>,
    },
    #[error("cannot read config {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a value is not what its key takes: the `FromStr` errors of [`PortRange`], [`Ipv4Net`]
/// and [`IfName`] (each variant holds the text that was given).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValueError {
    #[error("`{0}` is not a port (1-65535)")]
    NotAPort(String),
    #[error("port range `{0}` is reversed")]
    ReversedRange(String),
    #[error("`{0}` is not an IPv4 address")]
    NotAnIpv4Address(String),
    #[error("`{0}` is not a prefix length (0-32)")]
    NotAPrefixLength(String),
    #[error(
        "`{0}` is not an interface name (1-15 characters of A-Z a-z 0-9 _ . -, optionally \
         ending in `*` where a wildcard is allowed)"
    )]
    NotAnInterfaceName(String),
}

/// Which side of the Whonix split this host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Gateway,
    Workstation,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Gateway => "gateway",
            Role::Workstation => "workstation",
        })
    }
}

/// `full`: normal operation. `timesync-fail-closed`: until sdwdate's first success only its
/// SocksPort is reachable, so nothing but time fetching can happen with a wrong clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Full,
    TimesyncFailClosed,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Full => "full",
            Mode::TimesyncFailClosed => "timesync-fail-closed",
        })
    }
}

/// A TCP/UDP port or an inclusive range, written `9050` or `"9100-9125"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const fn single(port: u16) -> Self {
        PortRange {
            first: port,
            last: port,
        }
    }
    pub const fn range(first: u16, last: u16) -> Self {
        PortRange { first, last }
    }
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// `9050`, or `9100-9125` for a range.
impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for PortRange {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let port = |p: &str| -> Result<u16, ValueError> {
            match p.trim().parse::<u16>() {
                Ok(0) | Err(_) => Err(ValueError::NotAPort(p.to_owned())),
                Ok(n) => Ok(n),
            }
        };
        match s.split_once('-') {
            None => Ok(PortRange::single(port(s)?)),
            Some((a, b)) => {
                let (first, last) = (port(a)?, port(b)?);
                if first > last {
                    return Err(ValueError::ReversedRange(s.to_owned()));
                }
                Ok(PortRange { first, last })
            }
        }
    }
}

/// A value written as a number or a string (a port range, a user), read without serde's
/// untagged enums, whose error ("data did not match any variant of untagged enum") names
/// neither the type found nor the one expected.
enum NumOrStr {
    Num(i64),
    Str(String),
}

/// Reads a [`NumOrStr`]; any other type is an error saying what was found and `expecting`.
fn num_or_str<'de, D: Deserializer<'de>>(
    d: D,
    expecting: &'static str,
) -> Result<NumOrStr, D::Error> {
    struct V(&'static str);
    impl serde::de::Visitor<'_> for V {
        type Value = NumOrStr;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<NumOrStr, E> {
            Ok(NumOrStr::Num(n))
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<NumOrStr, E> {
            i64::try_from(n)
                .map(NumOrStr::Num)
                .map_err(|_| E::custom(format!("`{n}` is too large")))
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<NumOrStr, E> {
            Ok(NumOrStr::Str(s.to_owned()))
        }
    }
    d.deserialize_any(V(expecting))
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match num_or_str(d, "a port (9050) or a port range (\"9100-9125\")")? {
            NumOrStr::Num(n) => n.to_string(),
            NumOrStr::Str(s) => s,
        };
        text.parse().map_err(|e: ValueError| {
            serde::de::Error::custom(format!("{e}; hint: write 9050 or \"9100-9125\""))
        })
    }
}

/// An IPv4 network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// CIDR notation: `10.152.128.0/18`.
impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let (a, p) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| ValueError::NotAnIpv4Address(a.to_owned()))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| ValueError::NotAPrefixLength(p.to_owned()))?;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(|e: ValueError| {
            serde::de::Error::custom(format!("{e}; hint: write \"10.152.152.0/18\""))
        })
    }
}

/// A network interface name: 1-15 characters of `[A-Za-z0-9_.-]`, optionally ending in `*`
/// (an nft wildcard, e.g. `vif*` for Qubes; only `internal_interface` may use one, which the
/// validation pass checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfName(String);

impl IfName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `Some(prefix)` for a wildcard name such as `vif*`.
    pub fn wildcard_prefix(&self) -> Option<&str> {
        self.0.strip_suffix('*')
    }
    /// Whether some interface name could match both `self` and `other`.
    pub fn overlaps(&self, other: &IfName) -> bool {
        match (self.wildcard_prefix(), other.wildcard_prefix()) {
            (None, None) => self.0 == other.0,
            (Some(p), None) => other.0.starts_with(p),
            (None, Some(p)) => self.0.starts_with(p),
            (Some(a), Some(b)) => a.starts_with(b) || b.starts_with(a),
        }
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for IfName {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let stem = s.strip_suffix('*').unwrap_or(s);
        let ok = !stem.is_empty()
            && s.len() <= 15
            && stem != "."
            && stem != ".."
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(IfName(s.to_owned()))
        } else {
            Err(ValueError::NotAnInterfaceName(s.to_owned()))
        }
    }
}

impl<'de> Deserialize<'de> for IfName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A user given by name (resolved when the rules are applied) or by numeric uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Name(String),
    Uid(u32),
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserRef::Name(n) => f.write_str(n),
            UserRef::Uid(u) => write!(f, "uid {u}"),
        }
    }
}

impl<'de> Deserialize<'de> for UserRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match num_or_str(d, "a user name (\"debian-tor\") or a numeric uid")? {
            NumOrStr::Num(n) => u32::try_from(n)
                .map(UserRef::Uid)
                .map_err(|_| serde::de::Error::custom(format!("`{n}` is not a uid"))),
            NumOrStr::Str(s) if s.is_empty() => Err(serde::de::Error::custom("empty user name")),
            NumOrStr::Str(s) => Ok(UserRef::Name(s)),
        }
    }
}

/// A user reference together with where it was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user: UserRef,
    /// `None` for the compiled-in default.
    pub loc: Option<Loc>,
}

/// The whole configuration after defaults and all files are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub role: Option<Role>,
    pub mode: Mode,
    pub external_interface: IfName,
    pub internal_interface: IfName,
    pub gateway_ip: Ipv4Addr,
    /// The internal (workstation) network; the gateway may talk to it as any user.
    pub internal_network: Ipv4Net,
    /// Further networks the gateway may reach as any user (upstream's LOCAL_NET). Empty by
    /// default: a LAN is outside Tor too.
    pub local_networks: Vec<Ipv4Net>,
    /// The opt-in for `local_networks` outside the private and link-local ranges: each such
    /// network must be named here too (and be no wider than a /16).
    pub allow_public_local_networks: Vec<Ipv4Net>,
    pub tor_user: User,
    pub no_nat_users: Vec<User>,
    /// The opt-in for root (uid 0) as `tor_user`, in `no_nat_users` or as `vpn_user`
    /// (upstream's ALLOW_GATEWAY_ROOT_USER): without it, root reaching the internet outside
    /// Tor is a configuration error.
    pub allow_root_user: bool,
    /// Workstation, `timesync-fail-closed`: the only user that reaches the gateway before
    /// sdwdate's first success (its SocksPort and the control port filter).
    pub sdwdate_user: User,
    pub trans_port: u16,
    pub dns_port: u16,
    pub control_port_filter_port: u16,
    pub socks_ports: Vec<PortRange>,
    pub sdwdate_socks_port: u16,
    pub internal_open_ports: Vec<PortRange>,
    pub external_open_ports: Vec<PortRange>,
    pub external_udp_open_ports: Vec<PortRange>,
    pub allow_incoming_ssh: bool,
    pub allow_incoming_icmp: bool,
    pub vpn_firewall: bool,
    pub vpn_interface: IfName,
    pub vpn_servers: Vec<IpAddr>,
    /// The VPN client's user: the only one that reaches `vpn_servers`.
    pub vpn_user: Option<User>,
    /// The TCP/UDP ports of `vpn_servers` the VPN client connects to.
    pub vpn_server_ports: Vec<PortRange>,
    /// Workstation: accept outgoing TCP to any address (it can only be routed to the gateway,
    /// which transparently proxies it); `false` allows TCP to the gateway only.
    pub workstation_transparent_tcp: bool,
    /// Workstation: TCP ports reachable from outside (upstream's EXTERNAL_OPEN_PORTS).
    pub workstation_open_ports: Vec<PortRange>,
    /// Where each key was last set (file, line); a key missing here has its compiled-in
    /// default. Used by the validation pass to point at the line to fix.
    pub locs: BTreeMap<String, Loc>,
}

impl Config {
    /// Where `key` got its value, for error messages.
    pub fn at(&self, key: &str) -> String {
        self.locs.get(key).map_or_else(
            || format!("compiled-in default: key `{key}`"),
            ToString::to_string,
        )
    }

    /// Where to fix a conflict between `key` and `other`: the one the user set in a file (both
    /// when both are); the compiled-in default of `key` only when neither is.
    pub fn at_either(&self, key: &str, other: &str) -> String {
        match (self.locs.get(key), self.locs.get(other)) {
            (Some(a), Some(b)) => format!("{a} (and {b})"),
            (Some(a), None) => a.to_string(),
            (None, Some(b)) => b.to_string(),
            (None, None) => format!("compiled-in default: key `{key}`"),
        }
    }
}

/// Upstream whonix-firewall's SocksPorts (firewall-common's INTERNAL_OPEN_PORTS plus the
/// 9152-9229 range for custom applications). 9112, 9113, 9116, 9119-9121 and 9151 (Tor
/// Browser's ControlPort number) are not SocksPorts of Whonix's Tor and stay closed.
pub const DEFAULT_SOCKS_PORTS: [PortRange; 7] = [
    PortRange::single(9050),
    PortRange::range(9100, 9111),
    PortRange::range(9114, 9115),
    PortRange::range(9117, 9118),
    PortRange::range(9122, 9125),
    PortRange::single(9150),
    PortRange::range(9152, 9229),
];

fn name(s: &str) -> IfName {
    IfName(s.to_owned())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            role: None,
            mode: Mode::Full,
            external_interface: name("eth0"),
            internal_interface: name("eth1"),
            gateway_ip: Ipv4Addr::new(10, 152, 152, 10),
            internal_network: Ipv4Net {
                addr: Ipv4Addr::new(10, 152, 128, 0),
                prefix: 18,
            },
            local_networks: Vec::new(),
            allow_public_local_networks: Vec::new(),
            tor_user: User {
                user: UserRef::Name("debian-tor".into()),
                loc: None,
            },
            no_nat_users: Vec::new(),
            allow_root_user: false,
            sdwdate_user: User {
                user: UserRef::Name("sdwdate".into()),
                loc: None,
            },
            trans_port: 9040,
            dns_port: 5300,
            control_port_filter_port: 9051,
            socks_ports: DEFAULT_SOCKS_PORTS.to_vec(),
            sdwdate_socks_port: 9108,
            internal_open_ports: Vec::new(),
            external_open_ports: Vec::new(),
            external_udp_open_ports: Vec::new(),
            allow_incoming_ssh: false,
            allow_incoming_icmp: false,
            vpn_firewall: false,
            vpn_interface: name("tun0"),
            vpn_servers: Vec::new(),
            vpn_user: None,
            vpn_server_ports: Vec::new(),
            workstation_transparent_tcp: true,
            workstation_open_ports: Vec::new(),
            locs: BTreeMap::new(),
        }
    }
}

/// One file's settings: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    role: Option<Role>,
    mode: Option<Mode>,
    external_interface: Option<IfName>,
    internal_interface: Option<IfName>,
    gateway_ip: Option<Ipv4Addr>,
    internal_network: Option<Ipv4Net>,
    local_networks: Option<Vec<Ipv4Net>>,
    allow_public_local_networks: Option<Vec<Ipv4Net>>,
    tor_user: Option<toml::Spanned<UserRef>>,
    no_nat_users: Option<Vec<toml::Spanned<UserRef>>>,
    allow_root_user: Option<bool>,
    sdwdate_user: Option<toml::Spanned<UserRef>>,
    trans_port: Option<Port>,
    dns_port: Option<Port>,
    control_port_filter_port: Option<Port>,
    socks_ports: Option<Vec<PortRange>>,
    sdwdate_socks_port: Option<Port>,
    internal_open_ports: Option<Vec<PortRange>>,
    external_open_ports: Option<Vec<PortRange>>,
    external_udp_open_ports: Option<Vec<PortRange>>,
    allow_incoming_ssh: Option<bool>,
    allow_incoming_icmp: Option<bool>,
    vpn_firewall: Option<bool>,
    vpn_interface: Option<IfName>,
    vpn_servers: Option<Vec<IpAddr>>,
    vpn_user: Option<toml::Spanned<UserRef>>,
    vpn_server_ports: Option<Vec<PortRange>>,
    workstation_transparent_tcp: Option<bool>,
    workstation_open_ports: Option<Vec<PortRange>>,
}

/// A single port in a scalar key: 1-65535 (0 would mean "any port" to some tools).
#[derive(Debug, Clone, Copy)]
struct Port(u16);

impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.0
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = match num_or_str(d, "a port number (1-65535)")? {
            NumOrStr::Num(n) => n,
            NumOrStr::Str(s) => {
                return Err(serde::de::Error::custom(format!(
                    "`\"{s}\"` is a string, not a port; hint: write the number without quotes"
                )))
            }
        };
        match u16::try_from(n) {
            Ok(p) if p != 0 => Ok(Port(p)),
            _ => Err(serde::de::Error::custom(format!(
                "`{n}` is not a port (1-65535)"
            ))),
        }
    }
}

/// Every top-level key of a file with the line it is written on, from the TOML parser's own
/// spans: a quoted key (`"local_networks" = [...]`) or one written after a multi-line value
/// gets its real line (our files are flat: no tables).
fn key_lines(text: &str) -> Vec<(String, usize)> {
    toml::from_str::<BTreeMap<toml::Spanned<String>, serde::de::IgnoredAny>>(text)
        .map(|keys| {
            keys.into_keys()
                .map(|k| (k.get_ref().clone(), line_of(text, k.span().start)))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads serde's "unknown field `x`, expected one of <all keys>" as the unknown key and the
/// known one closest to it, if any is close: a typo should be fixed in seconds, not found in a
/// list of two dozen names.
fn unknown_key(message: &str) -> Option<(String, Option<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    let closest = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|k| (strsim::levenshtein(field, k), k))
        .min()
        .filter(|(d, _)| *d <= 3)
        .map(|(_, k)| k.to_owned());
    Some((field.to_owned(), closest))
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |t| t.bytes().filter(|b| *b == b'\n').count() + 1)
}

/// The key written on a line (`key = value`), for error messages.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (k, _) = l.split_once('=')?;
    let k = k.trim();
    let k = k
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| k.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
        .unwrap_or(k);
    (!k.is_empty() && !k.starts_with('#')).then(|| k.to_owned())
}

impl Config {
    /// Parses one file's text and applies it on top of `self`.
    pub fn merge_str(&mut self, file: &Path, text: &str) -> Result<(), ConfigError> {
        let fc: FileConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            let (file, key, message) = (file.to_owned(), key_on_line(text, line), e.message());
            match unknown_key(message.trim()) {
                Some((unknown, closest)) => ConfigError::UnknownKey {
                    file,
                    line,
                    key,
                    unknown,
                    closest,
                },
                None => ConfigError::Parse {
                    file,
                    line,
                    key,
                    message: message.trim().to_owned(),
                },
            }
        })?;
        let user = |s: toml::Spanned<UserRef>, key: &str| User {
            loc: Some(Loc {
                file: file.to_owned(),
                line: line_of(text, s.span().start),
                key: key.to_owned(),
            }),
            user: s.into_inner(),
        };
        // Remember where every key of this file is, for the validation pass.
        for (key, line) in key_lines(text) {
            self.locs.insert(
                key.clone(),
                Loc {
                    file: file.to_owned(),
                    line,
                    key,
                },
            );
        }
        macro_rules! take {
            ($($f:ident),*) => { $( if let Some(v) = fc.$f { self.$f = v.into(); } )* };
        }
        take!(
            mode,
            external_interface,
            internal_interface,
            gateway_ip,
            internal_network,
            local_networks,
            allow_public_local_networks,
            allow_root_user,
            vpn_server_ports,
            trans_port,
            dns_port,
            control_port_filter_port,
            socks_ports,
            sdwdate_socks_port,
            internal_open_ports,
            external_open_ports,
            external_udp_open_ports,
            allow_incoming_ssh,
            allow_incoming_icmp,
            vpn_firewall,
            vpn_interface,
            vpn_servers,
            workstation_transparent_tcp,
            workstation_open_ports
        );
        if let Some(r) = fc.role {
            self.role = Some(r);
        }
        if let Some(u) = fc.tor_user {
            self.tor_user = user(u, "tor_user");
        }
        if let Some(list) = fc.no_nat_users {
            self.no_nat_users = list.into_iter().map(|u| user(u, "no_nat_users")).collect();
        }
        if let Some(u) = fc.sdwdate_user {
            self.sdwdate_user = user(u, "sdwdate_user");
        }
        if let Some(u) = fc.vpn_user {
            self.vpn_user = Some(user(u, "vpn_user"));
        }
        Ok(())
    }

    /// Loads defaults, then every `*.toml` in `dir` in lexical order. A missing directory
    /// means defaults only; an unreadable file is an error.
    pub fn load_dir(dir: &Path) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        for path in config_files(dir)? {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
                path: path.clone(),
                source,
            })?;
            cfg.merge_str(&path, &text)?;
        }
        Ok(cfg)
    }
}

/// The `*.toml` files of a config directory in lexical order.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConfigError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| ConfigError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        c.merge_str(Path::new("/etc/anon-firewall.d/50_user.toml"), text)?;
        Ok(c)
    }

    #[test]
    fn defaults_match_whonix() {
        let c = Config::default();
        assert_eq!(c.gateway_ip, Ipv4Addr::new(10, 152, 152, 10));
        assert_eq!(
            (c.trans_port, c.dns_port, c.sdwdate_socks_port),
            (9040, 5300, 9108)
        );
        assert!(c.socks_ports.iter().any(|r| r.contains(9108)));
        assert_eq!(c.internal_network, "10.152.152.0/18".parse().expect("net"));
    }

    #[test]
    fn later_keys_win_and_lists_replace() {
        let mut c = parse("allow_incoming_ssh = true\nno_nat_users = [\"a\", 1001]\n").expect("ok");
        c.merge_str(
            Path::new("60.toml"),
            "allow_incoming_ssh = false\nno_nat_users = [\"b\"]",
        )
        .expect("ok");
        assert!(!c.allow_incoming_ssh);
        assert_eq!(c.no_nat_users.len(), 1);
        assert_eq!(c.no_nat_users[0].user, UserRef::Name("b".into()));
        assert_eq!(c.no_nat_users[0].loc.as_ref().map(|l| l.line), Some(2));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = parse("mode = \"full\"\n\nallow_incomming_ssh = true\n").expect_err("must fail");
        assert!(
            matches!(
                &e,
                ConfigError::UnknownKey { line: 3, unknown, closest: Some(c), .. }
                    if unknown == "allow_incomming_ssh" && c == "allow_incoming_ssh"
            ),
            "{e:?}"
        );
        // Nothing close: the man page is the hint.
        let e = parse("fnord = 1").expect_err("unknown");
        assert!(
            matches!(
                &e,
                ConfigError::UnknownKey {
                    line: 1,
                    closest: None,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .ends_with("key `fnord`: unknown key `fnord` (see anon-firewall(8) for the keys)"),
            "{e}"
        );
        let e = parse("mode = \"full\"\n\nallow_incomming_ssh = true\n").expect_err("must fail");
        // The text is the contract here: file, line and key first, then the hint.
        let msg = e.to_string();
        assert!(
            msg.starts_with("/etc/anon-firewall.d/50_user.toml:3: key `allow_incomming_ssh`"),
            "{msg}"
        );
        assert!(
            msg.ends_with("unknown key `allow_incomming_ssh` (did you mean `allow_incoming_ssh`?)"),
            "{msg}"
        );
    }

    #[test]
    fn bad_values_are_errors_with_line() {
        for (text, line, needle) in [
            ("trans_port = 70000", 1, "trans_port"),
            ("\nsocks_ports = [\"9200-9100\"]", 2, "reversed"),
            ("socks_ports = [0]", 1, "not a port"),
            ("gateway_ip = \"10.152.152\"", 1, "gateway_ip"),
            (
                "internal_interface = \"a-very-long-interface\"",
                1,
                "interface name",
            ),
            ("role = \"router\"", 1, "role"),
            ("mode = \"open\"", 1, "mode"),
            ("internal_network = \"10.0.0.0/33\"", 1, "prefix"),
            ("allow_incoming_icmp = \"yes\"", 1, "allow_incoming_icmp"),
            ("tor_user = -1", 1, "uid"),
            ("x = [", 1, ""),
        ] {
            let e = parse(text).expect_err(text);
            assert!(
                matches!(&e, ConfigError::Parse { line: l, .. } if *l == line),
                "{text}: {e:?}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("50_user.toml:{line}:")),
                "{text}: {msg}"
            );
            assert!(msg.contains(needle), "{text}: {msg}");
        }
    }

    #[test]
    fn values_say_which_rule_they_break() {
        assert_eq!("9050".parse::<PortRange>(), Ok(PortRange::single(9050)));
        assert_eq!(
            " 9100-9125".parse::<PortRange>(),
            Ok(PortRange::range(9100, 9125))
        );
        for bad in ["0", "65536", "x", "9100-", "-9100"] {
            assert!(
                matches!(bad.parse::<PortRange>(), Err(ValueError::NotAPort(_))),
                "{bad}"
            );
        }
        assert_eq!(
            "9200-9100".parse::<PortRange>(),
            Err(ValueError::ReversedRange("9200-9100".into()))
        );
        assert_eq!(
            "10.152.152".parse::<Ipv4Net>(),
            Err(ValueError::NotAnIpv4Address("10.152.152".into()))
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Ipv4Net>(),
            Err(ValueError::NotAPrefixLength("33".into()))
        );
        assert_eq!(
            "10.0.0.1/8".parse::<Ipv4Net>().map(|n| n.addr),
            Ok(Ipv4Addr::new(10, 0, 0, 0))
        );
        for bad in ["", "*", "a-very-long-interface", "..", "eth 0", "et*h"] {
            assert!(
                matches!(
                    bad.parse::<IfName>(),
                    Err(ValueError::NotAnInterfaceName(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            "vif*"
                .parse::<IfName>()
                .map(|n| n.wildcard_prefix().map(str::to_owned)),
            Ok(Some("vif".into()))
        );
        // Config errors carry these texts to users.
        assert_eq!(
            ValueError::NotAnInterfaceName("e 0".into()).to_string(),
            "`e 0` is not an interface name (1-15 characters of A-Z a-z 0-9 _ . -, optionally \
             ending in `*` where a wildcard is allowed)"
        );
        assert_eq!(
            ValueError::NotAPort("0".into()).to_string(),
            "`0` is not a port (1-65535)"
        );
    }

    #[test]
    fn quoted_keys_get_their_own_line() {
        let c = parse(
            "# \"local_networks\" = [\"10.0.0.0/8\"]\nmode = \"full\"\n\"local_networks\" = [\n  \"192.168.1.0/24\",\n]\n'gateway_ip' = \"10.152.152.10\"\n",
        )
        .expect("ok");
        assert_eq!(c.locs["local_networks"].line, 3);
        assert_eq!(c.locs["gateway_ip"].line, 6);
        assert_eq!(c.locs["mode"].line, 2);
        assert_eq!(
            c.at("local_networks"),
            "/etc/anon-firewall.d/50_user.toml:3: key `local_networks`"
        );
        // An error on a quoted key names the key without its quotes.
        let e = parse("\n\"trans_port\" = 0").expect_err("port 0");
        assert!(
            matches!(&e, ConfigError::Parse { line: 2, key: Some(k), .. } if k == "trans_port"),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with("/etc/anon-firewall.d/50_user.toml:2: key `trans_port`:"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_types_say_what_was_expected() {
        for (text, needle) in [
            (
                "socks_ports = [true]",
                "invalid type: boolean `true`, expected a port (9050) or a port range",
            ),
            (
                "external_open_ports = [1.5]",
                "invalid type: floating point `1.5`, expected a port (9050) or a port range",
            ),
            (
                "tor_user = true",
                "invalid type: boolean `true`, expected a user name",
            ),
            (
                "no_nat_users = [[1]]",
                "expected a user name (\"debian-tor\") or a numeric uid",
            ),
            (
                "trans_port = true",
                "invalid type: boolean `true`, expected a port number (1-65535)",
            ),
            ("trans_port = \"9040\"", "is a string, not a port"),
        ] {
            let msg = parse(text).expect_err(text).to_string();
            assert!(msg.contains(needle), "{text}: {msg}");
            assert!(!msg.contains("untagged"), "{text}: {msg}");
            assert!(msg.contains("50_user.toml:1:"), "{text}: {msg}");
        }
        // Numbers and strings still parse.
        let c =
            parse("socks_ports = [9050, \"9100-9102\"]\ntor_user = 107\nno_nat_users = [\"a\"]")
                .expect("ok");
        assert_eq!(c.socks_ports.len(), 2);
        assert_eq!(c.tor_user.user, UserRef::Uid(107));
    }

    #[test]
    fn port_ranges_and_networks_parse() {
        let c =
            parse("socks_ports = [9050, \"9100-9125\"]\ninternal_network = \"10.152.152.77/18\"")
                .expect("ok");
        assert_eq!(
            c.socks_ports,
            vec![PortRange::single(9050), PortRange::range(9100, 9125)]
        );
        assert_eq!(c.internal_network.addr, Ipv4Addr::new(10, 152, 128, 0));
    }

    #[test]
    fn load_dir_reads_toml_in_lexical_order() {
        let dir = std::env::temp_dir().join(format!("afw-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("50_user.toml"), "trans_port = 9041\n").expect("write");
        std::fs::write(
            dir.join("30_default.toml"),
            "trans_port = 9999\nmode = \"timesync-fail-closed\"\n",
        )
        .expect("write");
        std::fs::write(dir.join("README"), "not toml = [").expect("write");
        let c = Config::load_dir(&dir).expect("load");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(c.trans_port, 9041);
        assert_eq!(c.mode, Mode::TimesyncFailClosed);
        assert_eq!(
            Config::load_dir(Path::new("/nonexistent/anon-firewall.d")).expect("defaults"),
            Config::default()
        );
        // A directory that exists but cannot be listed is an error, not "defaults only".
        let not_a_dir = std::env::temp_dir().join(format!("afw-cfg-file-{}", std::process::id()));
        std::fs::write(&not_a_dir, "").expect("write");
        let e = Config::load_dir(&not_a_dir).expect_err("a file, not a directory");
        std::fs::remove_file(&not_a_dir).expect("cleanup");
        assert!(
            matches!(&e, ConfigError::Io { path, .. } if *path == not_a_dir),
            "{e:?}"
        );
    }

    #[test]
    fn the_shipped_defaults_file_documents_the_compiled_in_defaults() {
        // 30_default.toml is all comments; uncommented, its `key = value` lines must give
        // exactly the compiled-in defaults (so the file never lies about them).
        let text = include_str!("../etc/anon-firewall.d/30_default.toml");
        let mut uncommented = String::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# ") else {
                continue;
            };
            let Some((key, _)) = rest.split_once('=') else {
                continue;
            };
            let key = key.trim();
            // `role` has no default (markers); `vpn_user` neither.
            if key.is_empty() || key.contains(' ') || key == "role" || key == "vpn_user" {
                continue;
            }
            uncommented.push_str(rest.split(" #").next().unwrap_or(rest));
            uncommented.push('\n');
        }
        let mut c = Config::default();
        c.merge_str(Path::new("30_default.toml"), &uncommented)
            .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        // Where the values came from is the only difference allowed.
        c.locs.clear();
        c.tor_user.loc = None;
        c.sdwdate_user.loc = None;
        assert_eq!(c, Config::default(), "{uncommented}");
        assert!(uncommented.lines().count() >= 25, "{uncommented}");
    }
}
