//! timesync-fail-closed does what the README says (issue 26, part 4): until sdwdate's first
//! success nothing but time fetching works on the gateway. Tor's own user still gets out
//! (Tor must run for sdwdate), the `no_nat_users` do not, and the gateway's own TransPort and
//! DnsPort of upstream's torrc (127.0.0.1:9041, 5400) are closed on loopback like the
//! SocksPorts. After the first success all of it opens again, so the probes can see both.

mod common;
use common::*;

#[test]
fn before_the_first_success_no_nat_users_and_the_gateways_own_tor_ports_are_closed() {
    if !require_root(
        "before_the_first_success_no_nat_users_and_the_gateways_own_tor_ports_are_closed",
    ) {
        return;
    }
    let t = Topology::up("afw-ts4").expect("topology");
    let server = listen(&t.internet, INTERNET_IP, 80);
    let local = local_listeners(&t.gateway, &[9041, 5400]);
    let dns = bind(&t.gateway, LOCALHOST, 5400);
    let fw = Fw::new(&format!(
        "{}mode = \"timesync-fail-closed\"\nno_nat_users = [{USER_UID}]\n",
        gateway_config()
    ));
    fw.apply(&t.gateway);

    assert_blocked_as(
        &t.gateway,
        &[USER_UID],
        sa(INTERNET_IP, 80),
        "a no_nat user before sdwdate's first success",
    );
    assert!(server.accept_all(SHORT).is_empty());
    assert_connects_as(
        &t.gateway,
        TOR_UID,
        sa(INTERNET_IP, 80),
        &server,
        "Tor before sdwdate's first success",
    );
    assert_local_ports(&t.gateway, &[USER_UID, TOR_UID, 0], &local, |_| false);
    assert_udp(
        &t.gateway,
        sa(LOCALHOST, 5400),
        &dns,
        false,
        "the gateway's own DnsPort (UDP) before the first success",
    );

    std::fs::write(fw.sdwdate.path().join("first_success"), "").expect("first_success");
    fw.apply(&t.gateway);
    assert_connects_as(
        &t.gateway,
        USER_UID,
        sa(INTERNET_IP, 80),
        &server,
        "a no_nat user after sdwdate's first success",
    );
    assert_local_ports(&t.gateway, &[USER_UID], &local, |_| true);
    assert_udp(
        &t.gateway,
        sa(LOCALHOST, 5400),
        &dns,
        true,
        "the gateway's own DnsPort (UDP) after the first success",
    );
}
