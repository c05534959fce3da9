//! The host's network must agree with the role (issue 26, part 3).
//!
//! A `role = "workstation"` line on a machine that is really a gateway (its default route
//! goes somewhere other than `gateway_ip`) would let every user's TCP out in the clear; swapped
//! interface names on a gateway would put the workstation-facing Tor and DNS ports on the
//! uplink. So `apply` reads the addresses and default routes ([`read`], the shell) and
//! [`check`] (pure) refuses what contradicts the config; the host is then locked down with the
//! reason. Only contradicting evidence counts: at boot anon-firewall runs before the network
//! is configured, so an interface without addresses or a host without a default route is no
//! evidence either way. The rules themselves do not rely on this check: the gateway drops
//! forged sources and the workstation sends IPv4 only to the gateway as next hop (see
//! `ruleset`), so a network that changes after `apply` opens nothing.

use std::net::{IpAddr, Ipv4Addr};

use thiserror::Error;

use crate::config::{Config, IfName, Role};

/// What the host's network looks like: every address with its interface, and the IPv4
/// default routes with their interface and gateway (none for a device route).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    pub addrs: Vec<(String, IpAddr)>,
    pub default_routes: Vec<(String, Option<Ipv4Addr>)>,
}

/// A host whose network contradicts the role's configuration.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Mismatch {
    #[error(
        "{at}: this host has a default route {} on {iface}, not via the gateway {gateway_ip}: \
         it is not a workstation behind a Whonix gateway (with the workstation rules every \
         user's TCP would leave in the clear)",
        via.map_or("without a gateway".to_owned(), |v| format!("via {v}"))
    )]
    WorkstationRoute {
        at: String,
        iface: String,
        via: Option<Ipv4Addr>,
        gateway_ip: Ipv4Addr,
    },
    #[error(
        "{at}: the gateway address {gateway_ip} is on {iface}, which is not the internal \
         interface {internal}: are the interface names swapped?"
    )]
    GatewayIpElsewhere {
        at: String,
        gateway_ip: Ipv4Addr,
        iface: String,
        internal: String,
    },
    #[error(
        "{at}: the external interface {iface} has {addr}, an address of the internal network \
         {net}: are the interface names swapped?"
    )]
    InternalNetworkOnUplink {
        at: String,
        iface: String,
        addr: Ipv4Addr,
        net: String,
    },
    #[error(
        "{at}: the default route goes out of {iface}, the internal interface: are the \
         interface names swapped? (the workstation side must never be the way out)"
    )]
    DefaultRouteInternal { at: String, iface: String },
}

/// Whether interface `name` is `pattern` (an nft wildcard `vif*` included).
fn matches(pattern: &IfName, name: &str) -> bool {
    match pattern.wildcard_prefix() {
        Some(prefix) => name.starts_with(prefix),
        None => pattern.as_str() == name,
    }
}

/// Refuses a host network that contradicts `cfg` for `role`.
pub fn check(cfg: &Config, role: Role, net: &Network) -> Result<(), Mismatch> {
    match role {
        Role::Workstation => {
            if let Some((iface, via)) = net
                .default_routes
                .iter()
                .find(|(_, via)| *via != Some(cfg.gateway_ip))
            {
                return Err(Mismatch::WorkstationRoute {
                    at: cfg.at("gateway_ip"),
                    iface: iface.clone(),
                    via: *via,
                    gateway_ip: cfg.gateway_ip,
                });
            }
        }
        Role::Gateway => {
            let internal = &cfg.internal_interface;
            for (iface, addr) in &net.addrs {
                let IpAddr::V4(a) = addr else { continue };
                if *a == cfg.gateway_ip && !matches(internal, iface) {
                    return Err(Mismatch::GatewayIpElsewhere {
                        at: cfg.at_either("gateway_ip", "internal_interface"),
                        gateway_ip: cfg.gateway_ip,
                        iface: iface.clone(),
                        internal: internal.to_string(),
                    });
                }
                let n = cfg.internal_network;
                let mask = u32::MAX.checked_shl(32 - u32::from(n.prefix)).unwrap_or(0);
                if matches(&cfg.external_interface, iface)
                    && u32::from(*a) & mask == u32::from(n.addr) & mask
                {
                    return Err(Mismatch::InternalNetworkOnUplink {
                        at: cfg.at_either("external_interface", "internal_network"),
                        iface: iface.clone(),
                        addr: *a,
                        net: n.to_string(),
                    });
                }
            }
            if let Some((iface, _)) = net
                .default_routes
                .iter()
                .find(|(iface, _)| matches(internal, iface))
            {
                return Err(Mismatch::DefaultRouteInternal {
                    at: cfg.at("internal_interface"),
                    iface: iface.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Reads this host's addresses (getifaddrs) and IPv4 default routes (/proc/thread-self/net/route). A host
/// where either cannot be read yields what could be read: no evidence is not a contradiction.
pub fn read() -> Network {
    let mut net = Network::default();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(sa) = a.address else { continue };
            let ip = if let Some(v4) = sa.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            net.addrs.push((a.interface_name, ip));
        }
    }
    // thread-self: /proc/net is the process's first thread's namespace, and a caller may have
    // moved this thread into another one (setns), as the bench and render_nft do.
    let route = std::fs::read_to_string("/proc/thread-self/net/route")
        .or_else(|_| std::fs::read_to_string("/proc/net/route"));
    if let Ok(text) = route {
        net.default_routes = parse_default_routes(&text);
    }
    net
}

/// The default routes of /proc/net/route: destination and mask 0; the gateway is
/// little-endian hex, 0 for a device route.
fn parse_default_routes(text: &str) -> Vec<(String, Option<Ipv4Addr>)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, gw, mask) = (f.first()?, f.get(1)?, f.get(2)?, f.get(7)?);
            if *dest != "00000000" || *mask != "00000000" {
                return None;
            }
            let gw = u32::from_str_radix(gw, 16).ok()?;
            // The kernel prints the address's bytes as one host-order (little-endian) number.
            let via = (gw != 0).then(|| Ipv4Addr::from(gw.to_le_bytes()));
            Some(((*iface).to_owned(), via))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(addrs: &[(&str, &str)], routes: &[(&str, Option<&str>)]) -> Network {
        Network {
            addrs: addrs
                .iter()
                .map(|(i, a)| ((*i).to_owned(), a.parse().expect("addr")))
                .collect(),
            default_routes: routes
                .iter()
                .map(|(i, v)| ((*i).to_owned(), v.map(|v| v.parse().expect("via"))))
                .collect(),
        }
    }

    #[test]
    fn a_workstation_must_route_via_the_gateway_or_not_at_all() {
        let cfg = Config::default();
        let ws = Role::Workstation;
        assert_eq!(
            check(&cfg, ws, &Network::default()),
            Ok(()),
            "boot: no evidence"
        );
        let ok = net(
            &[("eth0", "10.152.152.11")],
            &[("eth0", Some("10.152.152.10"))],
        );
        assert_eq!(check(&cfg, ws, &ok), Ok(()));
        let wrong = net(&[("eth0", "192.168.1.5")], &[("eth0", Some("192.168.1.1"))]);
        let e = check(&cfg, ws, &wrong).expect_err("a gateway's uplink");
        assert!(matches!(e, Mismatch::WorkstationRoute { .. }), "{e:?}");
        assert!(e.to_string().contains("via 192.168.1.1"), "{e}");
        let device = net(&[], &[("ppp0", None)]);
        assert!(
            check(&cfg, ws, &device).is_err(),
            "a device route is not the gateway"
        );
        // A second default route elsewhere is refused too.
        let two = net(
            &[],
            &[("eth0", Some("10.152.152.10")), ("wlan0", Some("10.0.0.1"))],
        );
        assert!(check(&cfg, ws, &two).is_err());
    }

    #[test]
    fn swapped_gateway_interfaces_are_refused() {
        let cfg = Config::default(); // external eth0, internal eth1, 10.152.152.10
        let gw = Role::Gateway;
        let good = net(
            &[
                ("eth0", "198.51.100.2"),
                ("eth1", "10.152.152.10"),
                ("lo", "127.0.0.1"),
            ],
            &[("eth0", Some("198.51.100.1"))],
        );
        assert_eq!(check(&cfg, gw, &good), Ok(()));
        assert_eq!(check(&cfg, gw, &Network::default()), Ok(()), "boot");
        let swapped = net(
            &[("eth1", "198.51.100.2"), ("eth0", "10.152.152.10")],
            &[("eth1", Some("198.51.100.1"))],
        );
        let e = check(&cfg, gw, &swapped).expect_err("swapped");
        assert!(matches!(e, Mismatch::GatewayIpElsewhere { .. }), "{e:?}");
        let internal_on_uplink = net(&[("eth0", "10.152.152.99")], &[]);
        assert!(matches!(
            check(&cfg, gw, &internal_on_uplink),
            Err(Mismatch::InternalNetworkOnUplink { .. })
        ));
        let route_inside = net(&[], &[("eth1", Some("10.152.152.1"))]);
        assert!(matches!(
            check(&cfg, gw, &route_inside),
            Err(Mismatch::DefaultRouteInternal { .. })
        ));
        // Qubes: the internal interface is a wildcard.
        let mut qubes = Config::default();
        qubes
            .merge_str(
                std::path::Path::new("q.toml"),
                "internal_interface = \"vif*\"\ngateway_ip = \"10.137.0.1\"\ninternal_network = \"10.137.0.0/16\"\n",
            )
            .expect("config");
        let q = net(
            &[("vif3.0", "10.137.0.1"), ("eth0", "10.138.0.9")],
            &[("eth0", Some("10.138.0.1"))],
        );
        assert_eq!(check(&qubes, gw, &q), Ok(()));
    }

    #[test]
    fn proc_net_route_default_routes() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0198980A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t0080980A\t00000000\t0001\t0\t0\t0\t00C0FFFF\t0\t0\t0\n\
                    ppp0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(
            parse_default_routes(text),
            vec![
                ("eth0".to_owned(), Some(Ipv4Addr::new(10, 152, 152, 1))),
                ("ppp0".to_owned(), None)
            ]
        );
    }
}
