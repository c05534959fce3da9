//! The safety invariants of a resolved configuration: pure functions of the merged config,
//! the role markers and the resolved uids, run before any rule is built.
//!
//! Parsing (config.rs) rejects what is not a value at all; this pass rejects values that are
//! well-formed but would widen what the role allows beyond its documented options: a network
//! that covers public addresses, a wildcard interface that also matches the uplink, root let
//! out of Tor, a role that contradicts the host's marker. Every violation names the file, line
//! and key to fix, and `apply` treats it like a syntax error: lockdown.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use thiserror::Error;

use crate::apply::{GATEWAY_MARKER, WORKSTATION_MARKER};
use crate::config::{
    Config, IfName, Ipv4Net, Mode, PortRange, Role, User, UserRef, ValueError, DEFAULT_SOCKS_PORTS,
};

/// One broken invariant: where (`file:line: key `k``, or the command line) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub at: String,
    pub problem: Problem,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.problem)
    }
}

/// What is wrong; its text follows the location when printed (in `failed.status` too).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Problem {
    // The role.
    #[error(
        "both {GATEWAY_MARKER} and {WORKSTATION_MARKER} exist; a host is one or the other \
         (hint: remove the package anon-gw-base-files or anon-ws-base-files that does not \
         belong here)"
    )]
    BothMarkers,
    /// `--role` says otherwise than the marker file.
    #[error(
        "`{given}` contradicts {marker}, which says this host is a {marked}; the marker \
         decides (hint: drop --role)"
    )]
    CliContradictsMarker {
        given: Role,
        marker: &'static str,
        marked: Role,
    },
    /// `role` in the config says otherwise than the marker file.
    #[error(
        "`{given}` contradicts {marker}, which says this host is a {marked}; the marker \
         decides (hint: remove the `role` line)"
    )]
    ConfigContradictsMarker {
        given: Role,
        marker: &'static str,
        marked: Role,
    },
    #[error("`{config}` contradicts --role {cli}; say the role once")]
    ConfigContradictsCli { config: Role, cli: Role },
    #[error(
        "unknown role: no `role` in the config and neither {GATEWAY_MARKER} nor \
         {WORKSTATION_MARKER} exists (hint: role = \"gateway\" or \"workstation\" in \
         /etc/anon-firewall.d/50_user.toml)"
    )]
    UnknownRole,

    // Networks.
    #[error(
        "`{0}` is not a private network (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16): the \
         workstation network must never include public addresses, the gateway lets every user \
         reach it"
    )]
    InternalNotPrivate(Ipv4Net),
    #[error(
        "`{0}` is wider than a /{WIDEST_INTERNAL}: every user of the gateway reaches the \
         internal network, so a wide one takes in other private networks outside Tor (on \
         Whonix-KVM 10.0.0.0/8 includes the external network 10.0.2.0/24 and its DNS server \
         10.0.2.2). The default is 10.152.152.0/18; Qubes uses 10.137.0.0/16"
    )]
    InternalTooWide(Ipv4Net),
    #[error(
        "`{0}` is not a private address; the gateway is always on the private internal network"
    )]
    GatewayNotPrivate(Ipv4Addr),
    #[error("`{gateway}` is outside internal_network {internal}")]
    GatewayOutsideInternal {
        gateway: Ipv4Addr,
        internal: Ipv4Net,
    },
    /// A `local_networks` entry outside the private and link-local ranges, not opted in.
    #[error(
        "{0}. To reach a public network outside Tor on purpose, name it in \
         `allow_public_local_networks` too (at most a /{WIDEST_OPT_IN})"
    )]
    PublicLocalNetwork(NotLocal),
    #[error(
        "`{0}` is wider than a /{WIDEST_OPT_IN}: that is not a LAN but a large part of the \
         internet, which must be reached through Tor"
    )]
    OptInTooWide(Ipv4Net),

    // Ports.
    #[error("`0` is not a port (1-65535)")]
    PortZero,
    #[error("`{}-{}` is not a port range (1-65535, first <= last)", .0.first, .0.last)]
    BadPortRange(PortRange),
    #[error("`{0}` is not one of socks_ports; sdwdate's port must be a SocksPort")]
    SdwdatePortNotSocks(u16),
    /// An open port on the external interface that is one of Tor's (what each is, and its
    /// ports).
    #[error(
        "`{range}` overlaps Tor's ports ({}): opened on the external interface, anyone on the \
         uplink could use this gateway's Tor and the workstation's ports; open other ports",
        tor.iter().map(|(what, r)| format!("{what} {r}")).collect::<Vec<_>>().join(", ")
    )]
    OverlapsTorPorts {
        range: PortRange,
        tor: Vec<(&'static str, PortRange)>,
    },
    #[error("`{port}` is also {other}; Tor's ports must be different")]
    SamePort { port: u16, other: &'static str },
    #[error("`{0}` is also one of socks_ports; Tor's ports must be different")]
    PortInSocksPorts(u16),
    /// Two entries of one port list share a port (`[80, 80]`, `["8000-8010", 8005]`): they go
    /// into one nft set, where nft may refuse overlapping elements (named sets always do,
    /// anonymous ones depending on its version), so the list is refused here, before nft.
    #[error(
        "`{range}` {}; list each port once (one range for neighbours)",
        if range == other { "is listed twice".to_owned() } else { format!("overlaps `{other}`, also in the list") }
    )]
    PortListedTwice { range: PortRange, other: PortRange },
    /// An `internal_open_ports` entry that Tor's ports already open to the workstation
    /// (they share one nft set).
    #[error(
        "`{range}` is already open to the workstation ({other_key} `{other}`); remove it \
         from internal_open_ports"
    )]
    AlreadyOpenToWorkstation {
        range: PortRange,
        other_key: &'static str,
        other: PortRange,
    },
    /// Two `local_networks` that share addresses (one nft set, as for ports).
    #[error(
        "`{net}` {}; list each network once (the wider one covers both)",
        if net == other { "is listed twice".to_owned() } else if within(*net, *other) { format!("lies within `{other}`, also in the list") } else { format!("covers `{other}`, also in the list") }
    )]
    NetworkListedTwice { net: Ipv4Net, other: Ipv4Net },
    #[error("`{0}` is listed twice; list each server once")]
    ServerListedTwice(IpAddr),
    /// A user written twice in `no_nat_users`.
    #[error("`{0}` is listed twice; list each user once")]
    UserListedTwice(UserRef),
    /// Two entries of `no_nat_users` that resolve to the same uid (`"debian-tor"` and `107`).
    #[error("`{user}` is uid {uid}, as is `{other}`, also in the list; list each user once")]
    SameUid {
        user: UserRef,
        uid: u32,
        other: UserRef,
    },

    // Interfaces.
    #[error(transparent)]
    BadInterfaceName(ValueError),
    #[error(
        "{} loopback, which the rules always accept (and which must never get the \
         workstation-facing ports or the redirect); name a network interface",
        if .0.as_str() == "lo" { "`lo` is".to_owned() } else { format!("`{}` also matches `lo`,", .0) }
    )]
    Loopback(IfName),
    #[error(
        "`{name}` is a wildcard; only internal_interface may be one (e.g. `vif*` for Qubes), \
         the {} must be named exactly",
        key.trim_end_matches("_interface")
    )]
    Wildcard { name: IfName, key: &'static str },
    /// Two of the internal, external and VPN interfaces may be the same one.
    #[error(
        "`{this}` {} {other_key} `{other}`; the internal, external and VPN interfaces must be \
         different (the workstation-facing ports and the transparent redirect would land on \
         the uplink, or the VPN be skipped)",
        if this.wildcard_prefix().is_some() { "also matches" } else { "is the same as" }
    )]
    InterfaceOverlap {
        this: IfName,
        other_key: &'static str,
        other: IfName,
    },

    // The VPN.
    #[error(
        "vpn_servers without vpn_firewall = true: nothing would use them; remove them or \
         enable vpn_firewall"
    )]
    VpnServersWithoutFirewall,
    #[error("vpn_servers needs vpn_user: only the VPN client's user may reach them")]
    VpnServersWithoutUser,
    #[error("vpn_servers needs vpn_server_ports: only the VPN's ports are reachable")]
    VpnServersWithoutPorts,
    #[error("`{0}` is not a unicast server address")]
    NotUnicast(IpAddr),
    #[error(
        "`{addr}` is an IPv4-mapped IPv6 address: the rule would match it as IPv6 (`ip6 \
         daddr`), which no packet to the IPv4 server ever carries, so the VPN could never \
         connect; write `{v4}`"
    )]
    Ipv4Mapped { addr: IpAddr, v4: Ipv4Addr },
    #[error(
        "vpn_firewall is a gateway option (upstream's workstation tunnel firewall is not \
         supported)"
    )]
    VpnOnWorkstation,

    // Users.
    /// A user that resolves to root; `would` says what root could then do.
    #[error(
        "`{user}` is root (uid 0): root would {would}. Set allow_root_user = true if that is \
         really wanted (for debugging only)"
    )]
    Root { user: UserRef, would: &'static str },
}

/// Why a network may not be a local network.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NotLocal {
    #[error("`{0}` is loopback, which is always reachable on `lo`; remove it")]
    Loopback(Ipv4Net),
    #[error(
        "`{0}` is carrier-grade NAT space (100.64.0.0/10, RFC 6598): addresses your ISP shares \
         between its customers, not your LAN, so every user of this host would reach them \
         outside Tor"
    )]
    CarrierGradeNat(Ipv4Net),
    /// `all`: it is 0.0.0.0/0; `covers_private`: it also covers private ranges (a prefix
    /// too short).
    #[error(
        "`{net}` covers public internet addresses{}: every user of this host, root included, \
         would reach them outside Tor. Only private (10.0.0.0/8, 172.16.0.0/12, \
         192.168.0.0/16) and link-local (169.254.0.0/16) networks are allowed here",
        if net.prefix == 0 {
            " (all of them)"
        } else if *covers_private {
            " besides the private ranges it includes (the prefix is too short)"
        } else {
            ""
        }
    )]
    Public { net: Ipv4Net, covers_private: bool },
}

/// Every violation found, in the order of the checks (one per line when printed).
#[derive(Debug, Error, PartialEq, Eq)]
pub struct ValidationError(pub Vec<Violation>);

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

impl ValidationError {
    /// The problems, in order, without their locations.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().map(|v| &v.problem)
    }
}

/// Which upstream role marker files exist on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Markers {
    /// `/usr/share/anon-gw-base-files/gateway`
    pub gateway: bool,
    /// `/usr/share/anon-ws-base-files/workstation`
    pub workstation: bool,
}

/// The uids the shell resolved for the users of the config (`None`: not needed for the role
/// and mode, so not resolved).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Uids {
    pub tor: Option<u32>,
    pub no_nat: Vec<u32>,
    pub sdwdate: Option<u32>,
    pub vpn: Option<u32>,
}

/// The role of the host. A marker file decides when one exists; a `role` in the config or on
/// the command line that contradicts it is an error, never an override (a stray
/// `role = "workstation"` on a gateway would let every gateway process out). Without a marker,
/// the command line and the config must agree.
pub fn role(cli: Option<Role>, cfg: &Config, markers: Markers) -> Result<Role, ValidationError> {
    let v = |at: String, problem: Problem| ValidationError(vec![Violation { at, problem }]);
    let marked = match (markers.gateway, markers.workstation) {
        (true, true) => return Err(v("role markers".into(), Problem::BothMarkers)),
        (true, false) => Some((Role::Gateway, GATEWAY_MARKER)),
        (false, true) => Some((Role::Workstation, WORKSTATION_MARKER)),
        (false, false) => None,
    };
    let mut problems = Vec::new();
    if let Some((marked, marker)) = marked {
        if let Some(given) = cli.filter(|r| *r != marked) {
            problems.push(Violation {
                at: "command line: --role".into(),
                problem: Problem::CliContradictsMarker {
                    given,
                    marker,
                    marked,
                },
            });
        }
        if let Some(given) = cfg.role.filter(|r| *r != marked) {
            problems.push(Violation {
                at: cfg.at("role"),
                problem: Problem::ConfigContradictsMarker {
                    given,
                    marker,
                    marked,
                },
            });
        }
        return if problems.is_empty() {
            Ok(marked)
        } else {
            Err(ValidationError(problems))
        };
    }
    match (cli, cfg.role) {
        (Some(cli), Some(config)) if cli != config => Err(v(
            cfg.at("role"),
            Problem::ConfigContradictsCli { config, cli },
        )),
        (Some(r), _) | (None, Some(r)) => Ok(r),
        (None, None) => Err(v("role".into(), Problem::UnknownRole)),
    }
}

/// The private ranges of RFC 1918: networks on the user's side of the uplink.
const PRIVATE: [(Ipv4Addr, u8); 3] = [
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
];
const LINK_LOCAL: (Ipv4Addr, u8) = (Ipv4Addr::new(169, 254, 0, 0), 16);
const CGNAT: (Ipv4Addr, u8) = (Ipv4Addr::new(100, 64, 0, 0), 10);
const LOOPBACK: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 0, 0, 0), 8);
/// The widest network the public opt-in accepts: anything wider is not a LAN.
const WIDEST_OPT_IN: u8 = 16;
/// The widest internal (workstation) network: upstream's is a /18 (10.152.152.0/18), Qubes'
/// a /16 (10.137.0.0/16).
const WIDEST_INTERNAL: u8 = 16;

fn net(a: Ipv4Addr, p: u8) -> Ipv4Net {
    Ipv4Net { addr: a, prefix: p }
}

/// `inner` lies entirely within `outer`.
pub fn within(inner: Ipv4Net, outer: Ipv4Net) -> bool {
    inner.prefix >= outer.prefix && {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(outer.prefix))
            .unwrap_or(0);
        u32::from(inner.addr) & mask == u32::from(outer.addr) & mask
    }
}

/// The two networks share at least one address.
fn overlap(a: Ipv4Net, b: Ipv4Net) -> bool {
    within(a, b) || within(b, a)
}

fn is_private(n: Ipv4Net) -> bool {
    PRIVATE.iter().any(|&(a, p)| within(n, net(a, p)))
}

/// Why `n` may not be a local network, or `None` when it is private or link-local.
fn local_network_problem(n: Ipv4Net) -> Option<NotLocal> {
    if is_private(n) || within(n, net(LINK_LOCAL.0, LINK_LOCAL.1)) {
        return None;
    }
    if within(n, net(LOOPBACK.0, LOOPBACK.1)) {
        return Some(NotLocal::Loopback(n));
    }
    if within(n, net(CGNAT.0, CGNAT.1)) {
        return Some(NotLocal::CarrierGradeNat(n));
    }
    Some(NotLocal::Public {
        net: n,
        covers_private: PRIVATE.iter().any(|&(a, p)| within(net(a, p), n)),
    })
}

/// `Some(v4)` for an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`).
fn ipv4_mapped(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        IpAddr::V4(_) => None,
    }
}

/// Tor's ports on the gateway, each with what it is. Tor's real SocksPorts come from torrc,
/// so upstream's set counts as well as the configured `socks_ports`.
fn tor_ports(cfg: &Config) -> Vec<(&'static str, PortRange)> {
    let mut out: Vec<(&'static str, PortRange)> = Vec::new();
    for r in DEFAULT_SOCKS_PORTS.iter().chain(&cfg.socks_ports) {
        if !out.iter().any(|(_, o)| o == r) {
            out.push(("SocksPort", *r));
        }
    }
    for (what, port) in [
        ("TransPort (trans_port)", cfg.trans_port),
        ("DnsPort (dns_port)", cfg.dns_port),
        (
            "control port filter (control_port_filter_port)",
            cfg.control_port_filter_port,
        ),
    ] {
        out.push((what, PortRange::single(port)));
    }
    out
}

fn ranges_overlap(a: PortRange, b: PortRange) -> bool {
    a.first <= b.last && b.first <= a.last
}

/// Checks the merged config for `role`: networks, ports, interfaces and the VPN keys.
pub fn config(cfg: &Config, role: Role) -> Result<(), ValidationError> {
    let mut out = Vec::new();
    // `at`: where the user fixes it, `cfg.at(key)` or, for a check between two keys,
    // `cfg.at_either(key, other)` (the one set in a file, or both).
    let mut bad = |at: String, problem: Problem| out.push(Violation { at, problem });

    // Networks.
    let internal = cfg.internal_network;
    if !is_private(internal) {
        bad(
            cfg.at("internal_network"),
            Problem::InternalNotPrivate(internal),
        );
    } else if internal.prefix < WIDEST_INTERNAL {
        bad(
            cfg.at("internal_network"),
            Problem::InternalTooWide(internal),
        );
    }
    let gw = net(cfg.gateway_ip, 32);
    if !is_private(gw) {
        bad(
            cfg.at("gateway_ip"),
            Problem::GatewayNotPrivate(cfg.gateway_ip),
        );
    } else if role == Role::Gateway && !within(gw, internal) {
        bad(
            cfg.at_either("gateway_ip", "internal_network"),
            Problem::GatewayOutsideInternal {
                gateway: cfg.gateway_ip,
                internal,
            },
        );
    }
    for n in &cfg.local_networks {
        let opted_in = cfg.allow_public_local_networks.contains(n);
        match local_network_problem(*n) {
            Some(_) if opted_in && !overlap(*n, net(LOOPBACK.0, LOOPBACK.1)) => {}
            Some(why) => bad(cfg.at("local_networks"), Problem::PublicLocalNetwork(why)),
            None => {}
        }
    }
    for (i, n) in cfg.local_networks.iter().enumerate() {
        if let Some(other) = cfg.local_networks[..i].iter().find(|o| overlap(*n, **o)) {
            bad(
                cfg.at("local_networks"),
                Problem::NetworkListedTwice {
                    net: *n,
                    other: *other,
                },
            );
        }
    }
    for n in &cfg.allow_public_local_networks {
        if n.prefix < WIDEST_OPT_IN {
            bad(
                cfg.at("allow_public_local_networks"),
                Problem::OptInTooWide(*n),
            );
        }
    }

    // Ports: 1-65535 everywhere (parsing already refuses 0 in files; this also covers
    // configs built in code).
    for (key, port) in [
        ("trans_port", cfg.trans_port),
        ("dns_port", cfg.dns_port),
        ("control_port_filter_port", cfg.control_port_filter_port),
        ("sdwdate_socks_port", cfg.sdwdate_socks_port),
    ] {
        if port == 0 {
            bad(cfg.at(key), Problem::PortZero);
        }
    }
    for (key, list) in [
        ("socks_ports", &cfg.socks_ports),
        ("internal_open_ports", &cfg.internal_open_ports),
        ("external_open_ports", &cfg.external_open_ports),
        ("external_udp_open_ports", &cfg.external_udp_open_ports),
        ("vpn_server_ports", &cfg.vpn_server_ports),
        ("workstation_open_ports", &cfg.workstation_open_ports),
    ] {
        for r in list {
            if r.first == 0 || r.first > r.last {
                bad(cfg.at(key), Problem::BadPortRange(*r));
            }
        }
    }
    if !cfg
        .socks_ports
        .iter()
        .any(|r| r.contains(cfg.sdwdate_socks_port))
    {
        bad(
            cfg.at_either("sdwdate_socks_port", "socks_ports"),
            Problem::SdwdatePortNotSocks(cfg.sdwdate_socks_port),
        );
    }

    // Each list goes into one nft set: no port twice, no overlapping ranges.
    for (key, list) in [
        ("socks_ports", &cfg.socks_ports),
        ("internal_open_ports", &cfg.internal_open_ports),
        ("external_open_ports", &cfg.external_open_ports),
        ("external_udp_open_ports", &cfg.external_udp_open_ports),
        ("vpn_server_ports", &cfg.vpn_server_ports),
        ("workstation_open_ports", &cfg.workstation_open_ports),
    ] {
        for (i, r) in list.iter().enumerate() {
            if let Some(other) = list[..i].iter().find(|o| ranges_overlap(*r, **o)) {
                bad(
                    cfg.at(key),
                    Problem::PortListedTwice {
                        range: *r,
                        other: *other,
                    },
                );
            }
        }
    }
    // internal_open_ports share the workstation's set with Tor's ports.
    let tor_to_workstation: Vec<(&'static str, PortRange)> = [
        ("trans_port", PortRange::single(cfg.trans_port)),
        (
            "control_port_filter_port",
            PortRange::single(cfg.control_port_filter_port),
        ),
    ]
    .into_iter()
    .chain(cfg.socks_ports.iter().map(|r| ("socks_ports", *r)))
    .collect();
    for r in &cfg.internal_open_ports {
        if let Some(&(other_key, other)) = tor_to_workstation
            .iter()
            .find(|(_, o)| ranges_overlap(*r, *o))
        {
            bad(
                cfg.at_either("internal_open_ports", other_key),
                Problem::AlreadyOpenToWorkstation {
                    range: *r,
                    other_key,
                    other,
                },
            );
        }
    }

    // Tor's own ports are never opened on the external interface: anyone on the uplink could
    // then use this gateway's Tor (SocksPorts, TransPort, DnsPort) or its control port filter.
    let tor = tor_ports(cfg);
    for (key, list) in [
        ("external_open_ports", &cfg.external_open_ports),
        ("external_udp_open_ports", &cfg.external_udp_open_ports),
    ] {
        for r in list {
            let hit: Vec<(&'static str, PortRange)> = tor
                .iter()
                .filter(|(_, t)| ranges_overlap(*r, *t))
                .copied()
                .collect();
            if !hit.is_empty() {
                bad(
                    cfg.at(key),
                    Problem::OverlapsTorPorts {
                        range: *r,
                        tor: hit,
                    },
                );
            }
        }
    }
    // TransPort, DnsPort and the control port filter are distinct from each other and from
    // the SocksPorts: sdwdate's SocksPort is the one port left open in timesync mode, and
    // must not take another port's traffic with it.
    let singles = [
        ("trans_port", cfg.trans_port),
        ("dns_port", cfg.dns_port),
        ("control_port_filter_port", cfg.control_port_filter_port),
    ];
    for (i, &(key, port)) in singles.iter().enumerate() {
        if let Some(&(other, _)) = singles[..i].iter().find(|(_, p)| *p == port) {
            bad(cfg.at_either(key, other), Problem::SamePort { port, other });
        } else if cfg.socks_ports.iter().any(|r| r.contains(port)) {
            bad(
                cfg.at_either(key, "socks_ports"),
                Problem::PortInSocksPorts(port),
            );
        }
    }

    // Interfaces.
    let ifaces = [
        ("external_interface", &cfg.external_interface),
        ("internal_interface", &cfg.internal_interface),
        ("vpn_interface", &cfg.vpn_interface),
    ];
    let loopback: IfName = "lo".parse().expect("`lo` is an interface name");
    for (key, name) in ifaces {
        if let Err(e) = name.as_str().parse::<IfName>() {
            bad(cfg.at(key), Problem::BadInterfaceName(e));
        }
        if name.overlaps(&loopback) {
            bad(cfg.at(key), Problem::Loopback(name.clone()));
        }
        if name.wildcard_prefix().is_some() && key != "internal_interface" {
            bad(
                cfg.at(key),
                Problem::Wildcard {
                    name: name.clone(),
                    key,
                },
            );
        }
    }
    for (i, &(ka, a)) in ifaces.iter().enumerate() {
        for &(kb, b) in &ifaces[i + 1..] {
            if !a.overlaps(b) {
                continue;
            }
            // Point at the wildcard if there is one, else at the key set in a file (the later
            // one when both are).
            let set = |k: &str| cfg.locs.contains_key(k);
            let ((key, this), (other_key, other)) = if a.wildcard_prefix().is_some()
                || (b.wildcard_prefix().is_none() && set(ka) && !set(kb))
            {
                ((ka, a), (kb, b))
            } else {
                ((kb, b), (ka, a))
            };
            bad(
                cfg.at_either(key, other_key),
                Problem::InterfaceOverlap {
                    this: this.clone(),
                    other_key,
                    other: other.clone(),
                },
            );
        }
    }

    // VPN.
    if !cfg.vpn_servers.is_empty() {
        if !cfg.vpn_firewall {
            bad(cfg.at("vpn_servers"), Problem::VpnServersWithoutFirewall);
        }
        if cfg.vpn_user.is_none() {
            bad(cfg.at("vpn_servers"), Problem::VpnServersWithoutUser);
        }
        if cfg.vpn_server_ports.is_empty() {
            bad(cfg.at("vpn_servers"), Problem::VpnServersWithoutPorts);
        }
        for (i, a) in cfg.vpn_servers.iter().enumerate() {
            if cfg.vpn_servers[..i].contains(a) {
                bad(cfg.at("vpn_servers"), Problem::ServerListedTwice(*a));
            }
            let odd = match a {
                IpAddr::V4(v4) => {
                    v4.is_unspecified()
                        || v4.is_loopback()
                        || v4.is_multicast()
                        || v4.is_broadcast()
                }
                IpAddr::V6(v6) => v6.is_unspecified() || v6.is_loopback() || v6.is_multicast(),
            };
            if odd {
                bad(cfg.at("vpn_servers"), Problem::NotUnicast(*a));
            }
            if let Some(v4) = ipv4_mapped(*a) {
                bad(cfg.at("vpn_servers"), Problem::Ipv4Mapped { addr: *a, v4 });
            }
        }
    }
    if cfg.vpn_firewall && role == Role::Workstation {
        bad(cfg.at("vpn_firewall"), Problem::VpnOnWorkstation);
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(ValidationError(out))
    }
}

/// Checks the resolved uids: root (uid 0) reaching anything outside Tor needs the explicit
/// opt-in `allow_root_user = true`.
pub fn users(cfg: &Config, uids: &Uids) -> Result<(), ValidationError> {
    let mut out = Vec::new();
    let mut check = |user: &User, default_key: &str, uid: Option<u32>, would: &'static str| {
        if uid == Some(0) && !cfg.allow_root_user {
            out.push(Violation {
                at: user
                    .loc
                    .as_ref()
                    .map_or_else(|| cfg.at(default_key), ToString::to_string),
                problem: Problem::Root {
                    user: user.user.clone(),
                    would,
                },
            });
        }
    };
    check(
        &cfg.tor_user,
        "tor_user",
        uids.tor,
        "reach the internet outside Tor",
    );
    for (u, uid) in cfg.no_nat_users.iter().zip(&uids.no_nat) {
        check(
            u,
            "no_nat_users",
            Some(*uid),
            "reach the internet outside Tor",
        );
    }
    check(
        &cfg.sdwdate_user,
        "sdwdate_user",
        uids.sdwdate,
        "reach the gateway before the clock is set",
    );
    if let Some(v) = &cfg.vpn_user {
        check(v, "vpn_user", uids.vpn, "reach the VPN servers outside Tor");
    }
    // no_nat_users go into one nft set of uids: each user once, as written and as resolved.
    for (i, (u, uid)) in cfg.no_nat_users.iter().zip(&uids.no_nat).enumerate() {
        let at = || {
            u.loc
                .as_ref()
                .map_or_else(|| cfg.at("no_nat_users"), ToString::to_string)
        };
        let earlier = cfg.no_nat_users[..i].iter().zip(&uids.no_nat[..i]);
        if cfg.no_nat_users[..i].iter().any(|o| o.user == u.user) {
            out.push(Violation {
                at: at(),
                problem: Problem::UserListedTwice(u.user.clone()),
            });
        } else if let Some((other, _)) = earlier.clone().find(|(_, o)| *o == uid) {
            out.push(Violation {
                at: at(),
                problem: Problem::SameUid {
                    user: u.user.clone(),
                    uid: *uid,
                    other: other.user.clone(),
                },
            });
        }
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(ValidationError(out))
    }
}

/// What needs a uid for `role` in `mode` (the shell resolves only these).
pub fn needs_sdwdate_uid(cfg: &Config, role: Role) -> bool {
    role == Role::Workstation && cfg.mode == Mode::TimesyncFailClosed
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{PortRange, UserRef};

    const FILE: &str = "/etc/anon-firewall.d/50_user.toml";

    fn cfg(text: &str) -> Config {
        let mut c = Config::default();
        c.merge_str(Path::new(FILE), text).expect("parses");
        c
    }

    /// The one violation of `text` for `role`.
    fn one(text: &str, role: Role) -> Violation {
        let e = config(&cfg(text), role).expect_err(text);
        assert_eq!(e.0.len(), 1, "{text}: {e}");
        e.0[0].clone()
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("net")
    }

    #[test]
    fn defaults_and_documented_options_pass() {
        for role in [Role::Gateway, Role::Workstation] {
            config(&Config::default(), role).expect("defaults");
        }
        for text in [
            "local_networks = [\"192.168.1.0/24\", \"10.0.2.0/24\", \"172.16.0.0/12\", \"169.254.0.0/16\"]",
            "internal_interface = \"vif*\"\nexternal_interface = \"eth0\"",
            "local_networks = [\"203.0.113.0/24\"]\nallow_public_local_networks = [\"203.0.113.0/24\"]",
            "vpn_firewall = true\nvpn_servers = [\"192.0.2.7\"]\nvpn_user = \"tunnel\"\nvpn_server_ports = [1194]",
            "internal_network = \"10.137.0.0/16\"\ngateway_ip = \"10.137.0.1\"",
        ] {
            config(&cfg(text), Role::Gateway).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }

    #[test]
    fn public_local_networks_are_refused_with_the_reason() {
        let public = |n: &str, covers_private| NotLocal::Public {
            net: net(n),
            covers_private,
        };
        for (n, why) in [
            ("0.0.0.0/0", public("0.0.0.0/0", true)),
            ("0.0.0.0/1", public("0.0.0.0/1", true)),
            ("128.0.0.0/1", public("128.0.0.0/1", true)),
            ("8.0.0.0/7", public("8.0.0.0/7", false)),
            ("10.0.0.0/7", public("10.0.0.0/7", true)),
            ("198.51.100.0/24", public("198.51.100.0/24", false)),
            (
                "100.64.0.0/10",
                NotLocal::CarrierGradeNat(net("100.64.0.0/10")),
            ),
            (
                "100.100.0.0/16",
                NotLocal::CarrierGradeNat(net("100.100.0.0/16")),
            ),
            ("127.0.0.0/8", NotLocal::Loopback(net("127.0.0.0/8"))),
        ] {
            // Beside a private network (which some of them also cover: that is refused too).
            let text = format!("\n\nlocal_networks = [\"10.0.0.0/8\", \"{n}\"]");
            let e = config(&cfg(&text), Role::Gateway).expect_err(&text);
            let v = &e.0[0];
            assert_eq!(v.problem, Problem::PublicLocalNetwork(why), "{n}");
            assert_eq!(v.at, format!("{FILE}:3: key `local_networks`"));
            assert!(
                e.problems()
                    .skip(1)
                    .all(|p| matches!(p, Problem::NetworkListedTwice { .. })),
                "{e}"
            );
        }
        // The message says why and names the opt-in.
        let msg = one("local_networks = [\"0.0.0.0/0\"]", Role::Gateway).to_string();
        assert!(
            msg.starts_with(&format!(
                "{FILE}:1: key `local_networks`: `0.0.0.0/0` covers public internet addresses \
                 (all of them)"
            )),
            "{msg}"
        );
        assert!(msg.contains("allow_public_local_networks"), "{msg}");
    }

    #[test]
    fn the_public_opt_in_must_name_the_network_and_stay_narrow() {
        // Named in the opt-in but a different network in local_networks: still refused.
        let v = one(
            "local_networks = [\"203.0.113.0/24\"]\nallow_public_local_networks = [\"203.0.112.0/24\"]",
            Role::Gateway,
        );
        assert!(
            matches!(
                v.problem,
                Problem::PublicLocalNetwork(NotLocal::Public { .. })
            ),
            "{v}"
        );
        // The opt-in itself refuses anything wider than a /16, 0.0.0.0/0 included.
        let e = config(
            &cfg("local_networks = [\"0.0.0.0/0\"]\nallow_public_local_networks = [\"0.0.0.0/0\"]"),
            Role::Gateway,
        )
        .expect_err("wide opt-in");
        let wide =
            e.0.iter()
                .find(|v| v.problem == Problem::OptInTooWide(net("0.0.0.0/0")))
                .unwrap_or_else(|| panic!("{e}"));
        assert_eq!(
            wide.at,
            format!("{FILE}:2: key `allow_public_local_networks`")
        );
        // Loopback cannot be opted in.
        let v = one(
            "local_networks = [\"127.0.0.0/16\"]\nallow_public_local_networks = [\"127.0.0.0/16\"]",
            Role::Gateway,
        );
        assert_eq!(
            v.problem,
            Problem::PublicLocalNetwork(NotLocal::Loopback(net("127.0.0.0/16")))
        );
    }

    #[test]
    fn internal_network_and_gateway_ip_are_private() {
        let v = one("internal_network = \"0.0.0.0/0\"", Role::Gateway);
        assert_eq!(v.problem, Problem::InternalNotPrivate(net("0.0.0.0/0")));
        assert_eq!(v.at, format!("{FILE}:1: key `internal_network`"));
        assert_eq!(
            one("gateway_ip = \"198.51.100.2\"", Role::Workstation).problem,
            Problem::GatewayNotPrivate(Ipv4Addr::new(198, 51, 100, 2))
        );
        assert!(matches!(
            one("gateway_ip = \"192.168.0.1\"", Role::Gateway).problem,
            Problem::GatewayOutsideInternal { .. }
        ));
    }

    #[test]
    fn internal_network_is_at_most_a_slash_16() {
        for n in ["10.0.0.0/8", "10.128.0.0/9", "10.152.0.0/15"] {
            let v = one(
                &format!("\ninternal_network = \"{n}\"\ngateway_ip = \"10.152.152.10\""),
                Role::Gateway,
            );
            assert_eq!(v.problem, Problem::InternalTooWide(net(n)));
            assert_eq!(v.at, format!("{FILE}:2: key `internal_network`"));
        }
        // The message names the network it would take in (Whonix-KVM's DNS server).
        assert!(Problem::InternalTooWide(net("10.0.0.0/8"))
            .to_string()
            .contains("10.0.2.2"));
        // The default (/18) and Qubes' /16 are fine.
        config(&Config::default(), Role::Gateway).expect("default");
        config(
            &cfg("internal_network = \"10.137.0.0/16\"\ngateway_ip = \"10.137.0.1\""),
            Role::Gateway,
        )
        .expect("qubes");
    }

    #[test]
    fn interfaces_wildcards_and_overlaps() {
        let name = |s: &str| s.parse::<IfName>().expect("name");
        let overlap = |this: &str, other_key, other: &str| Problem::InterfaceOverlap {
            this: name(this),
            other_key,
            other: name(other),
        };
        for (text, at, problem) in [
            (
                "internal_interface = \"eth*\"",
                "1: key `internal_interface`",
                overlap("eth*", "external_interface", "eth0"),
            ),
            (
                "\ninternal_interface = \"eth0\"",
                "2: key `internal_interface`",
                overlap("eth0", "external_interface", "eth0"),
            ),
            (
                "vpn_interface = \"eth0\"",
                "1: key `vpn_interface`",
                overlap("eth0", "external_interface", "eth0"),
            ),
            (
                "vpn_interface = \"eth1\"",
                "1: key `vpn_interface`",
                overlap("eth1", "internal_interface", "eth1"),
            ),
            (
                "external_interface = \"wan*\"",
                "1: key `external_interface`",
                Problem::Wildcard {
                    name: name("wan*"),
                    key: "external_interface",
                },
            ),
            (
                "internal_interface = \"lo\"",
                "1: key `internal_interface`",
                Problem::Loopback(name("lo")),
            ),
            (
                "internal_interface = \"vif*\"\nvpn_interface = \"vif0\"",
                "1: key `internal_interface`",
                overlap("vif*", "vpn_interface", "vif0"),
            ),
        ] {
            let v = one(text, Role::Gateway);
            assert_eq!(v.problem, problem, "{text}");
            assert!(v.at.starts_with(&format!("{FILE}:{at}")), "{text}: {v}");
        }
        // How an overlap reads: a wildcard "also matches", a name "is the same as".
        assert!(overlap("eth*", "external_interface", "eth0")
            .to_string()
            .starts_with("`eth*` also matches external_interface `eth0`;"));
        assert!(overlap("eth0", "external_interface", "eth0")
            .to_string()
            .starts_with("`eth0` is the same as external_interface `eth0`;"));
        // Not even a name: parsing refuses it, with the line (through serde, as text).
        let mut c = Config::default();
        for bad in ["e th0", "eth0;", "a*b", "*", "eth\\u00e9", "."] {
            let text = format!("internal_interface = \"{bad}\"");
            let e = c.merge_str(Path::new(FILE), &text).expect_err(bad);
            assert!(
                e.to_string().contains("not an interface name"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn ports_are_1_to_65535_everywhere() {
        let mut c = Config::default();
        for text in [
            "trans_port = 0",
            "dns_port = 70000",
            "sdwdate_socks_port = -1",
            "socks_ports = [0]",
            "vpn_server_ports = [\"0-10\"]",
            "external_open_ports = [65536]",
        ] {
            // Parse errors come through serde, as text.
            let e = c.merge_str(Path::new(FILE), text).expect_err(text);
            assert!(
                e.to_string().contains("not a port (1-65535)"),
                "{text}: {e}"
            );
        }
        // A config built in code is checked too.
        let c = Config {
            trans_port: 0,
            workstation_open_ports: vec![PortRange { first: 0, last: 0 }],
            ..Config::default()
        };
        let e = config(&c, Role::Gateway).expect_err("port 0");
        assert_eq!(
            e.problems().collect::<Vec<_>>(),
            [
                &Problem::PortZero,
                &Problem::BadPortRange(PortRange { first: 0, last: 0 })
            ]
        );
        assert_eq!(e.0[0].at, "compiled-in default: key `trans_port`");
        // sdwdate's port must be one of the SocksPorts.
        assert_eq!(
            one("sdwdate_socks_port = 9112", Role::Gateway).problem,
            Problem::SdwdatePortNotSocks(9112)
        );
    }

    #[test]
    fn vpn_servers_need_the_vpn_user_and_ports() {
        let e = config(&cfg("vpn_servers = [\"0.0.0.0\"]"), Role::Gateway).expect_err("vpn");
        assert_eq!(
            e.problems().collect::<Vec<_>>(),
            [
                &Problem::VpnServersWithoutFirewall,
                &Problem::VpnServersWithoutUser,
                &Problem::VpnServersWithoutPorts,
                &Problem::NotUnicast(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            ]
        );
        assert_eq!(
            one("vpn_firewall = true", Role::Workstation).problem,
            Problem::VpnOnWorkstation
        );
    }

    #[test]
    fn root_needs_the_opt_in() {
        let c = cfg("\ntor_user = \"root\"\nno_nat_users = [\"x\", 0]\nsdwdate_user = 0\n");
        let uids = Uids {
            tor: Some(0),
            no_nat: vec![1000, 0],
            sdwdate: Some(0),
            vpn: None,
        };
        let e = users(&c, &uids).expect_err("root");
        assert_eq!(e.0.len(), 3, "{e}");
        assert!(e.problems().all(|p| matches!(p, Problem::Root { .. })));
        assert_eq!(
            e.0[0].problem,
            Problem::Root {
                user: UserRef::Name("root".into()),
                would: "reach the internet outside Tor"
            }
        );
        // The text names the file, line and key, and the opt-in.
        assert!(e.0[0]
            .to_string()
            .starts_with(&format!("{FILE}:2: key `tor_user`: `root` is root (uid 0)")));
        assert!(e.0[1]
            .to_string()
            .starts_with(&format!("{FILE}:3: key `no_nat_users`: `uid 0`")));
        assert!(e.0[2].to_string().contains("allow_root_user = true"));
        // A default user resolving to 0 (a broken passwd) is caught too.
        let e = users(
            &Config::default(),
            &Uids {
                tor: Some(0),
                ..Uids::default()
            },
        )
        .expect_err("root");
        assert_eq!(e.0[0].at, "compiled-in default: key `tor_user`");
        let mut ok = c.clone();
        ok.allow_root_user = true;
        users(&ok, &uids).expect("opted in");
        users(
            &Config::default(),
            &Uids {
                tor: Some(107),
                ..Uids::default()
            },
        )
        .expect("tor");
        assert_eq!(c.tor_user.user, UserRef::Name("root".into()));
    }

    #[test]
    fn markers_decide_the_role() {
        let gw = Markers {
            gateway: true,
            workstation: false,
        };
        let ws = Markers {
            gateway: false,
            workstation: true,
        };
        let none = Markers::default();
        let plain = Config::default();
        let problem = |r: Result<Role, ValidationError>| {
            let e = r.expect_err("a violation");
            assert_eq!(e.0.len(), 1, "{e}");
            e.0[0].problem.clone()
        };
        assert_eq!(role(None, &plain, gw), Ok(Role::Gateway));
        assert_eq!(role(None, &plain, ws), Ok(Role::Workstation));
        assert_eq!(
            role(Some(Role::Gateway), &cfg("role = \"gateway\""), gw),
            Ok(Role::Gateway)
        );
        // A contradicting config or command line is an error, never an override.
        let e = role(None, &cfg("\nrole = \"workstation\""), gw).expect_err("contradiction");
        assert_eq!(
            e.0[0].problem,
            Problem::ConfigContradictsMarker {
                given: Role::Workstation,
                marker: GATEWAY_MARKER,
                marked: Role::Gateway
            }
        );
        assert!(
            e.to_string().starts_with(&format!("{FILE}:2: key `role`: `workstation` contradicts /usr/share/anon-gw-base-files/gateway")),
            "{e}"
        );
        let e = role(Some(Role::Gateway), &plain, ws).expect_err("contradiction");
        assert!(matches!(
            e.0[0].problem,
            Problem::CliContradictsMarker {
                given: Role::Gateway,
                ..
            }
        ));
        assert!(
            e.to_string()
                .starts_with("command line: --role: `gateway` contradicts"),
            "{e}"
        );
        assert_eq!(
            problem(role(
                None,
                &plain,
                Markers {
                    gateway: true,
                    workstation: true
                }
            )),
            Problem::BothMarkers
        );
        // Without a marker: the command line or the config, which must agree.
        assert_eq!(
            role(Some(Role::Workstation), &plain, none),
            Ok(Role::Workstation)
        );
        assert_eq!(
            role(None, &cfg("role = \"gateway\""), none),
            Ok(Role::Gateway)
        );
        assert_eq!(
            problem(role(
                Some(Role::Workstation),
                &cfg("role = \"gateway\""),
                none
            )),
            Problem::ConfigContradictsCli {
                config: Role::Gateway,
                cli: Role::Workstation
            }
        );
        assert_eq!(problem(role(None, &plain, none)), Problem::UnknownRole);
    }

    #[test]
    fn no_interface_may_match_loopback() {
        for (text, key, name) in [
            ("internal_interface = \"l*\"", "internal_interface", "l*"),
            ("internal_interface = \"lo*\"", "internal_interface", "lo*"),
            ("internal_interface = \"lo\"", "internal_interface", "lo"),
            ("vpn_interface = \"lo\"", "vpn_interface", "lo"),
            ("external_interface = \"lo\"", "external_interface", "lo"),
        ] {
            let v = one(text, Role::Gateway);
            assert_eq!(
                v.problem,
                Problem::Loopback(name.parse().expect("name")),
                "{text}"
            );
            assert_eq!(v.at, format!("{FILE}:1: key `{key}`"), "{text}");
        }
        assert!(one("internal_interface = \"l*\"", Role::Gateway)
            .to_string()
            .contains("`l*` also matches `lo`, loopback"));
        assert!(one("internal_interface = \"lo\"", Role::Gateway)
            .to_string()
            .contains("`lo` is loopback"));
        // A name that only starts like it is fine.
        config(&cfg("internal_interface = \"lan*\""), Role::Gateway).expect("lan*");
        config(&cfg("internal_interface = \"lo0\""), Role::Gateway).expect("lo0");
    }

    #[test]
    fn ipv4_mapped_ipv6_addresses_are_refused() {
        let base = "vpn_firewall = true\nvpn_user = \"tunnel\"\nvpn_server_ports = [1194]\n";
        let v = one(
            &format!("{base}vpn_servers = [\"192.0.2.7\", \"::ffff:192.0.2.8\"]"),
            Role::Gateway,
        );
        assert_eq!(
            v.problem,
            Problem::Ipv4Mapped {
                addr: "::ffff:192.0.2.8".parse().expect("addr"),
                v4: Ipv4Addr::new(192, 0, 2, 8)
            }
        );
        assert_eq!(v.at, format!("{FILE}:4: key `vpn_servers`"));
        assert!(v.to_string().contains("write `192.0.2.8`"), "{v}");
        config(
            &cfg(&format!(
                "{base}vpn_servers = [\"192.0.2.7\", \"2001:db8::7\"]"
            )),
            Role::Gateway,
        )
        .expect("plain addresses");
        // The other address keys are IPv4 only: parsing refuses the mapped form.
        let mut c = Config::default();
        for key in ["gateway_ip", "internal_network", "local_networks"] {
            let value = if key == "local_networks" {
                "[\"::ffff:10.0.0.1\"]"
            } else {
                "\"::ffff:10.152.152.10\""
            };
            let text = format!("{key} = {value}");
            c.merge_str(Path::new(FILE), &text).expect_err(&text);
        }
    }

    #[test]
    fn external_open_ports_may_not_overlap_tors_ports() {
        let single = PortRange::single;
        for (text, what, ports) in [
            (
                "external_open_ports = [\"9000-9999\"]",
                "SocksPort",
                single(9050),
            ),
            (
                "external_open_ports = [\"9000-9999\"]",
                "TransPort (trans_port)",
                single(9040),
            ),
            (
                "external_open_ports = [443, 9051]",
                "control port filter (control_port_filter_port)",
                single(9051),
            ),
            (
                "external_open_ports = [9200]",
                "SocksPort",
                PortRange::range(9152, 9229),
            ),
            (
                "external_open_ports = [5300]",
                "DnsPort (dns_port)",
                single(5300),
            ),
            (
                "external_udp_open_ports = [5300]",
                "DnsPort (dns_port)",
                single(5300),
            ),
            // Upstream's SocksPorts count even when socks_ports leaves them out (torrc decides).
            (
                "socks_ports = [9108]\nexternal_open_ports = [9050]",
                "SocksPort",
                single(9050),
            ),
            (
                "socks_ports = [9108, 7000]\nexternal_open_ports = [7000]",
                "SocksPort",
                single(7000),
            ),
            (
                "trans_port = 8040\nexternal_open_ports = [8040]",
                "TransPort (trans_port)",
                single(8040),
            ),
        ] {
            let v = one(text, Role::Gateway);
            let key = if text.contains("udp") {
                "external_udp_open_ports"
            } else {
                "external_open_ports"
            };
            let line = text.lines().count();
            assert_eq!(v.at, format!("{FILE}:{line}: key `{key}`"), "{text}");
            let Problem::OverlapsTorPorts { tor, .. } = &v.problem else {
                panic!("{text}: {v}")
            };
            assert!(tor.contains(&(what, ports)), "{text}: {v}");
        }
        // How it reads: the open port, then each of Tor's ports it hits.
        let v = one("external_open_ports = [\"5000-5300\"]", Role::Gateway);
        assert!(
            v.to_string().contains(
                "`5000-5300` overlaps Tor's ports (DnsPort (dns_port) 5300): opened on the \
                 external interface"
            ),
            "{v}"
        );
        config(
            &cfg("external_open_ports = [443, \"8000-8010\", 9001]\nexternal_udp_open_ports = [4500, 53]"),
            Role::Gateway,
        )
        .expect("relay and VPN ports");
    }

    /// Each list becomes one nft set; what nft could refuse there (a duplicate element,
    /// overlapping intervals) is refused here, with the line.
    #[test]
    fn lists_name_each_element_once() {
        let single = PortRange::single;
        for (text, key, problem) in [
            (
                "external_open_ports = [80, 80]",
                "external_open_ports",
                Problem::PortListedTwice {
                    range: single(80),
                    other: single(80),
                },
            ),
            (
                "external_open_ports = [\"8000-8010\", 8005]",
                "external_open_ports",
                Problem::PortListedTwice {
                    range: single(8005),
                    other: PortRange::range(8000, 8010),
                },
            ),
            (
                "external_udp_open_ports = [\"4000-4010\", \"4010-4020\"]",
                "external_udp_open_ports",
                Problem::PortListedTwice {
                    range: PortRange::range(4010, 4020),
                    other: PortRange::range(4000, 4010),
                },
            ),
            (
                "socks_ports = [9050, \"9100-9111\", 9108]",
                "socks_ports",
                Problem::PortListedTwice {
                    range: single(9108),
                    other: PortRange::range(9100, 9111),
                },
            ),
            (
                "workstation_open_ports = [22, 22]",
                "workstation_open_ports",
                Problem::PortListedTwice {
                    range: single(22),
                    other: single(22),
                },
            ),
            (
                "internal_open_ports = [8080, 8080]",
                "internal_open_ports",
                Problem::PortListedTwice {
                    range: single(8080),
                    other: single(8080),
                },
            ),
            (
                "internal_open_ports = [9050]",
                "internal_open_ports",
                Problem::AlreadyOpenToWorkstation {
                    range: single(9050),
                    other_key: "socks_ports",
                    other: single(9050),
                },
            ),
            (
                "internal_open_ports = [\"9000-9045\"]",
                "internal_open_ports",
                Problem::AlreadyOpenToWorkstation {
                    range: PortRange::range(9000, 9045),
                    other_key: "trans_port",
                    other: single(9040),
                },
            ),
            (
                "local_networks = [\"10.0.0.0/8\", \"10.1.0.0/16\"]",
                "local_networks",
                Problem::NetworkListedTwice {
                    net: net("10.1.0.0/16"),
                    other: net("10.0.0.0/8"),
                },
            ),
            (
                "local_networks = [\"192.168.1.0/24\", \"192.168.0.0/16\"]",
                "local_networks",
                Problem::NetworkListedTwice {
                    net: net("192.168.0.0/16"),
                    other: net("192.168.1.0/24"),
                },
            ),
            (
                "local_networks = [\"10.0.2.0/24\", \"10.0.2.7/24\"]",
                "local_networks",
                Problem::NetworkListedTwice {
                    net: net("10.0.2.0/24"),
                    other: net("10.0.2.0/24"),
                },
            ),
            (
                "vpn_firewall = true\nvpn_user = 5\nvpn_server_ports = [1194, 1194]\nvpn_servers = [\"192.0.2.7\"]",
                "vpn_server_ports",
                Problem::PortListedTwice {
                    range: single(1194),
                    other: single(1194),
                },
            ),
            (
                "vpn_firewall = true\nvpn_user = 5\nvpn_server_ports = [1194]\nvpn_servers = [\"2001:db8::7\", \"2001:db8:0::7\"]",
                "vpn_servers",
                Problem::ServerListedTwice("2001:db8::7".parse().expect("addr")),
            ),
        ] {
            let v = one(text, Role::Gateway);
            assert_eq!(v.problem, problem, "{text}");
            let line = text.lines().position(|l| l.starts_with(key)).expect("key") + 1;
            assert_eq!(v.at, format!("{FILE}:{line}: key `{key}`"), "{text}");
        }
        // How they read.
        assert!(one("external_open_ports = [80, 80]", Role::Gateway)
            .to_string()
            .ends_with("key `external_open_ports`: `80` is listed twice; list each port once (one range for neighbours)"));
        assert!(
            one("external_open_ports = [\"8000-8010\", 8005]", Role::Gateway)
                .to_string()
                .contains("`8005` overlaps `8000-8010`, also in the list")
        );
        assert!(one(
            "local_networks = [\"10.0.0.0/8\", \"10.1.0.0/16\"]",
            Role::Gateway
        )
        .to_string()
        .contains("`10.1.0.0/16` lies within `10.0.0.0/8`, also in the list"));
        assert!(one("internal_open_ports = [9050]", Role::Gateway)
            .to_string()
            .contains("`9050` is already open to the workstation (socks_ports `9050`)"));
        // Neighbours and disjoint entries are fine.
        config(
            &cfg("external_open_ports = [\"8000-8010\", \"8011-8020\", 80]\nlocal_networks = [\"192.168.0.0/24\", \"192.168.1.0/24\"]\ninternal_open_ports = [8080, \"9041-9049\"]"),
            Role::Gateway,
        )
        .expect("disjoint");
    }

    #[test]
    fn no_nat_users_are_each_listed_once() {
        let c = cfg("no_nat_users = [\n  \"clearnet\",\n  1001,\n  \"clearnet\",\n  1001,\n]");
        let uids = Uids {
            tor: Some(107),
            no_nat: vec![1001, 1001, 1001, 1001],
            ..Uids::default()
        };
        let e = users(&c, &uids).expect_err("duplicates");
        assert_eq!(
            e.problems().collect::<Vec<_>>(),
            [
                &Problem::SameUid {
                    user: UserRef::Uid(1001),
                    uid: 1001,
                    other: UserRef::Name("clearnet".into())
                },
                &Problem::UserListedTwice(UserRef::Name("clearnet".into())),
                &Problem::UserListedTwice(UserRef::Uid(1001)),
            ],
            "{e}"
        );
        // Each names its own line.
        assert_eq!(e.0[0].at, format!("{FILE}:3: key `no_nat_users`"));
        assert_eq!(e.0[1].at, format!("{FILE}:4: key `no_nat_users`"));
        assert!(
            e.0[0].to_string().ends_with(
                "`uid 1001` is uid 1001, as is `clearnet`, also in the list; list each user once"
            ),
            "{e}"
        );
        users(
            &cfg("no_nat_users = [\"clearnet\", 1002]"),
            &Uids {
                tor: Some(107),
                no_nat: vec![1001, 1002],
                ..Uids::default()
            },
        )
        .expect("distinct");
    }

    #[test]
    fn tors_single_ports_are_distinct() {
        let v = one("\ndns_port = 9040", Role::Gateway);
        assert_eq!(
            v.problem,
            Problem::SamePort {
                port: 9040,
                other: "trans_port"
            }
        );
        assert_eq!(v.at, format!("{FILE}:2: key `dns_port`"));
        let v = one("trans_port = 9108", Role::Gateway);
        assert_eq!(v.problem, Problem::PortInSocksPorts(9108));
        assert_eq!(v.at, format!("{FILE}:1: key `trans_port`"));
    }

    /// Where to fix a conflict between two keys: the text is the contract here.
    #[test]
    fn cross_key_errors_point_at_the_key_set_in_a_file() {
        // Only socks_ports is in the file: point there, not at sdwdate's compiled-in default.
        let msg = one("\nsocks_ports = [9050]", Role::Gateway).to_string();
        assert!(
            msg.starts_with(&format!(
                "{FILE}:2: key `socks_ports`: `9108` is not one of"
            )),
            "{msg}"
        );
        // Both in the file: both named.
        let msg = one(
            "socks_ports = [9050]\nsdwdate_socks_port = 9100",
            Role::Gateway,
        )
        .to_string();
        assert!(
            msg.starts_with(&format!(
                "{FILE}:2: key `sdwdate_socks_port` (and {FILE}:1: key `socks_ports`)"
            )),
            "{msg}"
        );
        // The internal network moved away from the default gateway_ip.
        let msg = one("\n\ninternal_network = \"10.137.0.0/16\"", Role::Gateway).to_string();
        assert!(
            msg.starts_with(&format!(
                "{FILE}:3: key `internal_network`: `10.152.152.10` is outside"
            )),
            "{msg}"
        );
        // external_interface set to the default internal one.
        let msg = one("external_interface = \"eth1\"", Role::Gateway).to_string();
        assert!(
            msg.starts_with(&format!(
                "{FILE}:1: key `external_interface`: `eth1` is the same as internal_interface \
                 `eth1`"
            )),
            "{msg}"
        );
        assert!(!msg.contains("compiled-in default"), "{msg}");
    }

    #[test]
    fn interface_overlap_is_symmetric() {
        let n = |s: &str| s.parse::<IfName>().expect("name");
        for (a, b, o) in [
            ("vif*", "vif3", true),
            ("vif*", "eth0", false),
            ("eth*", "eth0", true),
            ("e*", "eth*", true),
            ("eth0", "eth0", true),
            ("eth0", "eth1", false),
        ] {
            assert_eq!(n(a).overlaps(&n(b)), o, "{a} {b}");
            assert_eq!(n(b).overlaps(&n(a)), o, "{b} {a}");
        }
    }

    #[test]
    fn within_is_cidr_containment() {
        assert!(within(net("10.152.152.0/24"), net("10.0.0.0/8")));
        assert!(!within(net("10.0.0.0/7"), net("10.0.0.0/8")));
        assert!(within(net("0.0.0.0/0"), net("0.0.0.0/0")));
        assert!(!within(net("172.32.0.0/16"), net("172.16.0.0/12")));
    }
}
