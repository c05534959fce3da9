//! Where the Whonix gateway is, as upstream's helper (settings_echo) finds it: sdwdate asks
//! its SocksPort and control port, timesync-check `--tor` its control port, so the rule is
//! written once.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// The Whonix-Workstation marker (package anon-ws-base-files).
pub const WORKSTATION_MARKER: &str = "/usr/share/anon-ws-base-files/workstation";
/// The Whonix-Gateway marker (package anon-gw-base-files).
pub const GATEWAY_MARKER: &str = "/usr/share/anon-gw-base-files/gateway";
/// The gateway's internal address on a non-Qubes Whonix.
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 152, 152, 10);

pub fn workstation() -> bool {
    Path::new(WORKSTATION_MARKER).exists()
}

/// How the gateway's address was found: the address, and a warning when the fallback was
/// taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub ip: IpAddr,
    pub warning: Option<String>,
}

/// On Qubes (`qubesdb-read` present, in a TemplateVM or on a workstation) `qubesdb-read
/// /qubes-gateway`, falling back to 127.0.0.1 as upstream does (nothing listens there on a
/// workstation, so that fails closed); else 10.152.152.10 on a workstation, 127.0.0.1 on a
/// gateway or a plain Debian.
pub fn gateway_ip() -> Gateway {
    let templatevm = Path::new("/run/qubes/this-is-templatevm").exists();
    let qubesdb = ["/usr/bin/qubesdb-read", "/usr/sbin/qubesdb-read"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    from_facts(qubesdb.map(|q| (q, templatevm)), workstation(), |q| {
        std::process::Command::new(q)
            .arg("/qubes-gateway")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    })
}

/// The rule, with the host's facts and qubesdb injected.
fn from_facts(
    qubesdb: Option<(&str, bool)>,
    workstation: bool,
    read: impl FnOnce(&str) -> Option<String>,
) -> Gateway {
    match qubesdb {
        Some((q, templatevm)) if templatevm || workstation => {
            match read(q).and_then(|s| s.trim().parse().ok()) {
                Some(ip) => Gateway { ip, warning: None },
                None => Gateway {
                    ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    warning: Some(
                        "qubesdb-read /qubes-gateway gave no address; using 127.0.0.1".into(),
                    ),
                },
            }
        }
        _ if workstation => Gateway {
            ip: IpAddr::V4(GATEWAY_IP),
            warning: None,
        },
        _ => Gateway {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            warning: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qubes_asks_qubesdb_whonix_uses_its_address_else_localhost() {
        let q = Some(("/usr/bin/qubesdb-read", false));
        let never = |_: &str| -> Option<String> { panic!("qubesdb asked") };
        let qubes_ws = from_facts(q, true, |_| Some("10.137.0.5\n".into()));
        assert_eq!(qubes_ws.ip, IpAddr::from([10, 137, 0, 5]));
        assert!(qubes_ws.warning.is_none());
        let broken = from_facts(q, true, |_| Some("garbage".into()));
        assert_eq!(broken.ip, IpAddr::from([127, 0, 0, 1]));
        assert!(broken.warning.is_some());
        assert_eq!(
            from_facts(Some(("/usr/bin/qubesdb-read", true)), false, |_| Some(
                "10.137.0.9".into()
            ))
            .ip,
            IpAddr::from([10, 137, 0, 9])
        );
        // A Qubes gateway (sys-whonix) or a plain qube: not a workstation, not a template.
        assert_eq!(from_facts(q, false, never).ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(from_facts(None, true, never).ip, IpAddr::V4(GATEWAY_IP));
        assert_eq!(
            from_facts(None, false, never).ip,
            IpAddr::from([127, 0, 0, 1])
        );
    }
}
