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

use crate::config::{Config, IfName, Ipv4Net, Mode, PortRange, Role, User, DEFAULT_SOCKS_PORTS};

/// One broken invariant: where (`file:line: key `k``, or the command line) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub at: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
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
    use crate::apply::{GATEWAY_MARKER, WORKSTATION_MARKER};
    let v = |at: String, message: String| ValidationError(vec![Violation { at, message }]);
    let marked = match (markers.gateway, markers.workstation) {
        (true, true) => {
            return Err(v(
                "role markers".into(),
                format!(
                    "both {GATEWAY_MARKER} and {WORKSTATION_MARKER} exist; a host is one or the \
                     other (hint: remove the package anon-gw-base-files or anon-ws-base-files \
                     that does not belong here)"
                ),
            ))
        }
        (true, false) => Some((Role::Gateway, GATEWAY_MARKER)),
        (false, true) => Some((Role::Workstation, WORKSTATION_MARKER)),
        (false, false) => None,
    };
    let mut problems = Vec::new();
    if let Some((marker_role, marker)) = marked {
        if let Some(r) = cli.filter(|r| *r != marker_role) {
            problems.push(Violation {
                at: "command line: --role".into(),
                message: format!(
                    "`{r}` contradicts {marker}, which says this host is a {marker_role}; the \
                     marker decides (hint: drop --role)"
                ),
            });
        }
        if let Some(r) = cfg.role.filter(|r| *r != marker_role) {
            problems.push(Violation {
                at: cfg.at("role"),
                message: format!(
                    "`{r}` contradicts {marker}, which says this host is a {marker_role}; the \
                     marker decides (hint: remove the `role` line)"
                ),
            });
        }
        return if problems.is_empty() {
            Ok(marker_role)
        } else {
            Err(ValidationError(problems))
        };
    }
    match (cli, cfg.role) {
        (Some(a), Some(b)) if a != b => Err(v(
            cfg.at("role"),
            format!("`{b}` contradicts --role {a}; say the role once"),
        )),
        (Some(r), _) | (None, Some(r)) => Ok(r),
        (None, None) => Err(v(
            "role".into(),
            format!(
                "unknown role: no `role` in the config and neither {GATEWAY_MARKER} nor \
                 {WORKSTATION_MARKER} exists (hint: role = \"gateway\" or \"workstation\" in \
                 /etc/anon-firewall.d/50_user.toml)"
            ),
        )),
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
fn local_network_problem(n: Ipv4Net) -> Option<String> {
    if is_private(n) || within(n, net(LINK_LOCAL.0, LINK_LOCAL.1)) {
        return None;
    }
    let shown = format!("{}/{}", n.addr, n.prefix);
    if within(n, net(LOOPBACK.0, LOOPBACK.1)) {
        return Some(format!(
            "`{shown}` is loopback, which is always reachable on `lo`; remove it"
        ));
    }
    if within(n, net(CGNAT.0, CGNAT.1)) {
        return Some(format!(
            "`{shown}` is carrier-grade NAT space (100.64.0.0/10, RFC 6598): addresses your \
             ISP shares between its customers, not your LAN, so every user of this host would \
             reach them outside Tor"
        ));
    }
    let covers_private = PRIVATE.iter().any(|&(a, p)| within(net(a, p), n));
    Some(format!(
        "`{shown}` covers public internet addresses{}: every user of this host, root \
         included, would reach them outside Tor. Only private (10.0.0.0/8, 172.16.0.0/12, \
         192.168.0.0/16) and link-local (169.254.0.0/16) networks are allowed here",
        if n.prefix == 0 {
            " (all of them)"
        } else if covers_private {
            " besides the private ranges it includes (the prefix is too short)"
        } else {
            ""
        }
    ))
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
fn tor_ports(cfg: &Config) -> Vec<(String, PortRange)> {
    let mut out: Vec<(String, PortRange)> = Vec::new();
    for r in DEFAULT_SOCKS_PORTS.iter().chain(&cfg.socks_ports) {
        if !out.iter().any(|(_, o)| o == r) {
            out.push(("SocksPort".into(), *r));
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
        out.push((what.into(), PortRange::single(port)));
    }
    out
}

fn shown(r: PortRange) -> String {
    if r.first == r.last {
        r.first.to_string()
    } else {
        format!("{}-{}", r.first, r.last)
    }
}

fn ranges_overlap(a: PortRange, b: PortRange) -> bool {
    a.first <= b.last && b.first <= a.last
}

/// Checks the merged config for `role`: networks, ports, interfaces and the VPN keys.
pub fn config(cfg: &Config, role: Role) -> Result<(), ValidationError> {
    let mut out = Vec::new();
    // `at`: where the user fixes it, `cfg.at(key)` or, for a check between two keys,
    // `cfg.at_either(key, other)` (the one set in a file, or both).
    let mut bad = |at: String, message: String| out.push(Violation { at, message });

    // Networks.
    let internal = cfg.internal_network;
    if !is_private(internal) {
        bad(
            cfg.at("internal_network"),
            format!(
                "`{}/{}` is not a private network (10.0.0.0/8, 172.16.0.0/12, \
                 192.168.0.0/16): the workstation network must never include public addresses, \
                 the gateway lets every user reach it",
                internal.addr, internal.prefix
            ),
        );
    } else if internal.prefix < WIDEST_INTERNAL {
        bad(
            cfg.at("internal_network"),
            format!(
                "`{}/{}` is wider than a /{WIDEST_INTERNAL}: every user of the gateway reaches \
                 the internal network, so a wide one takes in other private networks outside \
                 Tor (on Whonix-KVM 10.0.0.0/8 includes the external network 10.0.2.0/24 and \
                 its DNS server 10.0.2.2). The default is 10.152.152.0/18; Qubes uses \
                 10.137.0.0/16",
                internal.addr, internal.prefix
            ),
        );
    }
    let gw = net(cfg.gateway_ip, 32);
    if !is_private(gw) {
        bad(
            cfg.at("gateway_ip"),
            format!(
                "`{}` is not a private address; the gateway is always on the private internal \
                 network",
                cfg.gateway_ip
            ),
        );
    } else if role == Role::Gateway && !within(gw, internal) {
        bad(
            cfg.at_either("gateway_ip", "internal_network"),
            format!(
                "`{}` is outside internal_network {}/{}",
                cfg.gateway_ip, internal.addr, internal.prefix
            ),
        );
    }
    for n in &cfg.local_networks {
        let opted_in = cfg.allow_public_local_networks.contains(n);
        match local_network_problem(*n) {
            Some(_) if opted_in && !overlap(*n, net(LOOPBACK.0, LOOPBACK.1)) => {}
            Some(why) => bad(
                cfg.at("local_networks"),
                format!(
                    "{why}. To reach a public network outside Tor on purpose, name it in \
                     `allow_public_local_networks` too (at most a /{WIDEST_OPT_IN})"
                ),
            ),
            None => {}
        }
    }
    for n in &cfg.allow_public_local_networks {
        if n.prefix < WIDEST_OPT_IN {
            bad(
                cfg.at("allow_public_local_networks"),
                format!(
                    "`{}/{}` is wider than a /{WIDEST_OPT_IN}: that is not a LAN but a large \
                     part of the internet, which must be reached through Tor",
                    n.addr, n.prefix
                ),
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
            bad(cfg.at(key), "`0` is not a port (1-65535)".into());
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
                bad(
                    cfg.at(key),
                    format!(
                        "`{}-{}` is not a port range (1-65535, first <= last)",
                        r.first, r.last
                    ),
                );
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
            format!(
                "`{}` is not one of socks_ports; sdwdate's port must be a SocksPort",
                cfg.sdwdate_socks_port
            ),
        );
    }

    // Tor's own ports are never opened on the external interface: anyone on the uplink could
    // then use this gateway's Tor (SocksPorts, TransPort, DnsPort) or its control port filter.
    let tor = tor_ports(cfg);
    for (key, list) in [
        ("external_open_ports", &cfg.external_open_ports),
        ("external_udp_open_ports", &cfg.external_udp_open_ports),
    ] {
        for r in list {
            let hit: Vec<String> = tor
                .iter()
                .filter(|(_, t)| ranges_overlap(*r, *t))
                .map(|(what, t)| format!("{what} {}", shown(*t)))
                .collect();
            if !hit.is_empty() {
                bad(
                    cfg.at(key),
                    format!(
                        "`{}` overlaps Tor's ports ({}): opened on the external interface, \
                         anyone on the uplink could use this gateway's Tor and the \
                         workstation's ports; open other ports",
                        shown(*r),
                        hit.join(", ")
                    ),
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
        if let Some((other, _)) = singles[..i].iter().find(|(_, p)| *p == port) {
            bad(
                cfg.at_either(key, other),
                format!("`{port}` is also {other}; Tor's ports must be different"),
            );
        } else if cfg.socks_ports.iter().any(|r| r.contains(port)) {
            bad(
                cfg.at_either(key, "socks_ports"),
                format!("`{port}` is also one of socks_ports; Tor's ports must be different"),
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
            bad(cfg.at(key), e);
        }
        if name.overlaps(&loopback) {
            let how = if name.as_str() == "lo" {
                "`lo` is".to_owned()
            } else {
                format!("`{name}` also matches `lo`,")
            };
            bad(
                cfg.at(key),
                format!(
                    "{how} loopback, which the rules always accept (and which must never \
                     get the workstation-facing ports or the redirect); name a network interface"
                ),
            );
        }
        if name.wildcard_prefix().is_some() && key != "internal_interface" {
            bad(
                cfg.at(key),
                format!(
                    "`{name}` is a wildcard; only internal_interface may be one (e.g. `vif*` \
                     for Qubes), the {} must be named exactly",
                    key.trim_end_matches("_interface")
                ),
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
            let how = if this.wildcard_prefix().is_some() {
                "also matches"
            } else {
                "is the same as"
            };
            bad(
                cfg.at_either(key, other_key),
                format!(
                    "`{this}` {how} {other_key} `{other}`; the internal, external and VPN \
                     interfaces must be different (the workstation-facing ports and the \
                     transparent redirect would land on the uplink, or the VPN be skipped)"
                ),
            );
        }
    }

    // VPN.
    if !cfg.vpn_servers.is_empty() {
        if !cfg.vpn_firewall {
            bad(
                cfg.at("vpn_servers"),
                "vpn_servers without vpn_firewall = true: nothing would use them; remove them \
                 or enable vpn_firewall"
                    .into(),
            );
        }
        if cfg.vpn_user.is_none() {
            bad(
                cfg.at("vpn_servers"),
                "vpn_servers needs vpn_user: only the VPN client's user may reach them".into(),
            );
        }
        if cfg.vpn_server_ports.is_empty() {
            bad(
                cfg.at("vpn_servers"),
                "vpn_servers needs vpn_server_ports: only the VPN's ports are reachable".into(),
            );
        }
        for a in &cfg.vpn_servers {
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
                bad(
                    cfg.at("vpn_servers"),
                    format!("`{a}` is not a unicast server address"),
                );
            }
            if let Some(v4) = ipv4_mapped(*a) {
                bad(
                    cfg.at("vpn_servers"),
                    format!(
                        "`{a}` is an IPv4-mapped IPv6 address: the rule would match it as IPv6 \
                         (`ip6 daddr`), which no packet to the IPv4 server ever carries, so the \
                         VPN could never connect; write `{v4}`"
                    ),
                );
            }
        }
    }
    if cfg.vpn_firewall && role == Role::Workstation {
        bad(
            cfg.at("vpn_firewall"),
            "vpn_firewall is a gateway option (upstream's workstation tunnel firewall is not \
             supported)"
                .into(),
        );
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
    let mut check = |user: &User, default_key: &str, uid: Option<u32>, what: &str| {
        if uid == Some(0) && !cfg.allow_root_user {
            out.push(Violation {
                at: user
                    .loc
                    .as_ref()
                    .map_or_else(|| cfg.at(default_key), ToString::to_string),
                message: format!(
                    "`{}` is root (uid 0): root would {what}. Set allow_root_user = true if \
                     that is really wanted (for debugging only)",
                    user.user
                ),
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

    /// The one violation of `text` for `role`, as printed.
    fn one(text: &str, role: Role) -> String {
        let e = config(&cfg(text), role).expect_err(text);
        assert_eq!(e.0.len(), 1, "{text}: {e}");
        e.to_string()
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
        for (net, why) in [
            (
                "0.0.0.0/0",
                "covers public internet addresses (all of them)",
            ),
            (
                "0.0.0.0/1",
                "covers public internet addresses besides the private",
            ),
            (
                "128.0.0.0/1",
                "covers public internet addresses besides the private",
            ),
            ("8.0.0.0/7", "covers public internet addresses:"),
            (
                "10.0.0.0/7",
                "covers public internet addresses besides the private",
            ),
            ("198.51.100.0/24", "covers public internet addresses:"),
            ("100.64.0.0/10", "carrier-grade NAT"),
            ("100.100.0.0/16", "carrier-grade NAT"),
            ("127.0.0.0/8", "loopback"),
        ] {
            let msg = one(
                &format!("\n\nlocal_networks = [\"10.0.0.0/8\", \"{net}\"]"),
                Role::Gateway,
            );
            assert!(
                msg.starts_with(&format!("{FILE}:3: key `local_networks`: `{net}`")),
                "{msg}"
            );
            assert!(msg.contains(why), "{net}: {msg}");
            assert!(msg.contains("allow_public_local_networks"), "{msg}");
        }
    }

    #[test]
    fn the_public_opt_in_must_name_the_network_and_stay_narrow() {
        // Named in the opt-in but a different network in local_networks: still refused.
        one(
            "local_networks = [\"203.0.113.0/24\"]\nallow_public_local_networks = [\"203.0.112.0/24\"]",
            Role::Gateway,
        );
        // The opt-in itself refuses anything wider than a /16, 0.0.0.0/0 included.
        let e = config(
            &cfg("local_networks = [\"0.0.0.0/0\"]\nallow_public_local_networks = [\"0.0.0.0/0\"]"),
            Role::Gateway,
        )
        .expect_err("wide opt-in");
        assert!(
            e.to_string()
                .contains(":2: key `allow_public_local_networks`: `0.0.0.0/0` is wider than a /16"),
            "{e}"
        );
        // Loopback cannot be opted in.
        one(
            "local_networks = [\"127.0.0.0/16\"]\nallow_public_local_networks = [\"127.0.0.0/16\"]",
            Role::Gateway,
        );
    }

    #[test]
    fn internal_network_and_gateway_ip_are_private() {
        assert!(one("internal_network = \"0.0.0.0/0\"", Role::Gateway)
            .contains("key `internal_network`: `0.0.0.0/0` is not a private network"));
        assert!(one("gateway_ip = \"198.51.100.2\"", Role::Workstation)
            .contains("key `gateway_ip`: `198.51.100.2` is not a private address"));
        assert!(one("gateway_ip = \"192.168.0.1\"", Role::Gateway)
            .contains("is outside internal_network"));
    }

    #[test]
    fn internal_network_is_at_most_a_slash_16() {
        for net in ["10.0.0.0/8", "10.128.0.0/9", "10.152.0.0/15"] {
            let msg = one(
                &format!("\ninternal_network = \"{net}\"\ngateway_ip = \"10.152.152.10\""),
                Role::Gateway,
            );
            assert!(
                msg.starts_with(&format!(
                    "{FILE}:2: key `internal_network`: `{net}` is wider than a /16"
                )),
                "{msg}"
            );
            assert!(msg.contains("10.0.2.2"), "{msg}");
        }
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
        for (text, line_key, needle) in [
            (
                "internal_interface = \"eth*\"",
                "1: key `internal_interface`",
                "`eth*` also matches external_interface `eth0`",
            ),
            (
                "\ninternal_interface = \"eth0\"",
                "2: key `internal_interface`",
                "`eth0` is the same as external_interface `eth0`",
            ),
            (
                "vpn_interface = \"eth0\"",
                "1: key `vpn_interface`",
                "is the same as external_interface `eth0`",
            ),
            (
                "vpn_interface = \"eth1\"",
                "1: key `vpn_interface`",
                "is the same as internal_interface `eth1`",
            ),
            (
                "external_interface = \"wan*\"",
                "1: key `external_interface`",
                "only internal_interface may be one",
            ),
            (
                "internal_interface = \"lo\"",
                "1: key `internal_interface`",
                "loopback",
            ),
            (
                "internal_interface = \"vif*\"\nvpn_interface = \"vif0\"",
                "1: key `internal_interface`",
                "`vif*` also matches vpn_interface `vif0`",
            ),
        ] {
            let msg = one(text, Role::Gateway);
            assert!(
                msg.starts_with(&format!("{FILE}:{line_key}")),
                "{text}: {msg}"
            );
            assert!(msg.contains(needle), "{text}: {msg}");
        }
        // Not even a name: parsing refuses it, with the line.
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
        assert_eq!(e.0.len(), 2, "{e}");
        assert!(e.0[0]
            .to_string()
            .starts_with("compiled-in default: key `trans_port`"));
        // sdwdate's port must be one of the SocksPorts.
        assert!(one("sdwdate_socks_port = 9112", Role::Gateway).contains("not one of socks_ports"));
    }

    #[test]
    fn vpn_servers_need_the_vpn_user_and_ports() {
        let e = config(&cfg("vpn_servers = [\"0.0.0.0\"]"), Role::Gateway).expect_err("vpn");
        let msg = e.to_string();
        for needle in [
            "without vpn_firewall",
            "needs vpn_user",
            "needs vpn_server_ports",
            "not a unicast",
        ] {
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
        assert!(one("vpn_firewall = true", Role::Workstation).contains("gateway option"));
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
        assert!(
            e.to_string()
                .starts_with("compiled-in default: key `tor_user`"),
            "{e}"
        );
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
        assert_eq!(role(None, &plain, gw), Ok(Role::Gateway));
        assert_eq!(role(None, &plain, ws), Ok(Role::Workstation));
        assert_eq!(
            role(Some(Role::Gateway), &cfg("role = \"gateway\""), gw),
            Ok(Role::Gateway)
        );
        // A contradicting config or command line is an error, never an override.
        let e = role(None, &cfg("\nrole = \"workstation\""), gw).expect_err("contradiction");
        assert!(
            e.to_string().starts_with(&format!("{FILE}:2: key `role`: `workstation` contradicts /usr/share/anon-gw-base-files/gateway")),
            "{e}"
        );
        let e = role(Some(Role::Gateway), &plain, ws).expect_err("contradiction");
        assert!(
            e.to_string()
                .starts_with("command line: --role: `gateway` contradicts"),
            "{e}"
        );
        assert!(role(
            None,
            &plain,
            Markers {
                gateway: true,
                workstation: true
            }
        )
        .is_err());
        // Without a marker: the command line or the config, which must agree.
        assert_eq!(
            role(Some(Role::Workstation), &plain, none),
            Ok(Role::Workstation)
        );
        assert_eq!(
            role(None, &cfg("role = \"gateway\""), none),
            Ok(Role::Gateway)
        );
        assert!(role(Some(Role::Workstation), &cfg("role = \"gateway\""), none).is_err());
        assert!(role(None, &plain, none)
            .expect_err("unknown")
            .to_string()
            .contains("unknown role"));
    }

    #[test]
    fn no_interface_may_match_loopback() {
        for (text, key) in [
            ("internal_interface = \"l*\"", "internal_interface"),
            ("internal_interface = \"lo*\"", "internal_interface"),
            ("internal_interface = \"lo\"", "internal_interface"),
            ("vpn_interface = \"lo\"", "vpn_interface"),
            ("external_interface = \"lo\"", "external_interface"),
        ] {
            let msg = one(text, Role::Gateway);
            assert!(
                msg.starts_with(&format!("{FILE}:1: key `{key}`")),
                "{text}: {msg}"
            );
            assert!(msg.contains("loopback"), "{text}: {msg}");
        }
        assert!(
            one("internal_interface = \"l*\"", Role::Gateway).contains("`l*` also matches `lo`")
        );
        // A name that only starts like it is fine.
        config(&cfg("internal_interface = \"lan*\""), Role::Gateway).expect("lan*");
        config(&cfg("internal_interface = \"lo0\""), Role::Gateway).expect("lo0");
    }

    #[test]
    fn ipv4_mapped_ipv6_addresses_are_refused() {
        let base = "vpn_firewall = true\nvpn_user = \"tunnel\"\nvpn_server_ports = [1194]\n";
        let msg = one(
            &format!("{base}vpn_servers = [\"192.0.2.7\", \"::ffff:192.0.2.8\"]"),
            Role::Gateway,
        );
        assert!(
            msg.starts_with(&format!(
                "{FILE}:4: key `vpn_servers`: `::ffff:192.0.2.8` is an IPv4-mapped IPv6 address"
            )),
            "{msg}"
        );
        assert!(msg.contains("write `192.0.2.8`"), "{msg}");
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
        for (text, needle) in [
            ("external_open_ports = [\"9000-9999\"]", "SocksPort 9050"),
            (
                "external_open_ports = [\"9000-9999\"]",
                "TransPort (trans_port) 9040",
            ),
            ("external_open_ports = [443, 9051]", "control port filter"),
            ("external_open_ports = [9200]", "SocksPort 9152-9229"),
            ("external_open_ports = [5300]", "DnsPort (dns_port) 5300"),
            (
                "external_udp_open_ports = [5300]",
                "DnsPort (dns_port) 5300",
            ),
            // Upstream's SocksPorts count even when socks_ports leaves them out (torrc decides).
            (
                "socks_ports = [9108]\nexternal_open_ports = [9050]",
                "SocksPort 9050",
            ),
            (
                "socks_ports = [9108, 7000]\nexternal_open_ports = [7000]",
                "SocksPort 7000",
            ),
            (
                "trans_port = 8040\nexternal_open_ports = [8040]",
                "TransPort",
            ),
        ] {
            let msg = one(text, Role::Gateway);
            let key = if text.contains("udp") {
                "external_udp_open_ports"
            } else {
                "external_open_ports"
            };
            let line = text.lines().count();
            assert!(
                msg.starts_with(&format!("{FILE}:{line}: key `{key}`")),
                "{text}: {msg}"
            );
            assert!(msg.contains("overlaps Tor's ports"), "{text}: {msg}");
            assert!(msg.contains(needle), "{text}: {msg}");
        }
        config(
            &cfg("external_open_ports = [443, \"8000-8010\", 9001]\nexternal_udp_open_ports = [4500, 53]"),
            Role::Gateway,
        )
        .expect("relay and VPN ports");
    }

    #[test]
    fn tors_single_ports_are_distinct() {
        assert!(
            one("\ndns_port = 9040", Role::Gateway).starts_with(&format!(
                "{FILE}:2: key `dns_port`: `9040` is also trans_port"
            ))
        );
        assert!(
            one("trans_port = 9108", Role::Gateway).starts_with(&format!(
                "{FILE}:1: key `trans_port`: `9108` is also one of socks_ports"
            ))
        );
    }

    #[test]
    fn cross_key_errors_point_at_the_key_set_in_a_file() {
        // Only socks_ports is in the file: point there, not at sdwdate's compiled-in default.
        let msg = one("\nsocks_ports = [9050]", Role::Gateway);
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
        );
        assert!(
            msg.starts_with(&format!(
                "{FILE}:2: key `sdwdate_socks_port` (and {FILE}:1: key `socks_ports`)"
            )),
            "{msg}"
        );
        // The internal network moved away from the default gateway_ip.
        let msg = one("\n\ninternal_network = \"10.137.0.0/16\"", Role::Gateway);
        assert!(
            msg.starts_with(&format!(
                "{FILE}:3: key `internal_network`: `10.152.152.10` is outside"
            )),
            "{msg}"
        );
        // external_interface set to the default internal one.
        let msg = one("external_interface = \"eth1\"", Role::Gateway);
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
        let p = |s: &str| s.parse::<Ipv4Net>().expect("net");
        assert!(within(p("10.152.152.0/24"), p("10.0.0.0/8")));
        assert!(!within(p("10.0.0.0/7"), p("10.0.0.0/8")));
        assert!(within(p("0.0.0.0/0"), p("0.0.0.0/0")));
        assert!(!within(p("172.32.0.0/16"), p("172.16.0.0/12")));
    }
}
