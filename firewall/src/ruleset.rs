//! The pure core: configuration + role + a few host facts in, one nft JSON transaction out.
//!
//! Every ruleset starts with `add table; flush table` for our single `inet anon_firewall`
//! table, then adds its chains (`add` on an existing chain with the same hook, priority and
//! policy changes nothing) and rules, in one transaction: the kernel switches from the old
//! rules to the new ones in one step, and the base chains, with their drop policy, stay
//! hooked throughout. (Deleting and re-adding the table in the transaction, as this did
//! before, leaves a window: the old chains are unhooked during the commit before the new
//! chains' drop policy takes effect, and the soak test saw packets leave in it; see
//! `a_thousand_reloads_across_modes_let_no_packet_out`.) A chain the new ruleset does not use
//! stays, empty: only the gateway's NAT chain, which then redirects nothing. IPv4 and IPv6
//! share the `inet` table. Other tables on the host are left alone; their `accept` cannot
//! override our `drop` (a packet must pass every base chain).

use std::borrow::Cow;
use std::collections::HashSet;

use nftables::batch::Batch;
use nftables::expr::{
    BinaryOperation, Expression as E, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression as N,
    Payload, PayloadField, Prefix, RTFamily, RTKey, SetItem, CT, RT,
};
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{
    JumpTarget, Mangle, Match, Operator, Reject, RejectType, Statement as S, NAT,
};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook, RejectCode};

use crate::config::{Config, Ipv4Net, Mode, PortRange, Role, DEFAULT_SOCKS_PORTS};

/// The one table we own.
pub const TABLE: &str = "anon_firewall";

/// What the ruleset depends on besides the configuration: resolved uids and whether sdwdate
/// has succeeded. Resolved by the shell so that this module stays pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub tor_uid: u32,
    pub no_nat_uids: Vec<u32>,
    /// Workstation, timesync-fail-closed: sdwdate's uid, the only one let through.
    pub sdwdate_uid: Option<u32>,
    /// Gateway with `vpn_servers`: the VPN client's uid.
    pub vpn_uid: Option<u32>,
    /// `/run/sdwdate/first_success` exists (only read in `timesync-fail-closed` mode).
    pub time_synced: bool,
}

/// The mode after taking sdwdate's state into account.
pub fn effective_mode(cfg: &Config, facts: &Facts) -> Mode {
    match cfg.mode {
        Mode::TimesyncFailClosed if !facts.time_synced => Mode::TimesyncFailClosed,
        _ => Mode::Full,
    }
}

/// What `build` produces: the nft transaction and the mode it enforces.
#[derive(Debug)]
pub struct Ruleset {
    pub nftables: Nftables<'static>,
    pub mode: Mode,
}

impl Ruleset {
    /// Builds the full ruleset for `role`.
    pub fn build(cfg: &Config, role: Role, facts: &Facts) -> Ruleset {
        let mode = effective_mode(cfg, facts);
        let mut t = Tx::new();
        match role {
            Role::Gateway => gateway(&mut t, cfg, facts, mode),
            Role::Workstation => workstation(&mut t, cfg, facts, mode),
        }
        Ruleset {
            nftables: t.finish(),
            mode,
        }
    }
}

/// The lockdown ruleset loaded on any error: everything dropped but loopback.
pub fn lockdown() -> Nftables<'static> {
    let mut t = Tx::new();
    filter_chains(&mut t);
    t.rule(
        "input",
        vec![m_eq(meta(MetaKey::Iifname), st("lo")), accept()],
    );
    t.rule(
        "output",
        vec![m_eq(meta(MetaKey::Oifname), st("lo")), accept()],
    );
    t.finish()
}

/// `anon-firewall unload`: removes our table and nothing else, in one transaction that also
/// works when the table is absent. Dangerous on purpose: afterwards this host is unfiltered
/// (unless other tables filter it).
pub fn unload() -> Nftables<'static> {
    let mut batch = Batch::new();
    let table = || {
        NfListObject::Table(Table {
            family: NfFamily::INet,
            name: TABLE.into(),
            handle: None,
        })
    };
    batch.add(table());
    batch.delete(table());
    batch.to_nftables()
}

// ---------------------------------------------------------------------------------------------
// Roles

/// The ct mark bit of a connection that came in on the gateway's internal interface: its
/// replies, and the kernel's resets and ICMP errors about it, may leave by that interface
/// only. Root on the workstation chooses the source address; an answer routed out of the
/// uplink would tell the host named as the source the gateway's real address.
pub const INTERNAL_MARK: u32 = 0x8000_0000;

/// Tor's ports for programs on a Whonix gateway itself (upstream's torrc: TransPort
/// 127.0.0.1:9041, DnsPort 127.0.0.1:5400), closed on loopback until sdwdate's first success.
pub const GATEWAY_LOCAL_TRANS_PORT: u16 = 9041;
pub const GATEWAY_LOCAL_DNS_PORT: u16 = 5400;

/// The three filter chains, policy drop.
fn filter_chains(t: &mut Tx) {
    for (chain, hook) in [
        ("input", NfHook::Input),
        ("forward", NfHook::Forward),
        ("output", NfHook::Output),
    ] {
        t.base_chain(chain, NfChainType::Filter, hook, 0, NfChainPolicy::Drop);
    }
}

/// Anti-spoofing, before conntrack and NAT (priority raw, -300), whatever the rp_filter
/// sysctls say (Debian's default is loose, 2; IPv6 has none): a packet whose source is not
/// routed back out of the interface it came in on is dropped (strict reverse-path filtering
/// with `fib`, both families, every interface but loopback). On the gateway the internal
/// interface also takes IPv4 only from `internal_network` and IPv6 only from link-local
/// addresses (and `::` for duplicate address detection): the gateway offers no IPv6 service
/// on the internal side, so no other IPv6 source is the workstation's.
///
/// Neighbour solicitations and router advertisements skip the route lookup, as firewalld's
/// rpfilter does: duplicate address detection comes from `::`, which has no route. The input
/// chain still takes them only with hop limit 255.
fn sanitize(t: &mut Tx, internal: Option<(&str, Ipv4Net)>) {
    t.base_chain(
        "sanitize",
        NfChainType::Filter,
        NfHook::Prerouting,
        -300,
        NfChainPolicy::Accept,
    );
    if let Some((int_if, net)) = internal {
        t.push(
            "sanitize",
            vec![
                m_eq(meta(MetaKey::Iifname), s(int_if)),
                m(
                    payload("ip", "saddr"),
                    Operator::NEQ,
                    prefix(&net.addr.to_string(), net.prefix),
                ),
                drop(),
            ],
        );
        t.push(
            "sanitize",
            vec![
                m_eq(meta(MetaKey::Iifname), s(int_if)),
                m(
                    payload("ip6", "saddr"),
                    Operator::NEQ,
                    set(vec![st("::"), prefix("fe80::", 10)]),
                ),
                drop(),
            ],
        );
    }
    t.push(
        "sanitize",
        vec![
            m_eq(
                payload("icmpv6", "type"),
                list(&["nd-router-advert", "nd-neighbor-solicit"]),
            ),
            S::Return(None),
        ],
    );
    t.push(
        "sanitize",
        vec![
            m(meta(MetaKey::Iifname), Operator::NEQ, st("lo")),
            m_eq(
                E::Named(N::Fib(Fib {
                    result: FibResult::Oif,
                    flags: [FibFlag::Saddr, FibFlag::Iif].into_iter().collect(),
                })),
                E::Boolean(false),
            ),
            drop(),
        ],
    );
}

/// The gateway: Tor's host and the workstation's only way out. It accepts from the workstation
/// only Tor's ports, proxies the rest of its traffic into Tor, never routes, and lets only Tor
/// out.
fn gateway(t: &mut Tx, cfg: &Config, facts: &Facts, mode: Mode) {
    filter_chains(t);
    sanitize(
        t,
        Some((cfg.internal_interface.as_str(), cfg.internal_network)),
    );
    t.base_chain(
        "prerouting",
        NfChainType::NAT,
        NfHook::Prerouting,
        -100,
        NfChainPolicy::Accept,
    );
    gateway_input(t, cfg, mode);
    gateway_forward(t, cfg);
    gateway_prerouting(t, cfg, mode);
    gateway_output(t, cfg, facts, mode);
}

/// The start of both roles' input chains, shared because none of it depends on the role. The
/// sanity drops come first, before loopback, as upstream's: garbage is dropped before anything
/// could accept it. Then loopback, packets of connections a rule of this ruleset accepted
/// (see [`Tx::grant`]), and the ICMP that keeps TCP working.
fn input_common(t: &mut Tx, ext_if: &str, allow_echo: bool) {
    sanity_drops(t, "input");
    t.rule(
        "input",
        vec![m_eq(meta(MetaKey::Iifname), st("lo")), accept()],
    );
    t.fast_path("input", vec![m_in(ct("state"), st("established"))]);
    icmp_rules(t, "input", ext_if, allow_echo);
}

/// Gateway input. The workstation may reach only the ports Tor serves it on the gateway
/// (before sdwdate's first success, only sdwdate's SocksPort and no DNS, so that nothing but
/// time fetching happens with a wrong clock). The uplink gets only what the config opens on
/// it, each option on the external interface alone: never from the workstation or the VPN.
fn gateway_input(t: &mut Tx, cfg: &Config, mode: Mode) {
    let int_if = cfg.internal_interface.as_str();
    let ext_if = cfg.external_interface.as_str();
    input_common(t, ext_if, cfg.allow_incoming_icmp);
    accept_input(
        t,
        int_if,
        "tcp",
        ports(&internal_tcp_ports(cfg, mode)),
        true,
    );
    if mode == Mode::Full {
        accept_input(t, int_if, "udp", E::Number(cfg.dns_port.into()), true);
    }
    if !cfg.external_open_ports.is_empty() {
        accept_input(t, ext_if, "tcp", ports(&cfg.external_open_ports), false);
    }
    if !cfg.external_udp_open_ports.is_empty() {
        accept_input(t, ext_if, "udp", ports(&cfg.external_udp_open_ports), false);
    }
    if cfg.allow_incoming_ssh {
        // The external interface only, as upstream: never from the workstation or the VPN.
        accept_input(t, ext_if, "tcp", E::Number(22), false);
    }
}

/// An input rule accepting `proto` packets to `dport` that arrive on `iif`: every port the
/// gateway opens is opened on one interface only. `internal`: `iif` is the internal interface,
/// whose connections' packets may leave by it alone.
fn accept_input(t: &mut Tx, iif: &str, proto: &'static str, dport: E<'static>, internal: bool) {
    t.grant(
        "input",
        vec![
            m_eq(meta(MetaKey::Iifname), s(iif)),
            m_eq(payload(proto, "dport"), dport),
        ],
        internal,
    );
}

/// Gateway forward: the gateway never routes (the workstation's traffic leaves only through
/// Tor); reject, to say so to the sender instead of letting it time out. What came in on the
/// internal interface is marked first, so that the reset or ICMP error can only go back out of
/// it (the output chain drops it elsewhere), whatever source address it names.
fn gateway_forward(t: &mut Tx, cfg: &Config) {
    t.push(
        "forward",
        vec![
            m_eq(meta(MetaKey::Iifname), s(cfg.internal_interface.as_str())),
            set_ct_mark(E::Number(INTERNAL_MARK)),
        ],
    );
    t.rule("forward", reject_rules());
}

/// Gateway prerouting (nat): transparent proxying of the workstation, so that its programs
/// reach Tor without being configured for it. Full mode only: before sdwdate's first success
/// nothing is proxied, and the chain stays, empty.
fn gateway_prerouting(t: &mut Tx, cfg: &Config, mode: Mode) {
    if mode != Mode::Full {
        return;
    }
    let int_if = cfg.internal_interface.as_str();
    let gw = cfg.gateway_ip.to_string();
    t.rule(
        "prerouting",
        vec![
            m_eq(meta(MetaKey::Iifname), s(int_if)),
            m_eq(payload("udp", "dport"), E::Number(53)),
            redirect(cfg.dns_port),
        ],
    );
    // Connections to the gateway's own ports stay where they are ...
    t.rule(
        "prerouting",
        vec![
            m_eq(meta(MetaKey::Iifname), s(int_if)),
            m_eq(payload("ip", "daddr"), s(&gw)),
            m_eq(
                payload("tcp", "dport"),
                ports(&internal_tcp_ports(cfg, mode)),
            ),
            accept(),
        ],
    );
    // ... every other new IPv4 TCP connection goes into Tor's TransPort.
    t.rule(
        "prerouting",
        vec![
            m_eq(meta(MetaKey::Iifname), s(int_if)),
            m_eq(meta(MetaKey::Nfproto), st("ipv4")),
            m_eq(meta(MetaKey::L4proto), st("tcp")),
            redirect(cfg.trans_port),
        ],
    );
}

/// The start of both roles' output chains, shared because none of it depends on the role:
/// garbage never leaves (dropped first, so no later accept can pass it), then the role's
/// `guard` (rules that drop whatever the rest would pass), the kernel's related answers (ICMP
/// errors, resets), Tor's loopback ports are closed in timesync-fail-closed mode before
/// anything could open them, packets of connections a rule of this ruleset accepted go out,
/// and loopback and IPv6 neighbour discovery work, as any host needs. Each role then adds who
/// may leave, and ends with the reject.
fn output_common(t: &mut Tx, cfg: &Config, mode: Mode, guard: impl FnOnce(&mut Tx)) {
    sanity_drops(t, "output");
    guard(t);
    // The kernel's own answers about a connection: ICMP errors of the types TCP and UDP need
    // (unreachable, PMTU) and the resets and errors of our reject rules. They carry no data;
    // where they may go is held by the guard above. Before the loopback rejects: the reset
    // our reject sends a local client comes from the closed port, in the reply direction,
    // and must reach it, or the client hangs until it times out.
    for (proto, types) in [
        ("icmp", list(&["destination-unreachable"])),
        (
            "icmpv6",
            list(&["destination-unreachable", "packet-too-big"]),
        ),
    ] {
        t.rule(
            "output",
            vec![
                m_in(ct("state"), st("related")),
                m_eq(payload(proto, "type"), types),
                accept(),
            ],
        );
    }
    t.rule(
        "output",
        vec![
            m_in(ct("state"), st("related")),
            m_eq(
                and(payload("tcp", "flags"), flags(&["rst"])),
                flags(&["rst"]),
            ),
            accept(),
        ],
    );
    timesync_loopback_rejects(t, cfg, mode);
    t.fast_path("output", vec![m_in(ct("state"), st("established"))]);
    t.rule(
        "output",
        vec![m_eq(meta(MetaKey::Oifname), st("lo")), accept()],
    );
}

/// IPv6 neighbour discovery out of `oifs` only, only to link-local and the all-nodes,
/// all-routers and solicited-node multicast addresses, hop limit 255: what a host needs to
/// find its neighbours, never a packet routed elsewhere. Router advertisements are not sent:
/// neither role is an IPv6 router. (A neighbour that solicits from a global address gets no
/// unicast answer; it falls back to multicast.)
fn nd_output(t: &mut Tx, oifs: &[&str]) {
    let oif = match oifs {
        [one] => s(one),
        many => set(many.iter().map(|i| s(i)).collect()),
    };
    t.rule(
        "output",
        vec![
            m_eq(meta(MetaKey::Oifname), oif),
            m_eq(
                payload("icmpv6", "type"),
                list(&[
                    "nd-router-solicit",
                    "nd-neighbor-solicit",
                    "nd-neighbor-advert",
                ]),
            ),
            m_eq(
                payload("ip6", "daddr"),
                set(vec![
                    st("ff02::1"),
                    st("ff02::2"),
                    prefix("ff02::1:ff00:0", 104),
                    prefix("fe80::", 10),
                ]),
            ),
            m_eq(payload("ip6", "hoplimit"), E::Number(255)),
            accept(),
        ],
    );
}

/// Gateway output: only Tor (and, once the clock is right, the `no_nat_users`) leave the box,
/// so that nothing on the gateway can reach the internet around Tor; the local networks only
/// in full mode, as upstream. Nothing of a connection that came in on the internal interface
/// leaves by another one.
fn gateway_output(t: &mut Tx, cfg: &Config, facts: &Facts, mode: Mode) {
    let int_if = cfg.internal_interface.as_str();
    output_common(t, cfg, mode, |t| {
        t.push(
            "output",
            vec![
                m_eq(
                    and(ct("mark"), E::Number(INTERNAL_MARK)),
                    E::Number(INTERNAL_MARK),
                ),
                m(meta(MetaKey::Oifname), Operator::NEQ, s(int_if)),
                drop(),
            ],
        );
    });
    nd_output(t, &[cfg.external_interface.as_str(), int_if]);
    if mode == Mode::Full {
        gateway_output_local_networks(t, cfg);
    }
    gateway_output_users(t, cfg, facts, mode);
    t.rule("output", reject_rules());
}

/// DNS to a local network would be a way around Tor for every process (Whonix-KVM's host
/// resolver 10.0.2.2 if `local_networks` names 10.0.2.0/24): refused, TCP and UDP 53 and
/// DNS over TLS (853).
const LOCAL_DNS_PORTS: [PortRange; 2] = [PortRange::single(53), PortRange::single(853)];

/// The workstation network and the LAN, as any user. The workstation network only through the
/// internal interface: an address of it that is routed out of the uplink (Whonix-KVM's
/// external 10.0.2.0/24 with dnsmasq's DNS on 10.0.2.2, if the internal network were written
/// 10.0.0.0/8) is not the workstation. The LAN only through the external interface (where it
/// is), and never its DNS servers.
fn gateway_output_local_networks(t: &mut Tx, cfg: &Config) {
    let n = cfg.internal_network;
    t.grant(
        "output",
        vec![
            originated(),
            m_eq(meta(MetaKey::Oifname), s(cfg.internal_interface.as_str())),
            m_eq(
                payload("ip", "daddr"),
                prefix(&n.addr.to_string(), n.prefix),
            ),
        ],
        false,
    );
    if !cfg.local_networks.is_empty() {
        let ext_if = cfg.external_interface.as_str();
        let nets = || {
            set(cfg
                .local_networks
                .iter()
                .map(|n| prefix(&n.addr.to_string(), n.prefix))
                .collect())
        };
        t.rule(
            "output",
            vec![
                m_eq(meta(MetaKey::Oifname), s(ext_if)),
                m_eq(payload("ip", "daddr"), nets()),
                m_eq(meta(MetaKey::L4proto), list(&["tcp", "udp"])),
                m_eq(payload("th", "dport"), ports(&LOCAL_DNS_PORTS)),
                reject(),
            ],
        );
        t.grant(
            "output",
            vec![
                originated(),
                m_eq(meta(MetaKey::Oifname), s(ext_if)),
                m_eq(payload("ip", "daddr"), nets()),
            ],
            false,
        );
    }
}

/// Tor's user and the `no_nat_users`, the only ones that reach the internet; the
/// `no_nat_users` only in full mode (until sdwdate's first success nothing but Tor leaves).
/// One rule per uid, so that removing one user cuts that user's connections only. With the VPN
/// firewall only through the VPN's interface, so that Tor cannot connect around a VPN that is
/// down; the VPN client itself then needs its own way to its servers (in both modes: Tor
/// cannot fetch time without the VPN).
fn gateway_output_users(t: &mut Tx, cfg: &Config, facts: &Facts, mode: Mode) {
    let mut out_uids = vec![facts.tor_uid];
    if mode == Mode::Full {
        for u in &facts.no_nat_uids {
            if !out_uids.contains(u) {
                out_uids.push(*u);
            }
        }
    }
    if cfg.vpn_firewall {
        if let (false, Some(vpn_uid)) = (cfg.vpn_servers.is_empty(), facts.vpn_uid) {
            vpn_client_output(t, cfg, vpn_uid);
        }
    }
    for uid in out_uids {
        let mut r = vec![originated()];
        if cfg.vpn_firewall {
            r.push(m_eq(meta(MetaKey::Oifname), s(cfg.vpn_interface.as_str())));
        }
        r.push(m_eq(meta(MetaKey::Skuid), E::Number(uid)));
        t.grant("output", r, false);
    }
}

/// The VPN client's own connection to its servers, through the real uplink: its user, its
/// ports, nothing else, as it is the only traffic besides Tor's that leaves unwrapped. One
/// rule per address family (`ip` and `ip6` match different headers).
fn vpn_client_output(t: &mut Tx, cfg: &Config, vpn_uid: u32) {
    let (v4, v6): (Vec<&std::net::IpAddr>, Vec<_>) =
        cfg.vpn_servers.iter().partition(|a| a.is_ipv4());
    for (proto, addrs) in [("ip", v4), ("ip6", v6)] {
        if addrs.is_empty() {
            continue;
        }
        t.grant(
            "output",
            vec![
                originated(),
                m_eq(meta(MetaKey::Oifname), s(cfg.external_interface.as_str())),
                m_eq(
                    payload(proto, "daddr"),
                    set(addrs.iter().map(|a| s(&a.to_string())).collect()),
                ),
                m_eq(meta(MetaKey::Skuid), E::Number(vpn_uid)),
                m_eq(meta(MetaKey::L4proto), list(&["tcp", "udp"])),
                m_eq(payload("th", "dport"), ports(&cfg.vpn_server_ports)),
            ],
            false,
        );
    }
}

/// The workstation: everything it sends goes to the gateway, which puts it into Tor. It has
/// no forward rules: it never routes, and the chain's drop policy says so.
fn workstation(t: &mut Tx, cfg: &Config, facts: &Facts, mode: Mode) {
    filter_chains(t);
    sanitize(t, None);
    workstation_input(t, cfg, mode);
    workstation_output(t, cfg, facts, mode);
}

/// Workstation input: the shared start without echo (`allow_incoming_icmp` is the gateway's
/// option, for pings from its uplink), then the configured open ports in full mode only, as
/// everything beyond time fetching waits for sdwdate's first success. The rest is rejected so
/// that a caller fails fast instead of timing out.
fn workstation_input(t: &mut Tx, cfg: &Config, mode: Mode) {
    input_common(t, cfg.external_interface.as_str(), false);
    if mode == Mode::Full && !cfg.workstation_open_ports.is_empty() {
        t.grant(
            "input",
            vec![m_eq(
                payload("tcp", "dport"),
                ports(&cfg.workstation_open_ports),
            )],
            false,
        );
    }
    t.rule("input", reject_rules());
}

/// Workstation output: only what the gateway proxies into Tor (DNS and IPv4 TCP), and before
/// sdwdate's first success only sdwdate's time fetching. Every IPv4 packet but loopback's must
/// have the gateway as its route's next hop (`rt ip nexthop`): a workstation plugged into
/// another network, or given another default route after the rules were loaded, sends
/// nothing in the clear.
fn workstation_output(t: &mut Tx, cfg: &Config, facts: &Facts, mode: Mode) {
    output_common(t, cfg, mode, |t| {
        t.push(
            "output",
            vec![
                m_eq(meta(MetaKey::Nfproto), st("ipv4")),
                m(meta(MetaKey::Oifname), Operator::NEQ, st("lo")),
                m(
                    E::Named(N::RT(RT {
                        key: RTKey::NextHop,
                        family: Some(RTFamily::IP),
                    })),
                    Operator::NEQ,
                    s(&cfg.gateway_ip.to_string()),
                ),
                drop(),
            ],
        );
    });
    nd_output(t, &[cfg.external_interface.as_str()]);
    match mode {
        Mode::Full => workstation_output_full(t, cfg),
        Mode::TimesyncFailClosed => workstation_output_timesync(t, cfg, facts),
    }
    t.rule("output", reject_rules());
}

/// Full mode: DNS to the gateway, and TCP only out of the uplink to the gateway
/// (`external_interface`): another interface of the workstation (a second NIC, a USB tether)
/// would not go through Tor.
fn workstation_output_full(t: &mut Tx, cfg: &Config) {
    let gw = cfg.gateway_ip.to_string();
    t.grant(
        "output",
        vec![
            originated(),
            m_eq(payload("ip", "daddr"), s(&gw)),
            m_eq(payload("udp", "dport"), E::Number(53)),
        ],
        false,
    );
    let mut r = vec![
        originated(),
        m_eq(meta(MetaKey::Oifname), s(cfg.external_interface.as_str())),
    ];
    if !cfg.workstation_transparent_tcp {
        r.push(m_eq(payload("ip", "daddr"), s(&gw)));
    }
    r.extend([
        m_eq(meta(MetaKey::Nfproto), st("ipv4")),
        m_eq(meta(MetaKey::L4proto), st("tcp")),
    ]);
    t.grant("output", r, false);
}

/// Timesync-fail-closed mode: only sdwdate's user reaches the gateway, and only its SocksPort
/// and the control port filter (for Tor's consensus time), so that nothing but time fetching
/// happens with a wrong clock. Without a resolved uid nobody does.
fn workstation_output_timesync(t: &mut Tx, cfg: &Config, facts: &Facts) {
    let Some(uid) = facts.sdwdate_uid else {
        return;
    };
    t.grant(
        "output",
        vec![
            originated(),
            m_eq(meta(MetaKey::Skuid), E::Number(uid)),
            m_eq(payload("ip", "daddr"), s(&cfg.gateway_ip.to_string())),
            m_eq(
                payload("tcp", "dport"),
                ports(&[
                    PortRange::single(cfg.sdwdate_socks_port),
                    PortRange::single(cfg.control_port_filter_port),
                ]),
            ),
        ],
        false,
    );
}

/// In timesync-fail-closed mode, loopback connections to every Tor port but sdwdate's
/// SocksPort are refused, before anything could accept them (upstream: whonix-firewall's
/// "Prevent connections to Tor SocksPorts"). Matching on `oifname lo` covers 127.0.0.1, ::1
/// and the host's own addresses (the gateway's 10.152.152.10 is reached over `lo` from the
/// gateway itself). Both directions are refused, the client's by destination port and the
/// server's replies by source port, so that a connection opened in full mode is cut when the
/// rules go back to timesync-fail-closed.
///
/// Which ports Tor really listens on comes from torrc, not from our config: the closed set is
/// the union of upstream's SocksPorts, the configured `socks_ports`, the TransPort and the
/// DnsPort (TCP and UDP), and the gateway's own TransPort and DnsPort of upstream's torrc
/// (9041, 5400), so that `socks_ports = [9108]` cannot reopen 9050 on loopback. The control
/// port filter (9051) stays reachable, as upstream (sdwdate reads Tor's consensus time
/// through it).
fn timesync_loopback_rejects(t: &mut Tx, cfg: &Config, mode: Mode) {
    if mode != Mode::TimesyncFailClosed {
        return;
    }
    let mut tor = DEFAULT_SOCKS_PORTS.to_vec();
    tor.extend(cfg.socks_ports.iter().copied());
    tor.extend(
        [
            cfg.trans_port,
            cfg.dns_port,
            GATEWAY_LOCAL_TRANS_PORT,
            GATEWAY_LOCAL_DNS_PORT,
        ]
        .map(PortRange::single),
    );
    let closed_tcp = without_port(&merged(&tor), cfg.sdwdate_socks_port);
    // Tor's only UDP ports are the DnsPorts.
    let closed_udp = merged(&[
        PortRange::single(cfg.dns_port),
        PortRange::single(GATEWAY_LOCAL_DNS_PORT),
    ]);
    for (proto, closed, verdict) in [
        (
            "tcp",
            &closed_tcp,
            Reject::new(Some(RejectType::TCPReset), None),
        ),
        (
            "udp",
            &closed_udp,
            Reject::new(Some(RejectType::ICMPX), Some(RejectCode::AdminProhibited)),
        ),
    ] {
        if closed.is_empty() {
            continue;
        }
        t.push(
            "output",
            vec![
                m_eq(meta(MetaKey::Oifname), st("lo")),
                m_eq(payload(proto, "dport"), ports(closed)),
                S::Reject(Some(verdict.clone())),
            ],
        );
        t.push(
            "output",
            vec![
                m_eq(meta(MetaKey::Oifname), st("lo")),
                m_eq(ct("direction"), st("reply")),
                m_eq(payload(proto, "sport"), ports(closed)),
                S::Reject(Some(verdict)),
            ],
        );
    }
}

/// `ct direction original`: the host itself opened the connection. The output rules that let
/// a user or program connect judge only that direction; replies to connections that came in
/// leave only as packets of a granted connection (the fast path), so that a reply to a
/// connection the current rules refuse never leaves by a rule meant for our own connections.
fn originated() -> S<'static> {
    m_eq(ct("direction"), st("original"))
}

/// `ranges` sorted, with overlapping and adjacent ranges merged (nft refuses overlapping
/// intervals in one set).
fn merged(ranges: &[PortRange]) -> Vec<PortRange> {
    let mut sorted = ranges.to_vec();
    sorted.sort_by_key(|r| (r.first, r.last));
    let mut out: Vec<PortRange> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(last) if u32::from(r.first) <= u32::from(last.last) + 1 => {
                last.last = last.last.max(r.last);
            }
            _ => out.push(r),
        }
    }
    out
}

/// `ranges` without the single port `port` (a range holding it is split around it).
fn without_port(ranges: &[PortRange], port: u16) -> Vec<PortRange> {
    let mut out = Vec::new();
    for r in ranges {
        if !r.contains(port) {
            out.push(*r);
            continue;
        }
        if r.first < port {
            out.push(PortRange::range(r.first, port - 1));
        }
        if port < r.last {
            out.push(PortRange::range(port + 1, r.last));
        }
    }
    out
}

/// TCP ports of the gateway open to the workstation in `mode`.
fn internal_tcp_ports(cfg: &Config, mode: Mode) -> Vec<PortRange> {
    match mode {
        Mode::TimesyncFailClosed => vec![PortRange::single(cfg.sdwdate_socks_port)],
        Mode::Full => {
            let mut p = vec![
                PortRange::single(cfg.trans_port),
                PortRange::single(cfg.control_port_filter_port),
            ];
            p.extend(cfg.socks_ports.iter().copied());
            p.extend(cfg.internal_open_ports.iter().copied());
            p
        }
    }
}

/// Drops of packets no honest stack sends (upstream whonix-firewall's list), on input and on
/// output of both roles. Dropped rather than rejected on output too: a conntrack-invalid packet
/// of a closed Tor connection must not go out, and a reject would itself send something.
fn sanity_drops(t: &mut Tx, chain: &'static str) {
    if !t.chains.contains(SANITY) {
        t.chain(SANITY);
        sanity_rules(t);
    }
    t.push(
        chain,
        vec![S::Jump(JumpTarget {
            target: Cow::Borrowed(SANITY),
        })],
    );
}

/// The regular chain both roles' input and output jump to first (one copy of the rules).
const SANITY: &str = "sanity";

fn sanity_rules(t: &mut Tx) {
    let chain = SANITY;
    t.rule(chain, vec![m_in(ct("state"), st("invalid")), drop()]);
    // nft adds each payload match's protocol dependency (`meta l4proto tcp`, `meta nfproto
    // ipv4`) itself, so the rules below do not spell it out.
    let all = ["fin", "syn", "rst", "psh", "ack", "urg"];
    for (mask, value) in [
        (&all[..], &["fin", "psh", "urg"][..]), // the classic XMAS scan
        (&all[..], &[][..]),                    // NULL
        // Both of these also cover upstream's FIN+SYN+RST+ACK and all-six rules, which
        // have SYN and FIN set.
        (&["syn", "fin"][..], &["syn", "fin"][..]),
        (&["syn", "rst"][..], &["syn", "rst"][..]),
    ] {
        t.rule(
            chain,
            vec![
                m_eq(and(payload("tcp", "flags"), flags(mask)), flags(value)),
                drop(),
            ],
        );
    }
    // IPv4 fragments: any packet with MF set or a non-zero offset (upstream drops only
    // non-first fragments, 0x1fff).
    t.rule(
        chain,
        vec![
            m(
                and(payload("ip", "frag-off"), E::Number(0x3fff)),
                Operator::NEQ,
                E::Number(0),
            ),
            drop(),
        ],
    );
}

/// ICMP: only what keeps TCP working (PMTU discovery about a granted connection, neighbour
/// discovery) unless echo is allowed, and then only on the external interface. Router advertisements only from the
/// external interface: nobody on the internal side may become our router.
fn icmp_rules(t: &mut Tx, chain: &'static str, ext_if: &str, allow_echo: bool) {
    t.fast_path(
        chain,
        vec![
            m_eq(payload("icmp", "type"), st("destination-unreachable")),
            m_eq(payload("icmp", "code"), st("frag-needed")),
            m_in(ct("state"), st("related")),
        ],
    );
    t.fast_path(
        chain,
        vec![
            m_eq(payload("icmpv6", "type"), st("packet-too-big")),
            m_in(ct("state"), st("related")),
        ],
    );
    t.rule(
        chain,
        vec![
            m_eq(
                payload("icmpv6", "type"),
                list(&[
                    "nd-router-solicit",
                    "nd-neighbor-solicit",
                    "nd-neighbor-advert",
                ]),
            ),
            m_eq(payload("ip6", "hoplimit"), E::Number(255)),
            accept(),
        ],
    );
    t.rule(
        chain,
        vec![
            m_eq(meta(MetaKey::Iifname), s(ext_if)),
            m_eq(payload("icmpv6", "type"), st("nd-router-advert")),
            m_eq(payload("ip6", "hoplimit"), E::Number(255)),
            accept(),
        ],
    );
    if allow_echo {
        for proto in ["icmp", "icmpv6"] {
            t.rule(
                chain,
                vec![
                    m_eq(meta(MetaKey::Iifname), s(ext_if)),
                    m_eq(payload(proto, "type"), st("echo-request")),
                    accept(),
                ],
            );
        }
    }
    t.rule(
        chain,
        vec![
            m_eq(
                meta(MetaKey::L4proto),
                set(vec![st("icmp"), st("ipv6-icmp")]),
            ),
            drop(),
        ],
    );
}

/// A rule that rejects; `Tx::rule` expands it to a TCP reset for TCP and ICMP
/// "administratively prohibited" for everything else.
fn reject_rules() -> Vec<S<'static>> {
    vec![reject()]
}

// ---------------------------------------------------------------------------------------------
// A small builder over the nftables schema types, so rules above read like nft syntax.

struct Tx {
    batch: Batch<'static>,
    chains: HashSet<String>,
    /// The rules, in order; `fast_path` rules get their grant set in `finish`.
    rules: Vec<(&'static str, Vec<S<'static>>)>,
    /// Indices into `rules` of the fast-path rules.
    fast_paths: Vec<usize>,
    /// Every grant an accepting rule of this ruleset sets.
    grants: Vec<u32>,
}

/// FNV-1a over what is written to it: a stable, dependency-free hash for grants (the golden
/// files must not change between builds or machines).
struct Fnv(u32);

impl Fnv {
    fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u32::from(*b)).wrapping_mul(0x0100_0193);
        }
    }
}

impl std::io::Write for Fnv {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.feed(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Tx {
    fn new() -> Tx {
        let mut batch = Batch::new();
        let table = || {
            NfListObject::Table(Table {
                family: NfFamily::INet,
                name: TABLE.into(),
                handle: None,
            })
        };
        // `add` makes sure the table exists so that `flush` cannot fail; the flush then throws
        // away our previous rules (not the chains: they stay hooked, policy drop) inside the
        // same transaction.
        batch.add(table());
        batch.add_cmd(NfCmd::Flush(FlushObject::Table(Table {
            family: NfFamily::INet,
            name: TABLE.into(),
            handle: None,
        })));
        Tx {
            batch,
            chains: HashSet::new(),
            rules: Vec::new(),
            fast_paths: Vec::new(),
            grants: Vec::new(),
        }
    }

    fn base_chain(
        &mut self,
        name: &str,
        ty: NfChainType,
        hook: NfHook,
        prio: i32,
        policy: NfChainPolicy,
    ) {
        self.chains.insert(name.to_owned());
        self.batch.add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: name.to_owned().into(),
            _type: Some(ty),
            hook: Some(hook),
            prio: Some(prio),
            policy: Some(policy),
            ..Chain::default()
        }));
    }

    /// A regular chain (no hook): reached only by a jump.
    fn chain(&mut self, name: &'static str) {
        self.chains.insert(name.to_owned());
        self.batch.add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: Cow::Borrowed(name),
            ..Chain::default()
        }));
    }

    /// Adds a rule. A final `reject` statement expands to two rules: TCP reset for TCP
    /// (so clients fail fast instead of hanging), ICMP admin-prohibited for the rest.
    fn rule(&mut self, chain: &'static str, expr: Vec<S<'static>>) {
        if let Some(S::Reject(_)) = expr.last() {
            let mut tcp = expr.clone();
            tcp.pop();
            tcp.push(m_eq(meta(MetaKey::L4proto), st("tcp")));
            tcp.push(S::Reject(Some(Reject::new(
                Some(RejectType::TCPReset),
                None,
            ))));
            self.push(chain, tcp);
        }
        self.push(chain, expr);
    }

    fn push(&mut self, chain: &'static str, expr: Vec<S<'static>>) {
        debug_assert!(
            self.chains.contains(chain),
            "rule for unknown chain {chain}"
        );
        self.rules.push((chain, expr));
    }

    /// An accepting rule that marks the connection it accepts with its grant: a hash of the
    /// chain and of the rule's matches, so the same rule has the same grant in every ruleset,
    /// and a rule that changes (another port set, user or interface) has another. `internal`
    /// adds [`INTERNAL_MARK`].
    ///
    /// Why: packets of known connections are accepted early ([`Tx::fast_path`]), but only
    /// when their grant is one of this ruleset's. After a reload that narrows the rules, a
    /// connection opened under the old ones has a grant the new ruleset does not set: its
    /// packets fall through to the rules, which judge them as they would a new connection's
    /// (and mark it again if some rule still accepts it), and replies, which no rule accepts,
    /// are dropped. So no packet of a connection the new rules refuse gets through.
    fn grant(&mut self, chain: &'static str, matches: Vec<S<'static>>, internal: bool) {
        let mut h = Fnv(0x811c_9dc5);
        h.feed(chain.as_bytes());
        // The rule's own JSON, streamed into the hash (nothing is allocated); writing into
        // Fnv cannot fail.
        let _ = serde_json::to_writer(&mut h, &matches);
        // Bit 31 is INTERNAL_MARK's; 0 is an unmarked connection.
        let g = (h.0 & !INTERNAL_MARK).max(1) | if internal { INTERNAL_MARK } else { 0 };
        self.grants.push(g);
        let mut expr = matches;
        expr.push(set_ct_mark(E::Number(g)));
        expr.push(accept());
        self.push(chain, expr);
    }

    /// Accepts packets that match `matches` and whose connection carries one of this
    /// ruleset's grants (filled in by `finish`; left out when the ruleset grants nothing).
    fn fast_path(&mut self, chain: &'static str, matches: Vec<S<'static>>) {
        self.fast_paths.push(self.rules.len());
        let mut expr = matches;
        expr.push(accept());
        self.push(chain, expr);
    }

    fn finish(mut self) -> Nftables<'static> {
        self.grants.sort_unstable();
        self.grants.dedup();
        let grants = &self.grants;
        for (i, (chain, mut expr)) in self.rules.into_iter().enumerate() {
            if self.fast_paths.contains(&i) {
                if grants.is_empty() {
                    continue;
                }
                let at = expr.len() - 1;
                expr.insert(
                    at,
                    m_eq(
                        ct("mark"),
                        set(grants.iter().map(|g| E::Number(*g)).collect()),
                    ),
                );
            }
            self.batch.add(NfListObject::Rule(Rule {
                family: NfFamily::INet,
                table: TABLE.into(),
                chain: Cow::Borrowed(chain),
                expr: expr.into(),
                ..Rule::default()
            }));
        }
        self.batch.to_nftables()
    }
}

/// `ct mark set VALUE`.
fn set_ct_mark(value: E<'static>) -> S<'static> {
    S::Mangle(Mangle {
        key: ct("mark"),
        value,
    })
}

/// A reject; `Tx::rule` expands it to a TCP reset for TCP and ICMP "administratively
/// prohibited" for everything else.
fn reject() -> S<'static> {
    S::Reject(Some(Reject::new(
        Some(RejectType::ICMPX),
        Some(RejectCode::AdminProhibited),
    )))
}

fn s(v: &str) -> E<'static> {
    E::String(Cow::Owned(v.to_owned()))
}
/// A string known at compile time: borrowed, not copied (most of a ruleset's strings).
fn st(v: &'static str) -> E<'static> {
    E::String(Cow::Borrowed(v))
}
fn list(v: &[&'static str]) -> E<'static> {
    set(v.iter().map(|x| st(x)).collect())
}
fn set(items: Vec<E<'static>>) -> E<'static> {
    E::Named(N::Set(items.into_iter().map(SetItem::Element).collect()))
}
fn prefix(addr: &str, len: u8) -> E<'static> {
    E::Named(N::Prefix(Prefix {
        addr: Box::new(s(addr)),
        len: len.into(),
    }))
}
fn meta(key: MetaKey) -> E<'static> {
    E::Named(N::Meta(Meta { key }))
}
fn ct(key: &'static str) -> E<'static> {
    E::Named(N::CT(CT {
        key: Cow::Borrowed(key),
        family: None,
        dir: None,
    }))
}
fn payload(protocol: &'static str, field: &'static str) -> E<'static> {
    E::Named(N::Payload(Payload::PayloadField(PayloadField {
        protocol: Cow::Borrowed(protocol),
        field: Cow::Borrowed(field),
    })))
}
fn and(a: E<'static>, b: E<'static>) -> E<'static> {
    E::BinaryOperation(Box::new(BinaryOperation::AND(a, b)))
}
fn flags(f: &[&str]) -> E<'static> {
    match f {
        [] => E::Number(0),
        [one] => s(one),
        many => E::List(many.iter().map(|x| s(x)).collect()),
    }
}
fn ports(p: &[PortRange]) -> E<'static> {
    let one = |r: &PortRange| {
        if r.first == r.last {
            E::Number(r.first.into())
        } else {
            E::Range(Box::new(nftables::expr::Range {
                range: [E::Number(r.first.into()), E::Number(r.last.into())],
            }))
        }
    };
    match p {
        [single] if single.first == single.last => one(single),
        _ => set(p.iter().map(one).collect()),
    }
}
fn m(left: E<'static>, op: Operator, right: E<'static>) -> S<'static> {
    S::Match(Match { left, right, op })
}
fn m_eq(left: E<'static>, right: E<'static>) -> S<'static> {
    m(left, Operator::EQ, right)
}
fn m_in(left: E<'static>, right: E<'static>) -> S<'static> {
    m(left, Operator::IN, right)
}
fn accept() -> S<'static> {
    S::Accept(None)
}
fn drop() -> S<'static> {
    S::Drop(None)
}
fn redirect(port: u16) -> S<'static> {
    S::Redirect(Some(NAT {
        addr: None,
        family: None,
        port: Some(E::Number(port.into())),
        flags: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftables::schema::NfObject;

    fn objects(n: &Nftables<'static>) -> Vec<NfObject<'static>> {
        n.objects.to_vec()
    }

    fn all_cases() -> Vec<Nftables<'static>> {
        let mut out = vec![lockdown()];
        for role in [Role::Gateway, Role::Workstation] {
            for mode in [Mode::Full, Mode::TimesyncFailClosed] {
                for synced in [false, true] {
                    let cfg = Config {
                        mode,
                        ..Config::default()
                    };
                    let facts = Facts {
                        tor_uid: 1,
                        no_nat_uids: vec![2],
                        sdwdate_uid: Some(3),
                        vpn_uid: None,
                        time_synced: synced,
                    };
                    out.push(Ruleset::build(&cfg, role, &facts).nftables);
                }
            }
        }
        out
    }

    #[test]
    fn every_ruleset_replaces_our_rules_in_one_transaction_without_unhooking() {
        for n in all_cases() {
            let o = objects(&n);
            assert!(
                matches!(&o[0], NfObject::CmdObject(NfCmd::Add(NfListObject::Table(t))) if t.name == TABLE)
            );
            assert!(
                matches!(&o[1], NfObject::CmdObject(NfCmd::Flush(FlushObject::Table(t))) if t.name == TABLE)
            );
            // Nothing is deleted (a deleted base chain is unhooked before the new one's drop
            // policy holds) and nothing else is flushed: other tables are left alone.
            assert!(o[2..]
                .iter()
                .all(|x| matches!(x, NfObject::CmdObject(NfCmd::Add(_)))));
        }
    }

    #[test]
    fn every_filter_chain_drops_by_default() {
        for n in all_cases() {
            let mut filters = 0;
            for obj in objects(&n) {
                if let NfObject::CmdObject(NfCmd::Add(NfListObject::Chain(c))) = obj {
                    if c._type == Some(NfChainType::Filter) && c.name != "sanitize" {
                        filters += 1;
                        assert_eq!(c.policy, Some(NfChainPolicy::Drop), "chain {}", c.name);
                    }
                }
            }
            assert_eq!(filters, 3);
        }
    }

    #[test]
    fn timesync_mode_has_no_redirect_until_synced() {
        let cfg = Config {
            mode: Mode::TimesyncFailClosed,
            ..Config::default()
        };
        let json = |synced| {
            let facts = Facts {
                tor_uid: 1,
                no_nat_uids: vec![],
                sdwdate_uid: None,
                vpn_uid: None,
                time_synced: synced,
            };
            serde_json::to_string(&Ruleset::build(&cfg, Role::Gateway, &facts).nftables)
                .expect("json")
        };
        assert!(!json(false).contains("redirect"));
        assert!(json(true).contains("redirect"));
    }

    /// The statements of each rule of `chain`, as JSON text, in order.
    fn rules_of(n: &Nftables<'static>, chain: &'static str) -> Vec<String> {
        objects(n)
            .iter()
            .filter_map(|o| match o {
                NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(r))) if r.chain == chain => {
                    Some(serde_json::to_string(&r.expr).expect("json"))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn sanity_drops_come_first_on_every_chain_of_both_roles() {
        for n in all_cases().into_iter().skip(1) {
            for chain in ["input", "output"] {
                let rules = rules_of(&n, chain);
                let lo = rules
                    .iter()
                    .position(|r| r.contains("\"lo\"") && r.contains("accept"))
                    .expect("a loopback accept");
                let before = &rules[..lo];
                // First of all, the jump to the shared sanity drops.
                assert!(
                    rules[0].contains("\"jump\"") && rules[0].contains(SANITY),
                    "{chain}: {}",
                    rules[0]
                );
                let sanity = rules_of(&n, SANITY);
                assert!(sanity.iter().all(|r| r.contains("drop")), "{sanity:?}");
                assert!(sanity.iter().any(|r| r.contains("invalid")), "{chain}");
                assert!(sanity.iter().any(|r| r.contains("frag-off")), "{chain}");
                // XMAS, NULL, SYN+FIN and SYN+RST (the last two cover upstream's others).
                assert_eq!(
                    sanity.iter().filter(|r| r.contains("flags")).count(),
                    4,
                    "{chain}"
                );
                assert!(
                    before.iter().all(|r| r.contains("drop") || r.contains("reject")
                        || r.contains("\"jump\"")
                        || (r.contains("\"mark\"") && r.contains("accept"))
                        || (r.contains("related") && r.contains("accept"))),
                    "{chain}: nothing but drops, the granted fast path, the kernel's related answers \
                     and timesync rejects before lo"
                );
            }
        }
    }

    fn facts() -> Facts {
        Facts {
            tor_uid: 1,
            no_nat_uids: vec![],
            sdwdate_uid: Some(3),
            vpn_uid: None,
            time_synced: false,
        }
    }

    #[test]
    fn timesync_loopback_rejects_cover_tor_ports_whatever_socks_ports_says() {
        for role in [Role::Gateway, Role::Workstation] {
            let cfg = Config {
                mode: Mode::TimesyncFailClosed,
                socks_ports: vec![PortRange::single(9108)],
                ..Config::default()
            };
            let rules = rules_of(&Ruleset::build(&cfg, role, &facts()).nftables, "output");
            let lo = rules
                .iter()
                .position(|r| r.contains("\"lo\"") && r.contains("accept"))
                .expect("a loopback accept");
            let rejects: Vec<&String> = rules[..lo]
                .iter()
                .filter(|r| r.contains("reject"))
                .collect();
            let tcp = rejects
                .iter()
                .find(|r| r.contains("\"tcp\""))
                .unwrap_or_else(|| panic!("{role}: no TCP reject before lo: {rules:?}"));
            // Upstream's SocksPorts, the TransPort and the DnsPort, split around 9108.
            for port in [
                "9050",
                "9040",
                "5300",
                "9150",
                "[9100,9107]",
                "[9109,9111]",
                "[9152,9229]",
            ] {
                assert!(tcp.contains(port), "{role}: {port} not rejected: {tcp}");
            }
            assert!(!tcp.contains("9108") && !tcp.contains("9051"), "{tcp}");
            let udp = rejects
                .iter()
                .find(|r| r.contains("\"udp\""))
                .unwrap_or_else(|| panic!("{role}: no UDP reject before lo: {rules:?}"));
            assert!(udp.contains("5300"), "{udp}");
        }
    }

    #[test]
    fn merged_sorts_and_joins_ranges() {
        let r = PortRange::range;
        assert_eq!(
            merged(&[
                r(9100, 9125),
                r(9050, 9050),
                r(9110, 9130),
                r(9131, 9131),
                r(1, 2)
            ]),
            vec![r(1, 2), r(9050, 9050), r(9100, 9131)]
        );
        assert_eq!(merged(&[r(65535, 65535), r(1, 65535)]), vec![r(1, 65535)]);
    }

    #[test]
    fn the_internal_network_is_reached_only_through_the_internal_interface() {
        let cfg = Config::default();
        let rules = rules_of(
            &Ruleset::build(&cfg, Role::Gateway, &facts()).nftables,
            "output",
        );
        let internal: Vec<&String> = rules
            .iter()
            .filter(|r| r.contains("10.152.128.0"))
            .collect();
        assert_eq!(internal.len(), 1, "{rules:?}");
        assert!(
            internal[0].contains("oifname") && internal[0].contains("\"eth1\""),
            "{}",
            internal[0]
        );
    }

    #[test]
    fn workstation_tcp_leaves_only_through_the_uplink() {
        for transparent in [true, false] {
            let cfg = Config {
                workstation_transparent_tcp: transparent,
                ..Config::default()
            };
            let rules = rules_of(
                &Ruleset::build(&cfg, Role::Workstation, &facts()).nftables,
                "output",
            );
            let tcp: Vec<&String> = rules
                .iter()
                .filter(|r| r.contains("\"tcp\"") && r.contains("accept") && !r.contains("related"))
                .collect();
            assert_eq!(tcp.len(), 1, "{rules:?}");
            assert!(
                tcp[0].contains("oifname") && tcp[0].contains("\"eth0\""),
                "{}",
                tcp[0]
            );
        }
    }

    #[test]
    fn router_advertisements_only_from_the_external_interface() {
        for n in all_cases().into_iter().skip(1) {
            for r in rules_of(&n, "input") {
                if r.contains("nd-router-advert") {
                    assert!(r.contains("\"eth0\""), "{r}");
                }
            }
        }
    }
}
