//! anon-firewall's TOML configuration (`/etc/anon-firewall.d/*.toml`), and the property that
//! matters: every configuration the validation pass accepts yields a ruleset that keeps the
//! role's safety invariants. There is no ruleset-level invariant checker in firewall/src
//! (validate.rs checks the config, not the rules), so `check` below reads the generated nft
//! JSON (serde_json::Value) and asserts, for both roles and both clock states:
//!
//! - chains: input, forward and output exist with policy drop;
//! - forward: no rule accepts or redirects (the gateway never routes);
//! - prerouting (NAT): only on the gateway, every rule matches `iifname` = internal_interface;
//! - output, every accepting rule is one of: ct state ⊆ {established, related}; `oifname lo`;
//!   ICMPv6 neighbour discovery (nd-* types only, hoplimit 255); a `skuid` match whose uids
//!   are all allowed for the role (gateway: tor, no_nat, vpn; workstation: sdwdate, only in
//!   timesync mode, only to gateway_ip on its SocksPort/control port filter), uid 0 only with
//!   allow_root_user, and on a VPN gateway only out of vpn_interface or (vpn uid, ext_if, to
//!   vpn_servers); on the gateway a `daddr` whose every address is private (RFC 1918),
//!   link-local or an opted-in public local network, the internal network only via the
//!   internal interface; on the workstation `daddr` = gateway_ip, or (full mode only) TCP out
//!   of the uplink (external_interface, which leads to the gateway). No accepting rule
//!   outside these (i.e. no accept of non-Tor-user output to public addresses);
//! - input, every accepting rule with a port is within the documented options: on the
//!   uplink (gateway ext_if) TCP ⊆ external_open_ports ∪ {22 if allow_incoming_ssh}, UDP ⊆
//!   external_udp_open_ports; from the workstation network (int_if) TCP ⊆ the Tor ports of
//!   the effective mode, UDP = dns_port in full mode; on the workstation TCP ⊆
//!   workstation_open_ports in full mode; other accepting input rules are loopback,
//!   established, or ICMP (echo-request only with allow_incoming_icmp, on ext_if).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use anon_firewall::config::{Config, Ipv4Net, Mode, PortRange, Role, UserRef};
use anon_firewall::ruleset::{Facts, Ruleset};
use anon_firewall::validate::{self, Uids};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut cfg = Config::default();
    // Errors must be Err, never a panic.
    if cfg
        .merge_str(Path::new("/etc/anon-firewall.d/50_user.toml"), text)
        .is_err()
    {
        return;
    }
    for role in [Role::Gateway, Role::Workstation] {
        if validate::config(&cfg, role).is_err() {
            continue;
        }
        // The shell resolves users to uids; any names resolve here (root only when named so).
        let uid_of = |u: &anon_firewall::config::User, dflt: u32| match &u.user {
            UserRef::Uid(n) => *n,
            UserRef::Name(n) if n == "root" => 0,
            UserRef::Name(_) => dflt,
        };
        let uids = Uids {
            tor: Some(uid_of(&cfg.tor_user, 107)),
            no_nat: cfg
                .no_nat_users
                .iter()
                .enumerate()
                .map(|(i, u)| uid_of(u, 2000 + i as u32))
                .collect(),
            sdwdate: Some(uid_of(&cfg.sdwdate_user, 108)),
            vpn: cfg.vpn_user.as_ref().map(|u| uid_of(u, 1195)),
        };
        if validate::users(&cfg, &uids).is_err() {
            continue;
        }
        for time_synced in [false, true] {
            let facts = Facts {
                tor_uid: uids.tor.unwrap_or(107),
                no_nat_uids: uids.no_nat.clone(),
                sdwdate_uid: uids.sdwdate,
                vpn_uid: uids.vpn,
                time_synced,
            };
            let rs = Ruleset::build(&cfg, role, &facts);
            let json = serde_json::to_value(&rs.nftables).expect("ruleset serializes");
            check(&json, &cfg, role, &facts, rs.mode);
        }
    }
});

fn ranges_of(v: &Value) -> Vec<(u32, u32)> {
    match v {
        Value::Number(n) => {
            let p = n.as_u64().expect("port number") as u32;
            vec![(p, p)]
        }
        Value::Object(o) if o.contains_key("set") => {
            o["set"].as_array().expect("set").iter().flat_map(ranges_of).collect()
        }
        Value::Object(o) if o.contains_key("range") => {
            let r = o["range"].as_array().expect("range");
            vec![(
                r[0].as_u64().expect("lo") as u32,
                r[1].as_u64().expect("hi") as u32,
            )]
        }
        other => panic!("unexpected port expression {other}"),
    }
}

/// Every port of `got` is in `allowed`.
fn ports_within(got: &Value, allowed: &[PortRange], rule: &Value) {
    for (a, b) in ranges_of(got) {
        for p in a..=b {
            assert!(
                allowed.iter().any(|r| r.contains(p as u16)),
                "port {p} open beyond the documented options {allowed:?}: {rule}"
            );
        }
    }
}

fn strings_of(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Object(o) if o.contains_key("set") => {
            o["set"].as_array().expect("set").iter().flat_map(strings_of).collect()
        }
        other => panic!("expected a string or set of strings, got {other}"),
    }
}

fn uids_of(v: &Value) -> Vec<u64> {
    match v {
        Value::Number(n) => vec![n.as_u64().expect("uid")],
        Value::Object(o) if o.contains_key("set") => {
            o["set"].as_array().expect("set").iter().flat_map(uids_of).collect()
        }
        other => panic!("unexpected uid expression {other}"),
    }
}

/// (address, prefix) of every element of a daddr match.
fn nets_of(v: &Value) -> Vec<(IpAddr, u8)> {
    match v {
        Value::String(s) => {
            let a: IpAddr = s.parse().expect("address");
            vec![(a, if a.is_ipv4() { 32 } else { 128 })]
        }
        Value::Object(o) if o.contains_key("set") => {
            o["set"].as_array().expect("set").iter().flat_map(nets_of).collect()
        }
        Value::Object(o) if o.contains_key("prefix") => {
            let p = &o["prefix"];
            let a: IpAddr = p["addr"].as_str().expect("addr").parse().expect("address");
            vec![(a, p["len"].as_u64().expect("len") as u8)]
        }
        other => panic!("unexpected address expression {other}"),
    }
}

fn v4_within(a: Ipv4Addr, len: u8, outer: Ipv4Addr, outer_len: u8) -> bool {
    if len < outer_len {
        return false;
    }
    let mask = if outer_len == 0 { 0 } else { u32::MAX << (32 - outer_len) };
    u32::from(a) & mask == u32::from(outer) & mask
}

fn private_or_link_local(a: Ipv4Addr, len: u8) -> bool {
    [
        (Ipv4Addr::new(10, 0, 0, 0), 8),
        (Ipv4Addr::new(172, 16, 0, 0), 12),
        (Ipv4Addr::new(192, 168, 0, 0), 16),
        (Ipv4Addr::new(169, 254, 0, 0), 16),
    ]
    .iter()
    .any(|&(o, l)| v4_within(a, len, o, l))
}

/// The matches of a rule: (left key, right, op), the left as `meta:KEY`, `ct:KEY` or
/// `PROTO.FIELD`.
fn matches(expr: &[Value]) -> Vec<(String, Value)> {
    expr.iter()
        .filter_map(|e| e.get("match"))
        .map(|m| {
            let l = &m["left"];
            let key = if let Some(k) = l.pointer("/meta/key") {
                format!("meta:{}", k.as_str().expect("meta key"))
            } else if let Some(k) = l.pointer("/ct/key") {
                format!("ct:{}", k.as_str().expect("ct key"))
            } else if let Some(p) = l.get("payload") {
                format!(
                    "{}.{}",
                    p["protocol"].as_str().expect("protocol"),
                    p["field"].as_str().expect("field")
                )
            } else {
                format!("other:{l}")
            };
            (key, m["right"].clone())
        })
        .collect()
}

fn get<'a>(m: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    m.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn check(json: &Value, cfg: &Config, role: Role, facts: &Facts, mode: Mode) {
    let objs = json["nftables"].as_array().expect("nftables array");
    let ext_if = cfg.external_interface.as_str();
    let int_if = cfg.internal_interface.as_str();
    let gw = cfg.gateway_ip.to_string();
    let full = mode == Mode::Full;
    let mut chains = Vec::new();
    for o in objs {
        if let Some(c) = o.pointer("/add/chain") {
            let name = c["name"].as_str().expect("chain name").to_owned();
            if ["input", "forward", "output"].contains(&name.as_str()) {
                assert_eq!(c["policy"], "drop", "filter chain {name} must drop: {c}");
            } else if name == "sanity" {
                assert!(c.get("hook").is_none(), "the garbage chain is a regular chain: {c}");
            } else if name == "sanitize" {
                assert_eq!(c["hook"], "prerouting", "{c}");
                assert!(c["prio"].as_i64().expect("prio") < -200, "anti-spoofing after conntrack: {c}");
            } else {
                assert!(name == "prerouting" && role == Role::Gateway, "unexpected chain {c}");
            }
            chains.push(name);
        }
    }
    for c in ["input", "forward", "output", "sanitize", "sanity"] {
        assert!(chains.iter().any(|n| n == c), "chain {c} missing");
    }
    // Garbage (invalid state, scans, fragments) is dropped before any accept could pass it:
    // input and output start with the jump to the shared chain.
    for c in ["input", "output"] {
        let first = objs
            .iter()
            .filter_map(|o| o.pointer("/add/rule"))
            .find(|r| r["chain"] == c)
            .expect("a rule");
        assert_eq!(
            first["expr"],
            serde_json::json!([{"jump": {"target": "sanity"}}]),
            "{c} does not start with the sanity chain: {first}"
        );
    }
    check_guards(objs, cfg, role);
    let allowed_out_uids: Vec<u64> = match role {
        Role::Gateway => std::iter::once(facts.tor_uid)
            .chain(facts.no_nat_uids.iter().copied())
            .chain(facts.vpn_uid)
            .map(u64::from)
            .collect(),
        Role::Workstation => facts.sdwdate_uid.into_iter().map(u64::from).collect(),
    };
    for o in objs {
        let Some(rule) = o.pointer("/add/rule") else {
            continue;
        };
        let chain = rule["chain"].as_str().expect("chain");
        let expr = rule["expr"].as_array().expect("expr");
        let accepts = expr.iter().any(|e| e.get("accept").is_some());
        let redirects = expr.iter().any(|e| e.get("redirect").is_some());
        let m = matches(expr);
        match chain {
            "forward" => assert!(!accepts && !redirects, "forward accepts: {rule}"),
            "prerouting" => {
                assert_eq!(role, Role::Gateway);
                assert!(full, "transparent proxying before the clock is set: {rule}");
                assert_eq!(
                    get(&m, "meta:iifname").and_then(Value::as_str),
                    Some(int_if),
                    "NAT rule not bound to the internal interface: {rule}"
                );
            }
            "output" if accepts => check_output(rule, &m, cfg, role, facts, full, &allowed_out_uids, ext_if, int_if, &gw),
            "input" if accepts => check_input(rule, &m, cfg, role, full, ext_if, int_if),
            "sanity" => assert!(
                !accepts && !redirects && expr.last().and_then(|e| e.get("drop")).is_some(),
                "the garbage chain only drops: {rule}"
            ),
            "sanitize" => assert!(
                !accepts && !redirects,
                "the anti-spoofing chain only drops and returns: {rule}"
            ),
            "input" | "output" => assert!(!redirects, "{rule}"),
            other => panic!("rule in unexpected chain {other}: {rule}"),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_output(
    rule: &Value,
    m: &[(String, Value)],
    cfg: &Config,
    role: Role,
    facts: &Facts,
    full: bool,
    allowed_uids: &[u64],
    ext_if: &str,
    int_if: &str,
    gw: &str,
) {
    let oif = get(m, "meta:oifname").and_then(Value::as_str);
    if let Some(st) = get(m, "ct:state") {
        for s in strings_of(st) {
            assert!(s == "established" || s == "related", "ct state {s}: {rule}");
            if s == "established" {
                assert!(get(m, "ct:mark").is_some(), "established accepted without a grant: {rule}");
            } else {
                // The kernel's answers only: ICMP errors or resets (`tcp flags & rst == rst`).
                let rst = serde_json::json!({"&": [{"payload": {"protocol": "tcp", "field": "flags"}}, "rst"]});
                let resets = rule["expr"]
                    .as_array()
                    .expect("expr")
                    .iter()
                    .filter_map(|e| e.get("match"))
                    .any(|mt| mt["left"] == rst && mt["right"] == "rst" && mt["op"] == "==");
                assert!(
                    get(m, "icmp.type").is_some() || get(m, "icmpv6.type").is_some() || resets,
                    "related accept of another kind: {rule}"
                );
            }
        }
        return;
    }
    if oif == Some("lo") && m.len() == 1 {
        return;
    }
    if let Some(t) = get(m, "icmpv6.type") {
        assert!(
            strings_of(t).iter().all(|s| s.starts_with("nd-") && s != "nd-router-advert"),
            "{rule}"
        );
        assert_eq!(get(m, "ip6.hoplimit"), Some(&Value::from(255)), "{rule}");
        let oifs = strings_of(get(m, "meta:oifname").expect("ND without an interface"));
        assert!(
            oifs.iter().all(|o| o == ext_if || (role == Role::Gateway && o == int_if)),
            "ND out of {oifs:?}: {rule}"
        );
        for (a, len) in nets_of(get(m, "ip6.daddr").expect("ND daddr")) {
            let IpAddr::V6(a) = a else { panic!("{rule}") };
            let seg = a.segments();
            assert!(
                (seg[0] & 0xffc0 == 0xfe80 && len >= 10) || (seg[0] == 0xff02 && len >= 16),
                "ND to {a}/{len}: {rule}"
            );
        }
        return;
    }
    // Every other output accept judges the direction the host opened.
    assert_eq!(
        get(m, "ct:direction").and_then(Value::as_str),
        Some("original"),
        "output accept for replies too: {rule}"
    );
    if let Some(u) = get(m, "meta:skuid") {
        for uid in uids_of(u) {
            assert!(allowed_uids.contains(&uid), "uid {uid} let out: {rule}");
            assert!(uid != 0 || cfg.allow_root_user, "root let out: {rule}");
            if role == Role::Gateway && !full {
                assert!(
                    uid == u64::from(facts.tor_uid) || Some(uid) == facts.vpn_uid.map(u64::from),
                    "uid {uid} let out before the clock is set: {rule}"
                );
            }
        }
        match role {
            Role::Gateway if cfg.vpn_firewall => {
                if oif == Some(cfg.vpn_interface.as_str()) {
                    return;
                }
                assert_eq!(oif, Some(ext_if), "{rule}");
                assert_eq!(uids_of(u), vec![u64::from(facts.vpn_uid.expect("vpn uid"))], "{rule}");
                let d = get(m, "ip.daddr").or_else(|| get(m, "ip6.daddr")).expect("daddr");
                for (a, _) in nets_of(d) {
                    assert!(cfg.vpn_servers.contains(&a), "{a} is no VPN server: {rule}");
                }
            }
            Role::Gateway => assert_eq!(m.len(), 2, "{rule}"),
            Role::Workstation => {
                assert!(!full, "sdwdate-only rule in full mode: {rule}");
                assert_eq!(get(m, "ip.daddr").and_then(Value::as_str), Some(gw), "{rule}");
                ports_within(
                    get(m, "tcp.dport").expect("dport"),
                    &[
                        PortRange::single(cfg.sdwdate_socks_port),
                        PortRange::single(cfg.control_port_filter_port),
                    ],
                    rule,
                );
            }
        }
        return;
    }
    match role {
        Role::Gateway => {
            let d = get(m, "ip.daddr").unwrap_or_else(|| panic!("gateway output accept without uid or destination: {rule}"));
            assert!(full, "LAN reachable before the clock is set: {rule}");
            assert!(oif == Some(ext_if) || oif == Some(int_if), "LAN via {oif:?}: {rule}");
            for (a, len) in nets_of(d) {
                let IpAddr::V4(a) = a else { panic!("v6 destination: {rule}") };
                let net = Ipv4Net { addr: a, prefix: len };
                let internal = cfg.internal_network;
                if a == internal.addr && len == internal.prefix {
                    assert_eq!(oif, Some(int_if), "internal network not via int_if: {rule}");
                    continue;
                }
                assert!(
                    private_or_link_local(a, len) || cfg.allow_public_local_networks.contains(&net),
                    "{a}/{len} is public and not opted in: {rule}"
                );
            }
        }
        Role::Workstation => {
            assert!(full, "workstation output before the clock is set: {rule}");
            if let Some(d) = get(m, "ip.daddr") {
                assert_eq!(d.as_str(), Some(gw), "{rule}");
            } else {
                assert!(cfg.workstation_transparent_tcp, "{rule}");
            }
            if get(m, "udp.dport").is_none() {
                assert_eq!(oif, Some(ext_if), "TCP not via the uplink: {rule}");
                assert_eq!(get(m, "meta:l4proto").and_then(Value::as_str), Some("tcp"), "{rule}");
            }
        }
    }
}

fn check_input(
    rule: &Value,
    m: &[(String, Value)],
    cfg: &Config,
    role: Role,
    full: bool,
    ext_if: &str,
    int_if: &str,
) {
    let iif = get(m, "meta:iifname").and_then(Value::as_str);
    let tcp = get(m, "tcp.dport");
    let udp = get(m, "udp.dport");
    if tcp.is_none() && udp.is_none() {
        if iif == Some("lo") && m.len() == 1 {
            return;
        }
        if let Some(st) = get(m, "ct:state") {
            for s in strings_of(st) {
                assert!(s == "established" || s == "related", "ct state {s}: {rule}");
            }
            assert!(get(m, "ct:mark").is_some(), "known connections accepted without a grant: {rule}");
            if m.iter().all(|(k, _)| k.starts_with("ct:")) {
                return;
            }
        }
        let icmp: Vec<String> = get(m, "icmp.type")
            .or_else(|| get(m, "icmpv6.type"))
            .map(strings_of)
            .unwrap_or_else(|| panic!("input accept that is neither loopback, established nor ICMP: {rule}"));
        if icmp.iter().any(|t| t == "echo-request") {
            assert!(role == Role::Gateway && cfg.allow_incoming_icmp, "echo accepted: {rule}");
            assert_eq!(iif, Some(ext_if), "{rule}");
        }
        return;
    }
    let internal_tcp: Vec<PortRange> = if full {
        let mut p = vec![
            PortRange::single(cfg.trans_port),
            PortRange::single(cfg.control_port_filter_port),
        ];
        p.extend(cfg.socks_ports.iter().copied());
        p.extend(cfg.internal_open_ports.iter().copied());
        p
    } else {
        vec![PortRange::single(cfg.sdwdate_socks_port)]
    };
    match (role, iif) {
        (Role::Gateway, Some(i)) if i == ext_if => {
            if let Some(t) = tcp {
                let mut allowed = cfg.external_open_ports.clone();
                if cfg.allow_incoming_ssh {
                    allowed.push(PortRange::single(22));
                }
                ports_within(t, &allowed, rule);
            }
            if let Some(u) = udp {
                ports_within(u, &cfg.external_udp_open_ports, rule);
            }
        }
        (Role::Gateway, Some(i)) if i == int_if => {
            if let Some(t) = tcp {
                ports_within(t, &internal_tcp, rule);
            }
            if let Some(u) = udp {
                assert!(full, "DNS open before the clock is set: {rule}");
                ports_within(u, &[PortRange::single(cfg.dns_port)], rule);
            }
        }
        (Role::Workstation, None) => {
            assert!(full && udp.is_none(), "{rule}");
            ports_within(tcp.expect("tcp"), &cfg.workstation_open_ports, rule);
        }
        _ => panic!("input accept on an unexpected interface: {rule}"),
    }
}

/// The rules that hold where answers go, before any output accept: on the gateway nothing of a
/// connection that came in on the internal interface leaves by another one, and forged
/// internal sources are dropped in the anti-spoofing chain; on the workstation every IPv4
/// packet but loopback's needs the gateway as next hop. Both roles: the strict `fib` check.
fn check_guards(objs: &[Value], cfg: &Config, role: Role) {
    let rules = |chain: &str| -> Vec<Vec<Value>> {
        objs.iter()
            .filter_map(|o| o.pointer("/add/rule"))
            .filter(|r| r["chain"] == chain)
            .map(|r| r["expr"].as_array().expect("expr").clone())
            .collect()
    };
    let output = rules("output");
    let first_accept = output
        .iter()
        .position(|e| e.iter().any(|s| s.get("accept").is_some()))
        .expect("an output accept");
    let guard = output[..first_accept].iter().any(|e| {
        let t = Value::Array(e.clone()).to_string();
        match role {
            Role::Gateway => t.contains("\"mark\"") && t.contains(cfg.internal_interface.as_str()) && t.contains("drop"),
            Role::Workstation => t.contains("nexthop") && t.contains(&cfg.gateway_ip.to_string()) && t.contains("drop"),
        }
    });
    assert!(guard, "{role}: no guard before the first output accept");
    let sanitize: Vec<String> = rules("sanitize").iter().map(|e| Value::Array(e.clone()).to_string()).collect();
    assert!(sanitize.iter().any(|t| t.contains("fib") && t.contains("drop")), "no reverse-path drop");
    if role == Role::Gateway {
        let n = cfg.internal_network;
        assert!(
            sanitize.iter().any(|t| t.contains("saddr") && t.contains(&n.addr.to_string()) && t.contains("!=")),
            "no drop of forged internal sources: {sanitize:?}"
        );
    }
}
