//! anon-firewall loaded with real nft into the namespace topology of DESIGN.md and probed
//! with real sockets. Needs root; skipped loudly outside CI when not root, a failure in CI.
//! Nothing here touches the host's own namespace.

mod common;
use common::*;

#[test]
fn golden_files_load_into_the_kernel() {
    if !require_root("golden_files_load_into_the_kernel") {
        return;
    }
    let ns = Netns::new(&format!("afw-golden-{}", std::process::id())).expect("netns");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("golden dir") {
        let path = entry.expect("entry").path();
        let p = path.to_str().expect("utf8 path");
        ns.exec(&["nft", "-j", "-f", p])
            .unwrap_or_else(|e| panic!("{p}: {e}"));
        let rules = ruleset(&ns);
        assert!(rules.contains("table inet anon_firewall"), "{p}");
        assert_eq!(
            rules.matches("table ").count(),
            1,
            "{p}: old table must be replaced\n{rules}"
        );
        n += 1;
    }
    assert!(n >= 10, "only {n} golden files");
}

#[test]
fn gateway_transparently_proxies_the_workstation_and_nothing_else_leaves() {
    if !require_root("gateway_transparently_proxies_the_workstation_and_nothing_else_leaves") {
        return;
    }
    let t = Topology::up("afw-gw").expect("topology");
    let server = listen(&t.internet, INTERNET_IP, 80);
    let server6 = listen(&t.internet, INTERNET_IP6, 80);
    let udp_server = bind(&t.internet, INTERNET_IP, 9999);
    let udp_server6 = bind(&t.internet, INTERNET_IP6, 9999);
    let dns_server = bind(&t.internet, INTERNET_IP, 53);
    let icmp = t.internet.icmp_observer(false).expect("icmp observer");
    let icmp6 = t.internet.icmp_observer(true).expect("icmp6 observer");

    // Without a firewall every probe gets through: the probes can see a leak.
    assert_udp(
        &t.workstation,
        sa(INTERNET_IP, 9999),
        &udp_server,
        true,
        "baseline UDP must reach the internet",
    );
    t.workstation.ping(INTERNET_IP.into(), 1).expect("ping");
    assert_eq!(
        icmp.echo_requests(SHORT),
        1,
        "baseline ICMP must reach the internet"
    );
    assert_connects(&t.workstation, sa(INTERNET_IP, 80), &server, "baseline TCP");

    // The gateway's stand-ins for Tor's TransPort and DnsPort.
    let trans = listen(&t.gateway, ANY, 9040);
    let dns = bind(&t.gateway, ANY, 5300);
    let fw = Fw::new(&gateway_config());
    fw.apply(&t.gateway);

    // TCP from the workstation to the internet ends at the TransPort, with the original
    // destination intact, and never at the server.
    let got = assert_connects(
        &t.workstation,
        sa(INTERNET_IP, 80),
        &trans,
        "workstation TCP must be redirected to the TransPort",
    );
    assert_eq!(got.peer.ip(), IpAddr::from(WORKSTATION_IP));
    assert_eq!(
        got.original_dst,
        Some("198.51.100.1:80".parse().expect("addr"))
    );
    assert!(
        server.accept_all(SHORT).is_empty(),
        "TCP reached the internet server"
    );

    // DNS ends at the DnsPort, whatever resolver was asked.
    for resolver in [INTERNET_IP, GATEWAY_IP] {
        t.workstation
            .udp_send(sa(resolver, 53), b"dns?")
            .expect("send dns");
    }
    let q = udp_received(&dns, SHORT);
    assert_eq!(q.len(), 2, "DNS must land on port 5300: {q:?}");
    assert!(q
        .iter()
        .all(|(from, _)| from.ip() == IpAddr::from(WORKSTATION_IP)));
    assert!(
        udp_received(&dns_server, SHORT).is_empty(),
        "DNS reached the internet"
    );

    // UDP (not DNS), ICMP and IPv6 reach nothing.
    let _ = t.workstation.udp_send(sa(INTERNET_IP, 9999), b"leak?");
    let _ = t.workstation.udp_send(sa(INTERNET_IP, 123), b"ntp?");
    let _ = t.workstation.udp_send(sa(INTERNET_IP6, 9999), b"leak6?");
    t.workstation.ping(INTERNET_IP.into(), 2).expect("ping");
    t.workstation.ping(INTERNET_IP6.into(), 2).expect("ping6");
    let tcp6 = t.workstation.tcp_connect(sa(INTERNET_IP6, 80), SHORT);
    assert!(tcp6.is_err(), "IPv6 TCP from the workstation must fail");
    assert!(udp_received(&udp_server, SHORT).is_empty(), "UDP leaked");
    assert!(
        udp_received(&udp_server6, SHORT).is_empty(),
        "UDP over IPv6 leaked"
    );
    assert_eq!(icmp.echo_requests(SHORT), 0, "ICMP leaked");
    assert_eq!(icmp6.echo_requests(SHORT), 0, "ICMPv6 leaked");
    assert!(server6.accept_all(SHORT).is_empty(), "IPv6 TCP leaked");
}

#[test]
fn on_the_gateway_only_the_tor_user_reaches_the_internet() {
    if !require_root("on_the_gateway_only_the_tor_user_reaches_the_internet") {
        return;
    }
    let t = Topology::up("afw-out").expect("topology");
    let server = listen(&t.internet, INTERNET_IP, 443);
    let web = sa(INTERNET_IP, 443);
    let fw = Fw::new(&gateway_config());
    // Before the firewall, an ordinary user gets out (the probe works).
    assert_connects_as(&t.gateway, USER_UID, web, &server, "baseline");
    fw.apply(&t.gateway);

    assert_connects_as(
        &t.gateway,
        TOR_UID,
        web,
        &server,
        "the Tor user must get through",
    );

    assert!(!connects_as(&t.gateway, USER_UID, web, PATIENT));
    let root = t.gateway.tcp_connect(web, PATIENT);
    assert!(root.is_err(), "root must be rejected");
    assert_eq!(
        root.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused),
        "reject, not timeout"
    );
    assert!(
        server.accept_all(SHORT).is_empty(),
        "root or a user reached the internet"
    );

    // no_nat_users get out like the Tor user.
    let fw2 = Fw::new(&format!(
        "{}no_nat_users = [{USER_UID}]\n",
        gateway_config()
    ));
    fw2.apply(&t.gateway);
    assert_connects_as(&t.gateway, USER_UID, web, &server, "a no_nat_users user");
}

#[test]
fn connections_from_the_internet_to_the_gateway_are_dropped() {
    if !require_root("connections_from_the_internet_to_the_gateway_are_dropped") {
        return;
    }
    let t = Topology::up("afw-in").expect("topology");
    let socks = listen(&t.gateway, ANY, 9050);
    let ssh = listen(&t.gateway, ANY, 22);
    Fw::new(&gateway_config()).apply(&t.gateway);
    for port in [9050, 22] {
        let started = Instant::now();
        let r = t
            .internet
            .tcp_connect(sa(GATEWAY_EXT_IP, port), Duration::from_secs(1));
        assert!(r.is_err(), "internet reached gateway port {port}");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "dropped silently, not rejected"
        );
    }
    assert!(socks.accept_all(SHORT).is_empty() && ssh.accept_all(SHORT).is_empty());
    // The workstation does reach the SocksPort on the gateway, untouched by the redirect.
    let got = assert_connects(
        &t.workstation,
        sa(GATEWAY_IP, 9050),
        &socks,
        "the workstation to the SocksPort",
    );
    assert_eq!(
        got.original_dst,
        Some("10.152.152.10:9050".parse().expect("addr"))
    );
}

#[test]
fn workstation_rules_allow_only_the_gateway() {
    if !require_root("workstation_rules_allow_only_the_gateway") {
        return;
    }
    let t = Topology::up("afw-ws").expect("topology");
    let gw_udp = bind(&t.gateway, ANY, 9999);
    let gw_dns = bind(&t.gateway, ANY, 53);
    let gw_socks = listen(&t.gateway, ANY, 9050);
    let ws_ssh = listen(&t.workstation, ANY, 22);
    let icmp = t.gateway.icmp_observer(false).expect("icmp");
    Fw::new("role = \"workstation\"\n").apply(&t.workstation);

    assert_udp(
        &t.workstation,
        sa(GATEWAY_IP, 9999),
        &gw_udp,
        false,
        "non-DNS UDP left the workstation",
    );
    assert_udp(
        &t.workstation,
        sa(GATEWAY_IP, 53),
        &gw_dns,
        true,
        "DNS to the gateway must pass",
    );
    t.workstation.ping(GATEWAY_IP.into(), 1).expect("ping");
    assert_eq!(icmp.echo_requests(SHORT), 0, "ICMP left the workstation");
    assert_connects(
        &t.workstation,
        sa(GATEWAY_IP, 9050),
        &gw_socks,
        "the workstation to the SocksPort",
    );
    // Incoming TCP is refused with a reset, quickly.
    let r = t.gateway.tcp_connect(sa(WORKSTATION_IP, 22), PATIENT);
    assert_eq!(
        r.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    assert!(ws_ssh.accept_all(SHORT).is_empty());
}

#[test]
fn a_bad_config_leaves_the_host_in_lockdown() {
    if !require_root("a_bad_config_leaves_the_host_in_lockdown") {
        return;
    }
    let t = Topology::up("afw-bad").expect("topology");
    let server = listen(&t.internet, INTERNET_IP, 443);
    let trans = listen(&t.gateway, ANY, 9040);
    let web = sa(INTERNET_IP, 443);
    Fw::new(&gateway_config()).apply(&t.gateway);
    assert_connects_as(&t.gateway, TOR_UID, web, &server, "the Tor user before");

    for (text, expect) in [
        (
            format!("{}\nallow_incomming_ssh = true\n", gateway_config()),
            "50_test.toml:4: key `allow_incomming_ssh`",
        ),
        (
            format!("{}socks_ports = [\"9200-9100\"]\n", gateway_config()),
            "50_test.toml:3: key `socks_ports`",
        ),
        ("tor_user = 1\n".to_owned(), "unknown role"),
        (
            "role = \"gateway\"\ntor_user = \"no-such-user-anon\"\n".to_owned(),
            "50_test.toml:2: key `tor_user`",
        ),
    ] {
        let fw = Fw::new(&text);
        fw.assert_refuses(&t.gateway, &["apply"], expect, &text);
        let status = fw.failed_status();
        assert!(status.contains(expect), "{status}");
        assert_lockdown(&t.gateway);
        assert_blocked_as(&t.gateway, &[TOR_UID], web, &text);
        assert_blocked(&t.workstation, web, &text);
        assert!(server.accept_all(SHORT).is_empty() && trans.accept_all(Duration::ZERO).is_empty());
        // `status` tells the administrator.
        let st = fw.cmd(&t.gateway, &["status"]);
        assert_eq!(
            st.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&st.stdout)
        );
        // check-config says the same, without touching the rules.
        fw.assert_refuses(&t.gateway, &["check-config"], expect, &text);
        // A good config afterwards recovers and clears failed.status.
        let good = Fw {
            cfg: Fw::new(&gateway_config()).cfg,
            ..fw
        };
        good.apply(&t.gateway);
        assert_eq!(good.cmd(&t.gateway, &["status"]).status.code(), Some(0));
    }
}

#[test]
fn missing_nft_takes_every_link_down() {
    if !require_root("missing_nft_takes_every_link_down") {
        return;
    }
    let t = Topology::up("afw-nonft").expect("topology");
    let server = listen(&t.internet, INTERNET_IP, 443);
    let fw = Fw::new(&gateway_config());
    fw.assert_refuses(
        &t.gateway,
        &["--nft", "/nonexistent/nft", "apply"],
        "/nonexistent/nft",
        "no nft",
    );
    assert!(fw.run.path().join("failed.status").exists());
    let links = t.gateway.ip(&["-o", "link", "show"]).expect("links");
    let links = String::from_utf8_lossy(&links.stdout);
    for dev in ["eth0@", "eth1@"] {
        let line = links
            .lines()
            .find(|l| l.contains(dev))
            .expect("link listed");
        assert!(
            !line.contains(",UP") && !line.contains("<UP"),
            "{dev} still up: {line}"
        );
    }
    assert_blocked_as(&t.gateway, &[TOR_UID], sa(INTERNET_IP, 443), "no nft");
    assert_blocked(&t.workstation, sa(INTERNET_IP, 443), "no nft");
    assert!(server.accept_all(SHORT).is_empty());
}

#[test]
fn applying_twice_is_idempotent() {
    if !require_root("applying_twice_is_idempotent") {
        return;
    }
    let ns = Netns::new(&format!("afw-idem-{}", std::process::id())).expect("netns");
    let fw = Fw::new(&gateway_config());
    fw.apply(&ns);
    let first = ruleset(&ns);
    fw.apply(&ns);
    assert_eq!(first, ruleset(&ns));
    assert_eq!(first.matches("table ").count(), 1);
}

#[test]
fn timesync_fail_closed_opens_only_sdwdate_until_first_success() {
    if !require_root("timesync_fail_closed_opens_only_sdwdate_until_first_success") {
        return;
    }
    let t = Topology::up("afw-ts").expect("topology");
    let sdwdate_port = listen(&t.gateway, ANY, 9108);
    let socks = listen(&t.gateway, ANY, 9050);
    let trans = listen(&t.gateway, ANY, 9040);
    let fw = Fw::new(&format!(
        "{}mode = \"timesync-fail-closed\"\n",
        gateway_config()
    ));
    fw.apply(&t.gateway);
    assert!(fw.state().contains("timesync-fail-closed"));
    assert_connects(
        &t.workstation,
        sa(GATEWAY_IP, 9108),
        &sdwdate_port,
        "sdwdate's port",
    );
    assert_blocked(&t.workstation, sa(GATEWAY_IP, 9050), "the SocksPort");
    assert_blocked(&t.workstation, sa(INTERNET_IP, 80), "the TransPort");
    assert!(socks.accept_all(SHORT).is_empty() && trans.accept_all(Duration::ZERO).is_empty());

    // `watch` waits for sdwdate and then switches to full.
    let mut watch = fw
        .command(&t.gateway)
        .args(["watch", "--timeout", "20"])
        .spawn()
        .expect("watch");
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        watch.try_wait().expect("wait").is_none(),
        "watch must wait for first_success"
    );
    std::fs::write(fw.sdwdate.path().join("first_success"), "").expect("first_success");
    let status = watch.wait().expect("watch exits");
    assert!(status.success());
    assert!(fw.state().contains("full"));
    assert_connects(
        &t.workstation,
        sa(GATEWAY_IP, 9050),
        &socks,
        "the SocksPort after sdwdate's first success",
    );
}

/// Percentiles (p50, p90, p99, max) of `v`, in ms.
fn percentiles(v: &mut [Duration]) -> String {
    v.sort();
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={})",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        v.len()
    )
}

/// The soak: reloads cycling full -> timesync-fail-closed -> lockdown (1,000 by default,
/// `ANON_SOAK_RELOADS` to change) while probers on the workstation and the gateway keep trying
/// every way out (UDP, TCP, DNS, ICMP and ICMPv6, from root and from a user): not one packet
/// reaches the internet. Prints the time of each kind of reload (the whole `anon-firewall`
/// command, as systemd runs it) and, when `ANON_UPSTREAM_NFT` names upstream whonix-firewall's
/// generated gateway rule set (test-output/new/gateway-default.nft in its repository; not
/// shipped here), `nft -f` of it in the same namespace as the floor, with the ratio.
#[test]
fn a_thousand_reloads_across_modes_let_no_packet_out() {
    if !require_root("a_thousand_reloads_across_modes_let_no_packet_out") {
        return;
    }
    let reloads: usize = std::env::var("ANON_SOAK_RELOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let t = Topology::up("afw-reload").expect("topology");
    let _server = listen(&t.internet, INTERNET_IP, 80);
    t.install_leak_counter().expect("counter");
    // The counter sees what the probers send when nothing stops them.
    t.workstation
        .udp_send(sa(INTERNET_IP, 9999), b"baseline")
        .expect("send");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        t.leaked_packets().expect("counter") >= 1,
        "the leak counter must see an unfiltered packet"
    );

    let full = gateway_config();
    let timesync = format!("{full}mode = \"timesync-fail-closed\"\n");
    let fw = Fw::new(&full);
    fw.apply(&t.gateway);
    t.reset_leak_counter().expect("reset");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(1200);
    let mut times: [Vec<Duration>; 3] = Default::default();
    let sent = std::thread::scope(|s| {
        let prober = s.spawn(|| {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let _ = t.workstation.udp_send(sa(INTERNET_IP, 9999), b"leak?");
                let _ = t.workstation.udp_send(sa(INTERNET_IP, 53), b"dns leak?");
                let _ = t
                    .workstation
                    .tcp_connect(sa(INTERNET_IP, 80), Duration::from_millis(20));
                let _ = t.workstation.ping(INTERNET_IP.into(), 1);
                let _ = t.workstation.ping(INTERNET_IP6.into(), 1);
                let _ = t.gateway.udp_send(sa(INTERNET_IP, 9999), b"root leak?");
                let _ = t.gateway.udp_send(sa(INTERNET_IP, 53), b"root dns leak?");
                let _ = t.gateway.ping(INTERNET_IP.into(), 1);
                let _ = t
                    .gateway
                    .tcp_connect(sa(INTERNET_IP, 80), Duration::from_millis(20));
                n += 1;
            }
            n
        });
        for i in 0..reloads {
            let kind = i % 3;
            let args: &[&str] = match kind {
                0 => {
                    std::fs::write(fw.cfg.path().join("50_test.toml"), &full).expect("config");
                    &["apply"]
                }
                1 => {
                    std::fs::write(fw.cfg.path().join("50_test.toml"), &timesync).expect("config");
                    &["apply"]
                }
                _ => &["lockdown"],
            };
            let t0 = Instant::now();
            let out = fw.cmd(&t.gateway, args);
            times[kind].push(t0.elapsed());
            assert!(
                out.status.success(),
                "reload {i} ({args:?}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        prober.join().expect("prober")
    });
    assert!(sent >= 10, "the prober ran only {sent} rounds");
    assert_eq!(
        t.leaked_packets().expect("counter"),
        0,
        "packets left during {reloads} reloads and {sent} probe rounds"
    );
    assert_eq!(
        ruleset(&t.gateway)
            .matches("table inet anon_firewall")
            .count(),
        1
    );
    eprintln!("SOAK anon-firewall: {reloads} reloads, {sent} probe rounds, 0 packets out");
    let [mut full_t, mut ts_t, mut lock_t] = times;
    let p50 = |v: &[Duration]| v[v.len() / 2];
    eprintln!("BENCH apply full: {}", percentiles(&mut full_t));
    eprintln!(
        "BENCH apply timesync-fail-closed: {}",
        percentiles(&mut ts_t)
    );
    eprintln!("BENCH lockdown: {}", percentiles(&mut lock_t));
    match std::env::var_os("ANON_UPSTREAM_NFT") {
        Some(upstream) => {
            let mut floor = Vec::new();
            for _ in 0..100 {
                let t0 = Instant::now();
                let out = t
                    .gateway
                    .command("nft")
                    .arg("-f")
                    .arg(&upstream)
                    .output()
                    .expect("nft -f");
                floor.push(t0.elapsed());
                assert!(
                    out.status.success(),
                    "nft -f upstream: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let ours = p50(&full_t);
            let mut floor_sorted = floor.clone();
            let line = percentiles(&mut floor_sorted);
            eprintln!(
                "BENCH floor, nft -f of upstream whonix-firewall's gateway rule set: {line}; anon-firewall apply full / floor (p50): {:.2}",
                ours.as_secs_f64() / p50(&floor_sorted).as_secs_f64()
            );
        }
        None => eprintln!(
            "BENCH floor skipped: set ANON_UPSTREAM_NFT to upstream whonix-firewall's test-output/new/gateway-default.nft"
        ),
    }
}

#[test]
fn status_and_the_units_stop_post_lockdown() {
    if !require_root("status_and_the_units_stop_post_lockdown") {
        return;
    }
    let ns = Netns::new(&format!("afw-stop-{}", std::process::id())).expect("netns");
    let fw = Fw::new(&gateway_config());
    assert_eq!(
        fw.cmd(&ns, &["status"]).status.code(),
        Some(3),
        "nothing loaded yet"
    );
    fw.apply(&ns);
    assert_eq!(fw.cmd(&ns, &["status"]).status.code(), Some(0));
    let loaded = ruleset(&ns);

    // ExecStopPost after a normal stop keeps the rules ...
    let stop = |result: &str| {
        fw.command(&ns)
            .args(["lockdown", "--if-service-failed"])
            .env("SERVICE_RESULT", result)
            .status()
            .expect("run")
    };
    assert!(stop("success").success());
    assert_eq!(ruleset(&ns), loaded);
    // ... and after a crash (killed by a signal) locks down.
    assert!(stop("signal").success());
    assert_lockdown(&ns);
    let why = fw.failed_status();
    assert!(why.contains("signal"), "{why}");
    assert_eq!(fw.cmd(&ns, &["status"]).status.code(), Some(1));
}

/// Everything is closed: an ordinary user, root and the Tor user on the gateway, the
/// workstation, and the internet towards the gateway.
fn assert_all_closed(t: &Topology, server: &Listener, ssh: &Listener, what: &str) {
    assert_lockdown(&t.gateway);
    assert_blocked_as(
        &t.gateway,
        &[USER_UID, TOR_UID, 0],
        sa(INTERNET_IP, 443),
        &format!("{what}: from the gateway"),
    );
    assert_blocked(
        &t.workstation,
        sa(INTERNET_IP, 443),
        &format!("{what}: the workstation to the internet"),
    );
    assert_blocked(
        &t.internet,
        sa(GATEWAY_EXT_IP, 22),
        &format!("{what}: the internet to the gateway"),
    );
    assert_blocked(
        &t.workstation,
        sa(GATEWAY_IP, 22),
        &format!("{what}: the workstation to the gateway"),
    );
    assert!(
        server.accept_all(SHORT).is_empty() && ssh.accept_all(Duration::ZERO).is_empty(),
        "{what}: a connection got through"
    );
}

#[test]
fn dangerous_configs_are_refused_and_leave_lockdown() {
    if !require_root("dangerous_configs_are_refused_and_leave_lockdown") {
        return;
    }
    let t = Topology::up("afw-danger").expect("topology");
    let server = listen(&t.internet, INTERNET_IP, 443);
    let ssh = listen(&t.gateway, ANY, 22);
    let gw = gateway_config();
    // (config, extra arguments, create the gateway marker, what the error must say)
    let cases: Vec<(String, &[&str], bool, &str)> = vec![
        (
            format!("{gw}local_networks = [\"0.0.0.0/0\"]\n"),
            &[],
            false,
            "50_test.toml:3: key `local_networks`: `0.0.0.0/0` covers public internet addresses",
        ),
        (
            format!("{gw}local_networks = [\"128.0.0.0/1\"]\n"),
            &[],
            false,
            "50_test.toml:3: key `local_networks`: `128.0.0.0/1` covers public internet addresses",
        ),
        (
            format!("{gw}local_networks = [\"0.0.0.0/0\"]\nallow_public_local_networks = [\"0.0.0.0/0\"]\n"),
            &[],
            false,
            "50_test.toml:4: key `allow_public_local_networks`: `0.0.0.0/0` is wider than a /16",
        ),
        (
            format!("tor_user = {TOR_UID}\nrole = \"workstation\"\n"),
            &[],
            true,
            "50_test.toml:2: key `role`: `workstation` contradicts",
        ),
        (
            format!("tor_user = {TOR_UID}\n"),
            &["--role", "workstation"],
            true,
            "command line: --role: `workstation` contradicts",
        ),
        (
            format!("{gw}internal_interface = \"eth*\"\n"),
            &[],
            false,
            "50_test.toml:3: key `internal_interface`: `eth*` also matches external_interface `eth0`",
        ),
        (
            format!("{gw}internal_interface = \"eth0\"\n"),
            &[],
            false,
            "50_test.toml:3: key `internal_interface`: `eth0` is the same as external_interface `eth0`",
        ),
        (
            format!("{gw}vpn_firewall = true\nvpn_interface = \"eth0\"\n"),
            &[],
            false,
            "50_test.toml:4: key `vpn_interface`: `eth0` is the same as external_interface `eth0`",
        ),
        (
            format!("{gw}no_nat_users = [{USER_UID}, 0]\n"),
            &[],
            false,
            "50_test.toml:3: key `no_nat_users`: `uid 0` is root",
        ),
        (
            "role = \"gateway\"\ntor_user = \"root\"\n".to_owned(),
            &[],
            false,
            "50_test.toml:2: key `tor_user`: `root` is root",
        ),
        (
            format!("{gw}trans_port = 0\n"),
            &[],
            false,
            "50_test.toml:3: key `trans_port`: `0` is not a port (1-65535)",
        ),
        (
            format!("{gw}external_open_ports = [70000]\n"),
            &[],
            false,
            "50_test.toml:3: key `external_open_ports`: `70000` is not a port (1-65535)",
        ),
        (
            format!("{gw}external_open_ports = [\"9000-9999\"]\n"),
            &[],
            false,
            "50_test.toml:3: key `external_open_ports`: `9000-9999` overlaps Tor's ports",
        ),
    ];
    for (text, extra, marker, expect) in cases {
        // Start from a loaded, working ruleset each time: the refusal must replace it.
        let fw = Fw::new(&gw);
        fw.apply(&t.gateway);
        assert_connects_as(
            &t.gateway,
            TOR_UID,
            sa(INTERNET_IP, 443),
            &server,
            "the Tor user gets out before",
        );
        std::fs::write(fw.cfg.path().join("50_test.toml"), &text).expect("write config");
        if marker {
            std::fs::write(fw.markers.path().join("gateway"), "").expect("marker");
        }
        fw.assert_refuses(&t.gateway, &[&["apply"], extra].concat(), expect, &text);
        let status = fw.failed_status();
        assert!(status.contains(expect), "{status}");
        assert_all_closed(&t, &server, &ssh, &text);
        // check-config refuses it too.
        let check = [&["check-config"], extra].concat();
        fw.assert_refuses(&t.gateway, &check, expect, &text);
    }
}

#[test]
fn timesync_mode_on_the_gateway_refuses_local_socks_ports_but_sdwdates() {
    if !require_root("timesync_mode_on_the_gateway_refuses_local_socks_ports_but_sdwdates") {
        return;
    }
    let t = Topology::up("afw-tsgw").expect("topology");
    let listeners = local_listeners(&t.gateway, &[9050, 9108, 9150, 9200, 8080]);
    let own_ip = listen(&t.gateway, GATEWAY_IP, 9050);
    let fw = Fw::new(&format!(
        "{}mode = \"timesync-fail-closed\"\n",
        gateway_config()
    ));
    // Without rules every local port is reachable (the probe can see a refusal).
    assert_local_ports(&t.gateway, &[USER_UID], &listeners, |_| true);
    fw.apply(&t.gateway);
    let uids = [USER_UID, SDWDATE_UID, TOR_UID, 0];
    assert_local_ports(&t.gateway, &uids, &listeners, |port| {
        port == 9108 || port == 8080
    });
    // The gateway's own internal address is loopback too.
    assert_blocked_as(&t.gateway, &uids, sa(GATEWAY_IP, 9050), "own address");
    assert!(own_ip.accept_all(SHORT).is_empty());
    // After sdwdate's first success the SocksPorts open again.
    std::fs::write(fw.sdwdate.path().join("first_success"), "").expect("first_success");
    fw.apply(&t.gateway);
    assert_connects_as(
        &t.gateway,
        USER_UID,
        sa(LOCALHOST, 9050),
        &listeners[0].1,
        "a SocksPort after sdwdate's first success",
    );
}

#[test]
fn timesync_mode_on_the_workstation_lets_only_sdwdate_reach_the_gateway() {
    if !require_root("timesync_mode_on_the_workstation_lets_only_sdwdate_reach_the_gateway") {
        return;
    }
    let t = Topology::up("afw-tsws").expect("topology");
    let gw_9108 = listen(&t.gateway, GATEWAY_IP, 9108);
    let gw_9050 = listen(&t.gateway, GATEWAY_IP, 9050);
    let local_9050 = listen(&t.workstation, LOCALHOST, 9050);
    let fw = Fw::new(&format!(
        "role = \"workstation\"\nmode = \"timesync-fail-closed\"\nsdwdate_user = {SDWDATE_UID}\n"
    ));
    fw.apply(&t.workstation);
    // Blocked means refused at once (a reset the kernel sends the local socket), never a
    // silent drop that leaves sdwdate, Tor Browser or a script hanging until it times out.
    let to = |uid, addr| tcp_probe_as(&t.workstation, uid, addr, PATIENT).expect("probe");
    assert_connects_as(
        &t.workstation,
        SDWDATE_UID,
        sa(GATEWAY_IP, 9108),
        &gw_9108,
        "sdwdate must reach the gateway's 9108",
    );
    for uid in [USER_UID, 0] {
        assert_eq!(
            to(uid, sa(GATEWAY_IP, 9108)),
            Probe::Refused,
            "uid {uid} to the gateway's 9108"
        );
    }
    for uid in [SDWDATE_UID, USER_UID, 0] {
        assert_eq!(
            to(uid, sa(GATEWAY_IP, 9050)),
            Probe::Refused,
            "uid {uid} to the gateway's 9050"
        );
        assert_eq!(
            to(uid, sa(LOCALHOST, 9050)),
            Probe::Refused,
            "uid {uid} to local 9050"
        );
    }
    assert!(gw_9108.accept_all(SHORT).is_empty() && gw_9050.accept_all(Duration::ZERO).is_empty());
    assert!(local_9050.accept_all(Duration::ZERO).is_empty());

    // sdwdate's user must exist: a name that does not resolve is lockdown, like a typo.
    let bad = Fw::new("role = \"workstation\"\nmode = \"timesync-fail-closed\"\nsdwdate_user = \"no-such-sdwdate\"\n");
    bad.assert_refuses(
        &t.workstation,
        &["apply"],
        "50_test.toml:3: key `sdwdate_user`",
        "an unknown sdwdate_user",
    );
    assert_lockdown(&t.workstation);
    assert_ne!(to(SDWDATE_UID, sa(GATEWAY_IP, 9108)), Probe::Open);
}

#[test]
fn incoming_ssh_and_icmp_only_on_the_external_interface() {
    if !require_root("incoming_ssh_and_icmp_only_on_the_external_interface") {
        return;
    }
    let t = Topology::up("afw-sshicmp").expect("topology");
    let ssh = listen(&t.gateway, ANY, 22);
    let icmp = t.gateway.icmp_observer(false).expect("icmp");
    // Baseline: both sides reach ssh and get their pings seen.
    t.workstation.ping(GATEWAY_IP.into(), 1).expect("ping");
    assert_eq!(icmp.echo_requests(SHORT), 1, "baseline ICMP");
    // Without the options nobody gets in. (First: an accepted echo leaves a conntrack entry
    // that would make the probe's next echo, same id, `established`.)
    Fw::new(&gateway_config()).apply(&t.gateway);
    assert_blocked(
        &t.internet,
        sa(GATEWAY_EXT_IP, 22),
        "ssh without the option",
    );
    t.internet.ping(GATEWAY_EXT_IP.into(), 1).expect("ping");
    assert_eq!(icmp.echo_requests(SHORT), 0);
    assert!(ssh.accept_all(Duration::ZERO).is_empty());

    Fw::new(&format!(
        "{}allow_incoming_ssh = true\nallow_incoming_icmp = true\n",
        gateway_config()
    ))
    .apply(&t.gateway);

    assert_connects(
        &t.internet,
        sa(GATEWAY_EXT_IP, 22),
        &ssh,
        "ssh from the external side",
    );
    // From the workstation, port 22 is not the gateway's ssh (the connection is redirected into
    // the TransPort, where nothing listens here).
    let _ = t
        .workstation
        .tcp_connect(sa(GATEWAY_IP, 22), Duration::from_secs(1));
    assert!(ssh.accept_all(SHORT).is_empty(), "ssh from the workstation");

    t.internet.ping(GATEWAY_EXT_IP.into(), 1).expect("ping");
    assert_eq!(icmp.echo_requests(SHORT), 1, "echo from the external side");
    t.workstation.ping(GATEWAY_IP.into(), 2).expect("ping");
    assert_eq!(icmp.echo_requests(SHORT), 0, "echo from the workstation");

    // In timesync-fail-closed mode there is no redirect in the way: the workstation would
    // reach port 22 itself if the rule were not bound to the external interface.
    Fw::new(&format!(
        "{}allow_incoming_ssh = true\nallow_incoming_icmp = true\nmode = \"timesync-fail-closed\"\n",
        gateway_config()
    ))
    .apply(&t.gateway);
    assert_blocked(
        &t.workstation,
        sa(GATEWAY_IP, 22),
        "ssh from the workstation",
    );
    assert!(ssh.accept_all(SHORT).is_empty(), "ssh from the workstation");
    assert_connects(
        &t.internet,
        sa(GATEWAY_EXT_IP, 22),
        &ssh,
        "ssh from the external side",
    );
}

#[test]
fn the_stop_hook_keeps_the_first_failure_reason() {
    if !require_root("the_stop_hook_keeps_the_first_failure_reason") {
        return;
    }
    let ns = Netns::new(&format!("afw-first-{}", std::process::id())).expect("netns");
    let fw = Fw::new(&format!(
        "{}local_networks = [\"0.0.0.0/0\"]\n",
        gateway_config()
    ));
    assert_eq!(fw.cmd(&ns, &["apply"]).status.code(), Some(1));
    let out = fw
        .command(&ns)
        .args(["lockdown", "--if-service-failed"])
        .env("SERVICE_RESULT", "exit-code")
        .output()
        .expect("stop hook");
    assert!(out.status.success());
    let why = fw.failed_status();
    let mut lines = why.lines();
    assert!(
        lines
            .next()
            .is_some_and(|l| l.contains("key `local_networks`: `0.0.0.0/0`")),
        "the first reason must stay first: {why}"
    );
    assert!(
        why.contains("then: anon-firewall.service ended with result `exit-code`"),
        "{why}"
    );
    assert_lockdown(&ns);
    let st = fw.cmd(&ns, &["status"]);
    assert!(String::from_utf8_lossy(&st.stdout).contains("0.0.0.0/0"));
}

#[test]
fn watch_applies_first_and_locks_down_on_timeout() {
    if !require_root("watch_applies_first_and_locks_down_on_timeout") {
        return;
    }
    let ns = Netns::new(&format!("afw-watch-{}", std::process::id())).expect("netns");
    let fw = Fw::new(&format!(
        "{}mode = \"timesync-fail-closed\"\n",
        gateway_config()
    ));
    let mut watch = fw
        .command(&ns)
        .args(["watch", "--timeout", "3"])
        .spawn()
        .expect("watch");
    // Before any wait is over, the timesync ruleset is loaded (nothing was before).
    wait_until(PATIENT, Duration::from_millis(50), || {
        ruleset(&ns).contains("9108")
    });
    assert!(
        ruleset(&ns).contains("tcp dport 9108 ct mark set"),
        "{}",
        ruleset(&ns)
    );
    let status = watch.wait().expect("watch exits");
    assert_eq!(status.code(), Some(1), "a timeout is an error");
    assert_lockdown(&ns);
    let why = fw.failed_status();
    assert!(why.contains("timed out"), "{why}");
    // A bad config: watch fails at once, locked down.
    let bad = Fw::new(&format!(
        "{}internal_interface = \"eth0\"\n",
        gateway_config()
    ));
    let out = bad.cmd(&ns, &["watch", "--timeout", "30"]);
    assert_eq!(out.status.code(), Some(1));
    assert_lockdown(&ns);
}

#[test]
fn unload_removes_our_table_and_nothing_else() {
    if !require_root("unload_removes_our_table_and_nothing_else") {
        return;
    }
    let t = Topology::up("afw-unload").expect("topology");
    let server = listen(&t.internet, INTERNET_IP, 443);
    let web = sa(INTERNET_IP, 443);
    t.gateway
        .nft("table inet someone_else {\n chain c { type filter hook output priority 10; policy accept; }\n}\n")
        .expect("other table");
    let fw = Fw::new(&gateway_config());
    fw.apply(&t.gateway);
    assert_blocked_as(&t.gateway, &[USER_UID], web, "loaded");
    // Refused without the confirmation: a usage error, the rules stay.
    let out = fw.cmd(&t.gateway, &["unload"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes-unfiltered"));
    assert!(ruleset(&t.gateway).contains("anon_firewall"));
    assert_blocked_as(&t.gateway, &[USER_UID], web, "unload refused");
    let out = fw.cmd(&t.gateway, &["unload", "--yes-unfiltered"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT filtered"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("systemctl stop anon-firewall"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = ruleset(&t.gateway);
    assert!(!rules.contains("anon_firewall"), "{rules}");
    assert!(rules.contains("someone_else"), "{rules}");
    // Dangerous as documented: the host is now unfiltered.
    assert_connects_as(&t.gateway, USER_UID, web, &server, "unloaded");
    let st = fw.cmd(&t.gateway, &["status"]);
    assert_eq!(st.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&st.stdout).contains("state: unloaded"));
    // Twice is fine (nothing left to delete), and so is a lockdown table.
    assert!(fw.cmd(&t.gateway, &["lockdown"]).status.success());
    assert!(fw
        .cmd(&t.gateway, &["unload", "--yes-unfiltered"])
        .status
        .success());
    assert!(fw
        .cmd(&t.gateway, &["unload", "--yes-unfiltered"])
        .status
        .success());
    assert!(!ruleset(&t.gateway).contains("anon_firewall"));
}

#[test]
fn vpn_servers_are_reachable_only_by_the_vpn_user_and_ports() {
    if !require_root("vpn_servers_are_reachable_only_by_the_vpn_user_and_ports") {
        return;
    }
    const VPN_UID: u32 = 64004;
    let t = Topology::up("afw-vpn").expect("topology");
    let vpn = listen(&t.internet, INTERNET_IP, 1194);
    let web = listen(&t.internet, INTERNET_IP, 80);
    Fw::new(&format!(
        "{}vpn_firewall = true\nvpn_servers = [\"{INTERNET_IP}\"]\nvpn_user = {VPN_UID}\nvpn_server_ports = [1194]\n",
        gateway_config()
    ))
    .apply(&t.gateway);
    let to = |uid, port| connects_as(&t.gateway, uid, sa(INTERNET_IP, port), PATIENT);
    assert!(to(VPN_UID, 1194), "the VPN client must reach its server");
    assert_eq!(vpn.accept_all(SHORT).len(), 1);
    assert!(!to(VPN_UID, 80), "the VPN user on another port");
    for uid in [USER_UID, TOR_UID, 0] {
        assert!(!to(uid, 1194), "uid {uid} reached the VPN server");
    }
    assert!(vpn.accept_all(SHORT).is_empty() && web.accept_all(Duration::ZERO).is_empty());
}

#[test]
fn timesync_mode_on_the_gateway_refuses_tor_ports_that_socks_ports_leaves_out() {
    if !require_root("timesync_mode_on_the_gateway_refuses_tor_ports_that_socks_ports_leaves_out") {
        return;
    }
    // Tor's real ports come from torrc: `socks_ports = [9108]` must not reopen 9050, the
    // TransPort or the DnsPort on loopback before sdwdate's first success.
    let t = Topology::up("afw-tsports").expect("topology");
    let listeners = local_listeners(&t.gateway, &[9050, 9040, 5300, 9150, 9200, 9108, 9051]);
    let dns = bind(&t.gateway, LOCALHOST, 5300);
    // Without rules the probes get through.
    assert_udp(&t.gateway, sa(LOCALHOST, 5300), &dns, true, "baseline UDP");
    Fw::new(&format!(
        "{}mode = \"timesync-fail-closed\"\nsocks_ports = [9108]\n",
        gateway_config()
    ))
    .apply(&t.gateway);
    assert_local_ports(&t.gateway, &[USER_UID, 0], &listeners, |port| {
        port == 9108 || port == 9051
    });
    assert_udp(
        &t.gateway,
        sa(LOCALHOST, 5300),
        &dns,
        false,
        "UDP reached the DnsPort over loopback",
    );
}

#[test]
fn the_internal_network_is_reached_only_through_the_internal_interface() {
    if !require_root("the_internal_network_is_reached_only_through_the_internal_interface") {
        return;
    }
    // An address of internal_network that is routed out of the uplink (as Whonix-KVM's
    // 10.0.2.2 DNS server would be with internal_network = "10.0.0.0/8") is not the
    // workstation: no gateway user but Tor may reach it.
    let t = Topology::up("afw-intif").expect("topology");
    const OUTSIDE: [u8; 4] = [10, 152, 160, 1];
    t.internet
        .ip(&["addr", "add", "10.152.160.1/32", "dev", "up0"])
        .expect("addr");
    t.gateway
        .ip(&["route", "add", "10.152.160.1/32", "dev", "eth0"])
        .expect("route");
    let outside_tcp = listen(&t.internet, OUTSIDE, 53);
    let outside_udp = bind(&t.internet, OUTSIDE, 53);
    let ws = listen(&t.workstation, WORKSTATION_IP, 8080);
    // Without rules the outside address answers (the probe can see a leak).
    assert_connects_as(
        &t.gateway,
        USER_UID,
        sa(OUTSIDE, 53),
        &outside_tcp,
        "baseline",
    );
    assert_udp(&t.gateway, sa(OUTSIDE, 53), &outside_udp, true, "baseline");

    Fw::new(&gateway_config()).apply(&t.gateway);
    assert_blocked_as(
        &t.gateway,
        &[USER_UID, 0],
        sa(OUTSIDE, 53),
        "through the uplink",
    );
    assert!(outside_tcp.accept_all(SHORT).is_empty());
    assert_udp(
        &t.gateway,
        sa(OUTSIDE, 53),
        &outside_udp,
        false,
        "UDP reached 10.152.160.1 through the uplink",
    );
    // The workstation, through the internal interface, is still reachable by any user.
    assert_connects_as(
        &t.gateway,
        USER_UID,
        sa(WORKSTATION_IP, 8080),
        &ws,
        "the workstation through the internal interface",
    );
}

#[test]
fn workstation_tcp_leaves_only_through_its_uplink_to_the_gateway() {
    if !require_root("workstation_tcp_leaves_only_through_its_uplink_to_the_gateway") {
        return;
    }
    // A second interface on the workstation (a USB tether, a second NIC) straight to the
    // internet: TCP through it would bypass the gateway and Tor.
    let t = Topology::up("afw-wsif").expect("topology");
    t.workstation
        .ip(&[
            "link",
            "add",
            "wlan0",
            "type",
            "veth",
            "peer",
            "name",
            "up1",
            "netns",
            t.internet.name(),
        ])
        .expect("veth");
    t.workstation
        .ip(&["addr", "add", "192.168.77.2/24", "dev", "wlan0"])
        .expect("addr");
    t.internet
        .ip(&["addr", "add", "192.168.77.1/24", "dev", "up1"])
        .expect("addr");
    t.workstation
        .ip(&["link", "set", "wlan0", "up"])
        .expect("up");
    t.internet.ip(&["link", "set", "up1", "up"]).expect("up");
    let side_ip = [192, 168, 77, 1];
    let side = listen(&t.internet, side_ip, 80);
    let web = listen(&t.internet, INTERNET_IP, 80);
    assert_connects(&t.workstation, sa(side_ip, 80), &side, "baseline");

    Fw::new("role = \"workstation\"\n").apply(&t.workstation);
    assert_blocked_as(
        &t.workstation,
        &[USER_UID, 0],
        sa(side_ip, 80),
        "left the workstation through wlan0",
    );
    assert!(side.accept_all(SHORT).is_empty(), "TCP left through wlan0");
    // Through eth0 (to the gateway, which has no rules in this test) TCP still goes.
    assert_connects_as(
        &t.workstation,
        USER_UID,
        sa(INTERNET_IP, 80),
        &web,
        "through eth0",
    );
}

#[test]
fn marker_flags_are_refused_outside_tests() {
    if !require_root("marker_flags_are_refused_outside_tests") {
        return;
    }
    // On a production gateway `--gateway-marker /nonexistent apply --role workstation` would
    // hide the marker and load the workstation rules, which let every process out. Without
    // the tests' environment variable the flags are a usage error and nothing is loaded.
    let ns = Netns::new(&format!("afw-markers-{}", std::process::id())).expect("netns");
    let fw = Fw::new("");
    std::fs::write(fw.markers.path().join("gateway"), "").expect("marker");
    for args in [
        &[
            "--gateway-marker",
            "/nonexistent",
            "apply",
            "--role",
            "workstation",
        ][..],
        &[
            "--workstation-marker",
            "/nonexistent",
            "apply",
            "--role",
            "workstation",
        ][..],
        &[
            "apply",
            "--gateway-marker",
            "/nonexistent",
            "--role",
            "workstation",
        ][..],
    ] {
        let out = ns
            .command(env!("CARGO_BIN_EXE_anon-firewall"))
            .env_remove("ANON_FIREWALL_TEST_MARKERS")
            .arg("--config-dir")
            .arg(fw.cfg.path())
            .arg("--run-dir")
            .arg(fw.run.path())
            .args(args)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains("ANON_FIREWALL_TEST_MARKERS=1"), "{err}");
        assert!(
            !ruleset(&ns).contains("anon_firewall"),
            "{args:?} loaded rules"
        );
        assert!(!fw.run.path().join("state").exists());
    }
    // Another value than 1 does not count.
    let out = fw
        .command(&ns)
        .env("ANON_FIREWALL_TEST_MARKERS", "yes")
        .args(["apply", "--role", "workstation"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    // With the variable (the tests), the marker in the test's directory decides.
    fw.assert_refuses(
        &ns,
        &["apply", "--role", "workstation"],
        "contradicts",
        "the test's gateway marker",
    );
}
