//! The host's facts must agree with the role (issue 26, part 3): a "workstation" that is
//! really a gateway, and a gateway with its interface names swapped, are refused and locked
//! down with the reason; and a workstation whose route changes after `apply` (plugged into
//! another network, a rogue next hop) sends nothing in the clear.

mod common;
use common::*;

#[test]
fn the_workstation_role_on_a_host_that_routes_elsewhere_is_refused() {
    if !require_root("the_workstation_role_on_a_host_that_routes_elsewhere_is_refused") {
        return;
    }
    let t = Topology::up("afw-hn-ws").expect("topology");
    // The gateway namespace, with an uplink default route, told it is a workstation.
    t.gateway
        .ip(&["route", "add", "default", "via", "198.51.100.1"])
        .expect("default route");
    let fw = Fw::new("role = \"workstation\"\n");
    fw.assert_refuses(
        &t.gateway,
        &["apply"],
        "default route via 198.51.100.1 on eth0, not via the gateway 10.152.152.10",
        "workstation role on a gateway",
    );
    assert_lockdown(&t.gateway);
    assert!(
        fw.failed_status().contains("not a workstation"),
        "{}",
        fw.failed_status()
    );
    fw.assert_refuses(
        &t.gateway,
        &["check-config"],
        "not via the gateway",
        "check-config says the same",
    );
    // The real workstation (default route via the gateway) applies.
    Fw::new("role = \"workstation\"\n").apply(&t.workstation);
}

#[test]
fn a_gateway_with_swapped_interface_names_is_refused() {
    if !require_root("a_gateway_with_swapped_interface_names_is_refused") {
        return;
    }
    let t = Topology::up("afw-hn-swap").expect("topology");
    let fw = Fw::new(&format!(
        "{}external_interface = \"eth1\"\ninternal_interface = \"eth0\"\n",
        gateway_config()
    ));
    fw.assert_refuses(
        &t.gateway,
        &["apply"],
        "10.152.152.10 is on eth1, which is not the internal interface eth0",
        "swapped interfaces",
    );
    assert_lockdown(&t.gateway);
    // The same names the right way round apply.
    Fw::new(&gateway_config()).apply(&t.gateway);
}

#[test]
fn a_workstation_sends_nothing_through_a_next_hop_that_is_not_the_gateway() {
    if !require_root("a_workstation_sends_nothing_through_a_next_hop_that_is_not_the_gateway") {
        return;
    }
    let t = Topology::up("afw-hn-hop").expect("topology");
    // The gateway namespace runs no firewall here: it is a plain router, and 10.152.152.99 on
    // the same link is another router (a rogue one, or the wrong network's).
    t.gateway
        .ip(&["addr", "add", "10.152.152.99/18", "dev", "eth1"])
        .expect("rogue address");
    let server = listen(&t.internet, INTERNET_IP, 80);
    let via = |hop: &str| {
        t.workstation
            .ip(&["route", "replace", "default", "via", hop])
            .expect("route");
    };
    via("10.152.152.99");
    assert_connects(
        &t.workstation,
        sa(INTERNET_IP, 80),
        &server,
        "baseline: without rules the rogue next hop carries TCP out",
    );
    via("10.152.152.10");
    Fw::new("role = \"workstation\"\n").apply(&t.workstation);
    assert_connects(
        &t.workstation,
        sa(INTERNET_IP, 80),
        &server,
        "through the gateway (which here routes instead of proxying)",
    );
    // The route changes after the rules were loaded.
    via("10.152.152.99");
    assert_blocked(
        &t.workstation,
        sa(INTERNET_IP, 80),
        "through the rogue next hop",
    );
    assert!(
        server.accept_all(SHORT).is_empty(),
        "TCP left through a next hop that is not the gateway"
    );
}
