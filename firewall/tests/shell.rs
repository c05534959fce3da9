//! The shell around the ruleset, with real nft in namespaces made here: check-config as apply
//! without the commit (nft's check mode), status and `check --repair` noticing rules that
//! another tool deleted, flushed or opened, status as an unprivileged user, the lock that
//! serialises changes of the rules, and the test-only paths. Needs root; skipped loudly
//! outside CI when not root, a failure in CI. Nothing here touches the host's namespace.

mod common;
use common::*;

/// The configs of issue 26 that passed validation before it and that nft may refuse in a
/// set (each list goes into one): refused now with file, line and key, by check-config and
/// apply alike.
#[test]
fn check_config_refuses_what_apply_would_with_file_line_and_key() {
    if !require_root("check_config_refuses_what_apply_would_with_file_line_and_key") {
        return;
    }
    let ns = Netns::new(&format!("afw-chk-{}", std::process::id())).expect("netns");
    let gw = gateway_config();
    for (extra, expect) in [
        (
            "external_open_ports = [80, 80]",
            "50_test.toml:3: key `external_open_ports`: `80` is listed twice",
        ),
        (
            "external_open_ports = [\"8000-8010\", 8005]",
            "50_test.toml:3: key `external_open_ports`: `8005` overlaps `8000-8010`",
        ),
        (
            "local_networks = [\"10.0.0.0/8\", \"10.1.0.0/16\"]",
            "50_test.toml:3: key `local_networks`: `10.1.0.0/16` lies within `10.0.0.0/8`",
        ),
        (
            "no_nat_users = [64002, 64002]",
            "50_test.toml:3: key `no_nat_users`: `uid 64002` is listed twice",
        ),
        (
            "vpn_firewall = true\nvpn_user = 64004\nvpn_server_ports = [1194]\nvpn_servers = [\"192.0.2.7\", \"192.0.2.7\"]",
            "50_test.toml:6: key `vpn_servers`: `192.0.2.7` is listed twice",
        ),
        (
            "internal_open_ports = [9050]",
            "50_test.toml:3: key `internal_open_ports`: `9050` is already open to the workstation",
        ),
    ] {
        let text = format!("{gw}{extra}\n");
        let fw = Fw::new(&text);
        fw.assert_refuses(&ns, &["check-config"], expect, &text);
        assert!(
            !ruleset(&ns).contains("anon_firewall"),
            "check-config loaded something"
        );
        fw.assert_refuses(&ns, &["apply"], expect, &text);
        assert_lockdown(&ns);
        ns.exec(&["nft", "delete", "table", "inet", "anon_firewall"])
            .expect("delete");
    }
}

#[test]
fn check_config_runs_nfts_check_mode_and_says_when_it_cannot() {
    if !require_root("check_config_runs_nfts_check_mode_and_says_when_it_cannot") {
        return;
    }
    let ns = Netns::new(&format!("afw-nftc-{}", std::process::id())).expect("netns");
    let fw = Fw::new(&gateway_config());
    let (code, text) = code_and_text(&fw.cmd(&ns, &["check-config"]));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("nft accepted the ruleset (check mode, nothing loaded)"),
        "{text}"
    );
    assert!(!ruleset(&ns).contains("anon_firewall"), "check mode loaded");

    // A config validation accepts but the kernel would refuse: our `input` chain already
    // exists with another hook (nft cannot change a chain's hook). apply would fail here,
    // and so does check-config, with nft's own message, loading nothing.
    ns.nft("table inet anon_firewall {\n chain input { type filter hook output priority 0; policy accept; }\n}\n")
        .expect("conflicting table");
    let before = ruleset(&ns);
    let (code, text) = code_and_text(&fw.cmd(&ns, &["check-config"]));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("nft refused the ruleset built from this configuration (check mode"),
        "{text}"
    );
    assert!(text.contains("-c -j -f -"), "names nft's command: {text}");
    assert_eq!(ruleset(&ns), before, "check-config changed the rules");

    // Without CAP_NET_ADMIN nft cannot ask the kernel: skipped, said clearly, exit 0 when
    // the rest passed; a bad config is still refused.
    ns.exec(&["nft", "delete", "table", "inet", "anon_firewall"])
        .expect("delete");
    let (_bin, exe) = world_runnable_copy();
    let out = fw
        .command_as(&ns, &exe, 65534)
        .arg("check-config")
        .output()
        .expect("run");
    let (code, text) = code_and_text(&out);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("nft's check skipped"), "{text}");
    assert!(text.contains("CAP_NET_ADMIN"), "says why: {text}");
    std::fs::write(
        fw.cfg.path().join("50_test.toml"),
        format!("{}external_open_ports = [80, 80]\n", gateway_config()),
    )
    .expect("write");
    let out = fw
        .command_as(&ns, &exe, 65534)
        .arg("check-config")
        .output()
        .expect("run");
    let (code, text) = code_and_text(&out);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("50_test.toml:3: key `external_open_ports`"),
        "{text}"
    );
}

/// One random configuration: mostly values that pass validation, with the collisions
/// (a port twice, overlapping ranges and networks, a user twice, interfaces) that it must
/// refuse mixed in.
fn random_config(rng: &mut Rng) -> String {
    const PORTS: &[&str] = &[
        "22",
        "80",
        "443",
        "4500",
        "53",
        "1",
        "65535",
        "8005",
        "\"8000-8010\"",
        "\"8011-8020\"",
        "\"1-1024\"",
        "\"30000-30010\"",
        "9040",
        "9050",
        "3128",
        "25",
        "\"6000-6003\"",
        "51820",
        "1194",
        "8443",
        "993",
        "\"40000-40100\"",
    ];
    const NETS: &[&str] = &[
        "10.0.0.0/8",
        "10.1.0.0/16",
        "192.168.1.0/24",
        "192.168.0.0/16",
        "172.16.0.0/12",
        "169.254.0.0/16",
        "10.0.2.0/24",
        "192.168.77.7/32",
    ];
    const SERVERS: &[&str] = &["192.0.2.7", "2001:db8::7", "198.51.100.9", "2001:db8:0::7"];
    let mut c = String::new();
    let gateway = rng.chance(70);
    c += if gateway {
        "role = \"gateway\"\n"
    } else {
        "role = \"workstation\"\n"
    };
    c += &format!("tor_user = {TOR_UID}\nsdwdate_user = {SDWDATE_UID}\n");
    if rng.chance(30) {
        c += "mode = \"timesync-fail-closed\"\n";
    }
    let mut list = |rng: &mut Rng, key: &str, max: usize| {
        if rng.chance(50) {
            let n = rng.below(max + 1);
            let items: Vec<&str> = (0..n).map(|_| *rng.pick(PORTS)).collect();
            c.push_str(&format!("{key} = [{}]\n", items.join(", ")));
        }
    };
    list(rng, "external_open_ports", 3);
    list(rng, "external_udp_open_ports", 2);
    list(rng, "internal_open_ports", 1);
    list(rng, "workstation_open_ports", 3);
    if rng.chance(20) {
        c += &format!(
            "socks_ports = [{}]\n",
            rng.pick(&[
                "9050, 9108",
                "\"9100-9111\"",
                "9050, \"9100-9111\", 9108",
                "9108, 7000",
                "9108, 9108"
            ])
        );
    }
    if rng.chance(15) {
        c += &format!(
            "trans_port = {}\n",
            rng.pick(&["9041", "9040", "5300", "9050"])
        );
    }
    if rng.chance(50) {
        let n = 1 + rng.below(2);
        let items: Vec<String> = (0..n).map(|_| format!("\"{}\"", rng.pick(NETS))).collect();
        c += &format!("local_networks = [{}]\n", items.join(", "));
    }
    if rng.chance(40) {
        let n = 1 + rng.below(3);
        let items: Vec<&str> = (0..n)
            .map(|_| *rng.pick(&["64002", "64004", "64005", "64006", "64007", "\"root\""]))
            .collect();
        c += &format!("no_nat_users = [{}]\n", items.join(", "));
    }
    if rng.chance(10) {
        c += "allow_root_user = true\n";
    }
    match rng.below(10) {
        0 => c += "internal_interface = \"vif*\"\n",
        1 => c += "internal_interface = \"eth0\"\n",
        2 => c += "external_interface = \"wan0\"\ninternal_interface = \"lan0\"\n",
        _ => {}
    }
    if rng.chance(20) {
        c += "internal_network = \"10.137.0.0/16\"\ngateway_ip = \"10.137.0.1\"\n";
    }
    for key in [
        "allow_incoming_ssh",
        "allow_incoming_icmp",
        "workstation_transparent_tcp",
    ] {
        if rng.chance(30) {
            c += &format!("{key} = {}\n", rng.chance(50));
        }
    }
    if gateway && rng.chance(25) {
        let n = 1 + rng.below(2);
        let servers: Vec<String> = (0..n)
            .map(|_| format!("\"{}\"", rng.pick(SERVERS)))
            .collect();
        c += &format!(
            "vpn_firewall = true\nvpn_user = 64004\nvpn_servers = [{}]\nvpn_server_ports = [{}]\n",
            servers.join(", "),
            rng.pick(&["1194", "1194, 443", "\"1194-1200\"", "1194, 1194"])
        );
    }
    c
}

/// Seeded random configurations (ANON_FW_SEED, ANON_FW_CONFIGS: 300; at most 150 s): every one
/// validation accepts loads with the real nft, and check-config (validation, then `nft -c`)
/// accepts exactly those nft loads; what it refuses it names by file and line.
#[test]
fn random_valid_configs_load_and_check_config_agrees_with_nft() {
    if !require_root("random_valid_configs_load_and_check_config_agrees_with_nft") {
        return;
    }
    let seed: u64 = std::env::var("ANON_FW_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(26);
    let count: usize = std::env::var("ANON_FW_CONFIGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let ns = Netns::new(&format!("afw-rand-{}", std::process::id())).expect("netns");
    let mut rng = Rng(seed);
    let fw = Fw::new("");
    let ruleset_file = fw.run.path().join("ruleset.json");
    let deadline = Instant::now() + Duration::from_secs(150);
    let (mut valid, mut refused, mut listed_twice, mut tried) = (0, 0, 0, 0);
    while tried < count && Instant::now() < deadline {
        tried += 1;
        let text = random_config(&mut rng);
        std::fs::write(fw.cfg.path().join("50_test.toml"), &text).expect("write");
        let what = format!("seed {seed}, config {tried}:\n{text}");
        let (check, check_text) = code_and_text(&fw.cmd(&ns, &["check-config"]));
        let dry = fw.cmd(&ns, &["dry-run"]);
        if !dry.status.success() {
            // Refused by validation: check-config refuses it too, at a line of the file
            // (or naming the command line's / marker's role, which these never use).
            refused += 1;
            listed_twice += usize::from(check_text.contains("listed twice"));
            assert_eq!(check, Some(1), "{what}{check_text}");
            assert!(check_text.contains("50_test.toml:"), "{what}{check_text}");
            continue;
        }
        std::fs::write(&ruleset_file, &dry.stdout).expect("write ruleset");
        let loaded = ns
            .command("nft")
            .args(["-j", "-f"])
            .arg(&ruleset_file)
            .output()
            .expect("nft");
        assert!(
            loaded.status.success(),
            "validation accepted a config that nft refuses: {what}{}",
            String::from_utf8_lossy(&loaded.stderr)
        );
        assert_eq!(
            check,
            Some(0),
            "check-config refused what nft loads: {what}{check_text}"
        );
        valid += 1;
    }
    eprintln!(
        "RANDOM CONFIGS seed {seed}: {tried} tried, {valid} valid and loaded, {refused} refused \
         by validation ({listed_twice} of them for an element listed twice)"
    );
    assert!(tried >= 20, "only {tried} configs in the time");
    // The generator must exercise both sides, or the test proves nothing.
    assert!(valid * 3 >= tried, "only {valid} of {tried} valid");
    assert!(refused > 0 && listed_twice > 0, "no refusal in {tried}");
}

/// Applies `fw` in the gateway of `t` and checks the baseline: the Tor user gets out, an
/// ordinary user does not.
fn protected(t: &Topology, fw: &Fw, server: &Listener, what: &str) {
    let web = sa(INTERNET_IP, 443);
    assert_connects_as(&t.gateway, TOR_UID, web, server, what);
    assert_blocked_as(&t.gateway, &[USER_UID], web, what);
    assert!(server.accept_all(SHORT).is_empty(), "{what}");
    let (code, text) = fw.status(&t.gateway);
    assert_eq!(code, Some(0), "{what}: {text}");
    assert!(text.contains("rules: as loaded"), "{what}: {text}");
}

#[test]
fn status_notices_rules_that_disappear_and_the_repair_restores_them() {
    if !require_root("status_notices_rules_that_disappear_and_the_repair_restores_them") {
        return;
    }
    let t = Topology::up("afw-tamper").expect("topology");
    let server = listen(&t.internet, INTERNET_IP, 443);
    let web = sa(INTERNET_IP, 443);
    let fw = Fw::new(&gateway_config());
    fw.apply(&t.gateway);
    protected(&t, &fw, &server, "applied");

    // (another tool's commands, what status must name, whether that opens the host)
    let cases: [(&[&str], &str, bool); 4] = [
        (
            &["delete table inet anon_firewall"],
            "table inet anon_firewall is missing",
            true,
        ),
        (
            &["flush chain inet anon_firewall output"],
            "chain output: 0 rules,",
            false,
        ),
        (
            &[
                "flush table inet anon_firewall",
                "chain inet anon_firewall input { policy accept; }",
                "chain inet anon_firewall output { policy accept; }",
            ],
            "chain output: policy is accept, drop was loaded",
            true,
        ),
        (
            &["chain inet anon_firewall input { policy accept; }"],
            "chain input: policy is accept, drop was loaded",
            false,
        ),
    ];
    for (commands, expect, opens) in cases {
        let what = commands.join("; ");
        for c in commands {
            t.gateway.nft(&format!("{c}\n")).expect("tamper");
        }
        if opens {
            // The tampering is real: an ordinary user now gets out.
            assert_connects_as(&t.gateway, USER_UID, web, &server, &what);
        }
        let (code, text) = fw.status(&t.gateway);
        assert_eq!(code, Some(5), "{what}: {text}");
        assert!(
            text.contains(expect),
            "{what}: the message names it: {text}"
        );
        let (code, text) = code_and_text(&fw.cmd(&t.gateway, &["check"]));
        assert_eq!(code, Some(5), "{what}: {text}");
        let (code, text) = code_and_text(&fw.cmd(&t.gateway, &["check", "--repair"]));
        assert_eq!(code, Some(0), "{what}: {text}");
        assert!(
            text.contains("loaded again: gateway full"),
            "{what}: {text}"
        );
        assert!(text.contains(expect), "{what}: says what it found: {text}");
        protected(&t, &fw, &server, &format!("{what}, repaired"));
        // Nothing to do the second time.
        let (code, text) = code_and_text(&fw.cmd(&t.gateway, &["check", "--repair"]));
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains("the rules are as loaded"), "{text}");
    }

    // A lockdown is loaded again as a lockdown, never lifted by the repair, and the first
    // reason stays first.
    assert!(fw.cmd(&t.gateway, &["lockdown"]).status.success());
    t.gateway
        .nft("delete table inet anon_firewall\n")
        .expect("delete");
    assert_eq!(fw.status(&t.gateway).0, Some(5));
    let (code, text) = code_and_text(&fw.cmd(&t.gateway, &["check", "--repair"]));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("loaded again: lockdown"), "{text}");
    assert_lockdown(&t.gateway);
    assert_blocked_as(&t.gateway, &[TOR_UID, USER_UID], web, "lockdown repaired");
    let why = fw.failed_status();
    assert!(
        why.starts_with("lockdown requested by the administrator\nthen: repair: table inet anon_firewall is missing"),
        "{why}"
    );
    let (code, text) = fw.status(&t.gateway);
    assert_eq!(code, Some(1), "lockdown as loaded: {text}");
    assert!(fw.cmd(&t.gateway, &["check"]).status.success());

    // A repair that cannot apply (the config broke meanwhile) locks down, exit 1.
    fw.apply(&t.gateway);
    std::fs::write(fw.cfg.path().join("50_test.toml"), "role = \"router\"\n").expect("write");
    t.gateway
        .nft("delete table inet anon_firewall\n")
        .expect("delete");
    assert_connects_as(&t.gateway, USER_UID, web, &server, "deleted");
    let (code, text) = code_and_text(&fw.cmd(&t.gateway, &["check", "--repair"]));
    assert_eq!(code, Some(1), "{text}");
    assert_lockdown(&t.gateway);
    assert!(
        fw.failed_status().contains("50_test.toml:1"),
        "{}",
        fw.failed_status()
    );
    assert_blocked_as(&t.gateway, &[TOR_UID, USER_UID], web, "repair failed");
    assert!(server.accept_all(SHORT).is_empty());

    // Unloaded on purpose: nothing to repair, and the repair does not load anything.
    assert!(fw
        .cmd(&t.gateway, &["unload", "--yes-unfiltered"])
        .status
        .success());
    assert_eq!(fw.status(&t.gateway).0, Some(3));
    let (code, text) = code_and_text(&fw.cmd(&t.gateway, &["check", "--repair"]));
    assert_eq!(code, Some(3), "{text}");
    assert!(!ruleset(&t.gateway).contains("anon_firewall"));
}

#[test]
fn status_as_an_unprivileged_user_cannot_tell() {
    if !require_root("status_as_an_unprivileged_user_cannot_tell") {
        return;
    }
    let ns = Netns::new(&format!("afw-unpriv-{}", std::process::id())).expect("netns");
    let fw = Fw::new(&gateway_config());
    let (_bin, exe) = world_runnable_copy();
    let as_nobody = |args: &[&str]| {
        code_and_text(
            &fw.command_as(&ns, &exe, 65534)
                .args(args)
                .output()
                .expect("run"),
        )
    };
    for (setup, what) in [
        ("", "never applied"),
        ("apply", "loaded"),
        ("delete", "deleted by another tool"),
    ] {
        match setup {
            "apply" => fw.apply(&ns),
            "delete" => ns.nft("delete table inet anon_firewall\n").expect("delete"),
            _ => {}
        }
        let (code, text) = as_nobody(&["status"]);
        assert_eq!(code, Some(4), "{what}: {text}");
        assert!(text.contains("loaded: unknown"), "{what}: {text}");
        assert!(text.contains("cannot tell"), "{what}: {text}");
        assert!(
            !text.contains("loaded: no"),
            "{what}: never 'not loaded': {text}"
        );
        let (code, text) = as_nobody(&["check"]);
        assert_eq!(code, Some(4), "{what}: {text}");
    }
    // root tells them apart.
    assert_eq!(fw.status(&ns).0, Some(5));
    // The repair needs the privilege and says so, changing nothing.
    let (code, text) = as_nobody(&["check", "--repair"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("CAP_NET_ADMIN"), "{text}");
}

#[test]
fn concurrent_applies_take_turns() {
    if !require_root("concurrent_applies_take_turns") {
        return;
    }
    let ns = Netns::new(&format!("afw-lock-{}", std::process::id())).expect("netns");
    let fw = Fw::new(&gateway_config());
    fw.apply(&ns);
    let expected = ruleset(&ns);
    for round in 0..5 {
        let applies: Vec<_> = (0..2)
            .map(|_| {
                fw.command(&ns)
                    .arg("apply")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("apply")
            })
            .collect();
        // A reader meanwhile never sees new rules with an old record.
        let (code, text) = fw.status(&ns);
        assert_eq!(code, Some(0), "round {round}: {text}");
        for a in applies {
            let out = a.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(ruleset(&ns), expected, "round {round}");
        assert_eq!(fw.status(&ns).0, Some(0), "round {round}");
        assert!(!fw.run.path().join("failed.status").exists());
    }

    // A held lock makes apply wait until it is released ...
    let lock_file = std::fs::File::open(fw.run.path().join("lock")).expect("lock file");
    let held = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock");
    let mut waiting = fw.command(&ns).arg("apply").spawn().expect("apply");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        waiting.try_wait().expect("try_wait").is_none(),
        "apply did not wait for the lock"
    );
    drop(held);
    let done = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        waiting.try_wait().expect("try_wait")
    });
    assert!(done.is_some_and(|s| s.success()), "{done:?}");
    assert_eq!(fw.status(&ns).0, Some(0));

    // ... but not forever: after --lock-timeout it gives up, and that is an error like any
    // other (lockdown, the reason in failed.status).
    let lock_file = std::fs::File::open(fw.run.path().join("lock")).expect("lock file");
    let held = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock");
    let started = Instant::now();
    let (code, text) = code_and_text(&fw.cmd(&ns, &["--lock-timeout", "1", "apply"]));
    assert_eq!(code, Some(1), "{text}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(text.contains("--lock-timeout"), "{text}");
    assert_lockdown(&ns);
    assert!(
        fw.failed_status().contains("lock"),
        "{}",
        fw.failed_status()
    );
    drop(held);
    fw.apply(&ns);
}

#[test]
fn test_paths_are_refused_outside_tests() {
    if !require_root("test_paths_are_refused_outside_tests") {
        return;
    }
    // `--nft /bin/true apply` would record rules as loaded that never were; an sdwdate
    // directory with a first_success would open the full ruleset before the clock is set.
    let ns = Netns::new(&format!("afw-paths-{}", std::process::id())).expect("netns");
    let fw = Fw::new(&format!(
        "{}mode = \"timesync-fail-closed\"\n",
        gateway_config()
    ));
    std::fs::write(fw.sdwdate.path().join("first_success"), "").expect("first_success");
    for (args, flag) in [
        (
            vec![
                "--nft".to_owned(),
                "/bin/true".to_owned(),
                "apply".to_owned(),
            ],
            "--nft",
        ),
        (
            vec![
                "apply".to_owned(),
                "--sdwdate-run-dir".to_owned(),
                fw.sdwdate.path().display().to_string(),
            ],
            "--sdwdate-run-dir",
        ),
    ] {
        let out = ns
            .command(env!("CARGO_BIN_EXE_anon-firewall"))
            .env_remove("ANON_FIREWALL_TEST_MARKERS")
            .arg("--config-dir")
            .arg(fw.cfg.path())
            .arg("--run-dir")
            .arg(fw.run.path())
            .args(&args)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(
            err.contains(flag) && err.contains("ANON_FIREWALL_TEST_MARKERS=1"),
            "{err}"
        );
        assert!(
            !ruleset(&ns).contains("anon_firewall"),
            "{args:?} loaded rules"
        );
        assert!(!fw.run.path().join("state").exists());
    }
    // The tests' variable allows them: sdwdate's directory then decides the mode.
    fw.apply(&ns);
    assert_eq!(fw.state().trim(), "gateway full");
    // Every exit code is documented, --help and the man page alike.
    anon_cli::testing::assert_exit_codes(
        Path::new(env!("CARGO_BIN_EXE_anon-firewall")),
        &[&["--nft", "/bin/true", "status"], &["check", "--bogus"]],
        &[0, 1, 3, 4, 5],
    );
}

#[test]
fn the_lockdown_unit_names_the_unit_that_failed() {
    if !require_root("the_lockdown_unit_names_the_unit_that_failed") {
        return;
    }
    // anon-firewall-lockdown.service is the OnFailure= unit of anon-firewall.service and of
    // anon-firewall-check.service: systemd tells it which one through MONITOR_UNIT.
    let ns = Netns::new(&format!("afw-onfail-{}", std::process::id())).expect("netns");
    let fw = Fw::new(&gateway_config());
    fw.apply(&ns);
    let out = fw
        .command(&ns)
        .args(["lockdown", "--if-service-failed"])
        .env("MONITOR_SERVICE_RESULT", "exit-code")
        .env("MONITOR_UNIT", "anon-firewall-check.service")
        .output()
        .expect("lockdown");
    assert!(out.status.success());
    assert_lockdown(&ns);
    assert_eq!(
        fw.failed_status(),
        "anon-firewall-check.service ended with result `exit-code`\n"
    );
    assert_eq!(fw.status(&ns).0, Some(1));
}
