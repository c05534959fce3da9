//! leaktest against planted leaks in the namespace topology: with anon-firewall on both sides
//! every network check passes; with the firewalls gone every way out is caught by the
//! observer on the gateway's uplink; without an observer nothing is claimed.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use anon_netns::{require_root, Netns, TempDir, Topology, GATEWAY_IP, INTERNET_IP};
use anon_wait::wait_until;

const TOR_UID: u32 = 64001;

fn bin(name: &str) -> PathBuf {
    // `cargo test --workspace` builds every package's binaries next to this one's.
    let p = PathBuf::from(env!("CARGO_BIN_EXE_leaktest"))
        .parent()
        .expect("target dir")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo test --workspace`",
        p.display()
    );
    p
}

fn firewall(ns: &Netns, config: &str) {
    let cfg = TempDir::new("lt-fw").expect("tmp");
    std::fs::write(cfg.path().join("50.toml"), config).expect("write");
    let out = ns
        .command(bin("anon-firewall"))
        .arg("--config-dir")
        .arg(cfg.path())
        .arg("--run-dir")
        .arg(cfg.path().join("run"))
        .arg("apply")
        .output()
        .expect("anon-firewall");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The resolver the workstation uses (ip netns exec mounts /etc/netns/NAME/resolv.conf).
struct Resolv(PathBuf);
impl Resolv {
    fn new(ns: &Netns, nameserver: &str) -> Resolv {
        let dir = PathBuf::from("/etc/netns").join(ns.name());
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\noptions timeout:1 attempts:1\n"),
        )
        .expect("write");
        Resolv(dir)
    }
}
impl Drop for Resolv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Observer(Child);
impl Drop for Observer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn observer(t: &Topology) -> Observer {
    let child = t
        .gateway
        .command(bin("leaktest"))
        .args([
            "observer",
            "--capture",
            "eth0",
            "--listen",
            "10.152.152.10:7777",
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("observer");
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        t.workstation
            .tcp_connect(
                SocketAddr::from((GATEWAY_IP, 7777)),
                Duration::from_millis(300),
            )
            .is_ok()
    });
    assert!(up, "observer did not come up");
    Observer(child)
}

/// Stand-ins for Tor's SocksPorts on the gateway: answer the SOCKS5 greeting.
fn socks_standins(gw: &Netns) {
    for port in [9050u16, 9100] {
        let l = gw
            .tcp_listen(SocketAddr::from(([0, 0, 0, 0], port)))
            .expect("listen");
        std::thread::spawn(move || {
            let _ = l.0.set_nonblocking(false);
            for mut s in l.0.incoming().flatten() {
                let mut b = [0u8; 3];
                if s.read_exact(&mut b).is_ok() {
                    let _ = s.write_all(&[5, 0]);
                }
            }
        });
    }
}

fn leaktest(ns: &Netns, args: &[&str]) -> (Output, serde_json::Value) {
    leaktest_at(ns, &bin("leaktest"), args)
}

/// leaktest copied into a directory of the given mode, as `/usr/sbin/leaktest` would be: on a
/// gateway it runs itself as other users, so where it lies decides whether they can.
fn installed(mode: u32) -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("lt-bin").expect("tmp");
    std::fs::copy(bin("leaktest"), dir.path().join("leaktest")).expect("copy leaktest");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).expect("chmod");
    dir
}

fn leaktest_at(ns: &Netns, exe: &std::path::Path, args: &[&str]) -> (Output, serde_json::Value) {
    let out = ns
        .command(exe)
        .args(args)
        .arg("--json")
        .output()
        .expect("leaktest");
    let j = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out, j)
}

fn verdicts(j: &serde_json::Value) -> Vec<(String, String, String)> {
    j["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap_or_default().into(),
                c["verdict"].as_str().unwrap_or_default().into(),
                c["evidence"].as_str().unwrap_or_default().into(),
            )
        })
        .collect()
}

const WS_ARGS: &[&str] = &[
    "--target",
    "198.51.100.1",
    "--target6",
    "2001:db8:1::1",
    "--gateway",
    "10.152.152.10",
    "--me",
    "10.152.152.11,fd19:c33d:88bc::11",
    "--only",
    "network",
];

#[test]
fn workstation_leaks_are_found_and_a_closed_system_passes() {
    if !require_root("workstation_leaks_are_found_and_a_closed_system_passes") {
        return;
    }
    let t = Topology::up("lt-ws").expect("topology");
    let _resolv = Resolv::new(&t.workstation, "198.51.100.1");
    let _trans = t
        .gateway
        .tcp_listen(SocketAddr::from(([0, 0, 0, 0], 9040)))
        .expect("transport stand-in");
    socks_standins(&t.gateway);
    firewall(
        &t.gateway,
        &format!("role = \"gateway\"\ntor_user = {TOR_UID}\ninternal_open_ports = [7777]\n"),
    );
    firewall(&t.workstation, "role = \"workstation\"\n");
    let _obs = observer(&t);
    let mut args = vec!["--observer", "10.152.152.10:7777"];
    args.extend_from_slice(WS_ARGS);

    // Closed: every check passes, and says why.
    let (out, j) = leaktest(&t.workstation, &args);
    let v = verdicts(&j);
    assert_eq!(out.status.code(), Some(0), "{v:#?}");
    assert!(v.len() >= 15, "{v:#?}");
    assert!(v.iter().all(|(_, verdict, _)| verdict == "PASS"), "{v:#?}");
    assert!(
        v.iter()
            .any(|(c, _, e)| c == "tcp 198.51.100.1:80" && e.contains("observer saw nothing")),
        "{v:#?}"
    );

    // Planted leak: no firewall anywhere; the gateway routes. Every way out is caught.
    t.gateway
        .exec(&["nft", "flush", "ruleset"])
        .expect("flush gw");
    t.workstation
        .exec(&["nft", "flush", "ruleset"])
        .expect("flush ws");
    let (out, j) = leaktest(&t.workstation, &args);
    let v = verdicts(&j);
    assert_eq!(out.status.code(), Some(1), "{v:#?}");
    for check in [
        "tcp 198.51.100.1:80",
        "udp 198.51.100.1:123",
        "udp 198.51.100.1:53",
        "icmp echo 198.51.100.1",
        "ip proto 47",
        "tcp [2001:db8:1::1]:443",
        "icmpv6 echo 2001:db8:1::1",
        "dns (system resolver)",
    ] {
        let (_, verdict, evidence) = v
            .iter()
            .find(|(c, _, _)| c == check)
            .unwrap_or_else(|| panic!("no check {check}: {v:#?}"));
        assert_eq!(verdict, "FAIL", "{check} must catch the leak: {evidence}");
        assert!(evidence.contains("observer saw"), "{check}: {evidence}");
    }

    // Without an observer nothing is claimed: SKIP, exit 2.
    let (out, j) = leaktest(&t.workstation, WS_ARGS);
    let v = verdicts(&j);
    assert_eq!(out.status.code(), Some(2), "{v:#?}");
    assert!(
        v.iter()
            .filter(|(c, _, _)| !c.starts_with("socks"))
            .all(|(_, verdict, e)| verdict == "SKIP" && e.contains("not proof")),
        "{v:#?}"
    );
}

#[test]
fn on_the_gateway_only_the_tor_user_gets_out() {
    if !require_root("on_the_gateway_only_the_tor_user_gets_out") {
        return;
    }
    let t = Topology::up("lt-gw").expect("topology");
    let _server = t
        .internet
        .tcp_listen(SocketAddr::from((INTERNET_IP, 443)))
        .expect("listen");
    let args = [
        "--role",
        "gateway",
        "--target",
        "198.51.100.1",
        "--tor-uid",
        "64001",
        "--only",
        "network",
    ];
    firewall(
        &t.gateway,
        &format!("role = \"gateway\"\ntor_user = {TOR_UID}\n"),
    );
    // A binary the other users cannot run (a private build directory): no probe ran, so no
    // verdict but SKIP, naming why; never "refused".
    let private = installed(0o700);
    let (out, j) = leaktest_at(&t.gateway, &private.path().join("leaktest"), &args);
    let v = verdicts(&j);
    for check in [
        "gateway: root",
        "gateway: an ordinary user",
        "gateway: tor user",
    ] {
        let (_, verdict, evidence) = v
            .iter()
            .find(|(c, _, _)| c.starts_with(check))
            .unwrap_or_else(|| panic!("{check}: {v:#?}"));
        if check == "gateway: root" {
            // root may run it; without an observer that is SKIP anyway.
            assert_eq!(verdict, "SKIP", "{v:#?}");
        } else {
            assert_eq!(verdict, "SKIP", "{check}: {v:#?}");
            assert!(evidence.contains("cannot run the probe"), "{check}: {v:#?}");
        }
    }
    assert_eq!(out.status.code(), Some(2), "{v:#?}");
    drop(private);
    let public = installed(0o755);
    let exe = public.path().join("leaktest");
    let (_, j) = leaktest_at(&t.gateway, &exe, &args);
    let v = verdicts(&j);
    let get = |name: &str| {
        v.iter()
            .find(|(c, _, _)| c.starts_with(name))
            .cloned()
            .unwrap_or_else(|| panic!("{name}: {v:#?}"))
    };
    assert_eq!(
        get("gateway: root").1,
        "SKIP",
        "no observer: refused locally is not proof: {v:#?}"
    );
    assert!(get("gateway: root").2.contains("refused"), "{v:#?}");
    assert_eq!(get("gateway: tor user").1, "PASS", "{v:#?}");
    // Planted leak: no firewall, root gets out, and leaktest says so even without an observer.
    t.gateway.exec(&["nft", "flush", "ruleset"]).expect("flush");
    let (out, j) = leaktest_at(&t.gateway, &exe, &args);
    let v = verdicts(&j);
    assert_eq!(out.status.code(), Some(1), "{v:#?}");
    assert_eq!(
        v.iter()
            .find(|(c, _, _)| c.starts_with("gateway: root"))
            .map(|x| x.1.as_str()),
        Some("FAIL"),
        "{v:#?}"
    );
}

#[test]
fn host_settings_are_judged() {
    if !require_root("host_settings_are_judged") {
        return;
    }
    let ns = Netns::new(&format!("lt-host-{}", std::process::id())).expect("netns");
    for (value, verdict) in [("1", "FAIL"), ("0", "PASS")] {
        ns.sysctl("net.ipv4.tcp_timestamps", value)
            .expect("sysctl in the namespace");
        let (_, j) = leaktest(&ns, &["--only", "host"]);
        let v = verdicts(&j);
        let ts = v
            .iter()
            .find(|(c, _, _)| c == "tcp timestamps off")
            .unwrap_or_else(|| panic!("{v:#?}"));
        assert_eq!(ts.1, verdict, "{ts:?}");
        assert!(ts.2.contains(&format!("= {value}")), "{ts:?}");
        assert!(
            v.iter().any(|(c, _, _)| c == "tirdad loaded")
                && v.iter().any(|(c, _, _)| c == "timezone UTC"),
            "{v:#?}"
        );
    }
}

#[test]
fn firewall_rules_that_disappear_fail_the_check() {
    if !require_root("firewall_rules_that_disappear_fail_the_check") {
        return;
    }
    let ns = Netns::new(&format!("lt-fw-{}", std::process::id())).expect("netns");
    let cfg = TempDir::new("lt-fwcheck").expect("tmp");
    let run = cfg.path().join("run");
    std::fs::write(
        cfg.path().join("50.toml"),
        format!("role = \"gateway\"\ntor_user = {TOR_UID}\n"),
    )
    .expect("write");
    let anon_firewall = |cmd: &[&str]| {
        ns.command(bin("anon-firewall"))
            .arg("--config-dir")
            .arg(cfg.path())
            .arg("--run-dir")
            .arg(&run)
            .args(cmd)
            .output()
            .expect("anon-firewall")
    };
    let judged = || {
        let run = run.display().to_string();
        let (_, j) = leaktest(
            &ns,
            &[
                "--only",
                "host",
                "--anon-firewall",
                bin("anon-firewall").to_str().expect("utf8"),
                "--anon-firewall-run-dir",
                &run,
            ],
        );
        verdicts(&j)
            .into_iter()
            .find(|(c, _, _)| c == "firewall rules intact")
            .unwrap_or_else(|| panic!("no firewall check: {j}"))
    };
    // Never applied: nothing to judge.
    let (_, verdict, evidence) = judged();
    assert_eq!(verdict, "SKIP", "{evidence}");
    assert!(anon_firewall(&["apply"]).status.success());
    let (_, verdict, evidence) = judged();
    assert_eq!(verdict, "PASS", "{evidence}");
    assert!(evidence.contains("loaded as applied"), "{evidence}");
    // Another tool deletes the table: a leak, named.
    ns.exec(&["nft", "delete", "table", "inet", "anon_firewall"])
        .expect("delete");
    let (_, verdict, evidence) = judged();
    assert_eq!(verdict, "FAIL", "{evidence}");
    assert!(
        evidence.contains("inet anon_firewall is missing"),
        "{evidence}"
    );
    // Repaired, then a policy opened: FAIL again.
    assert!(anon_firewall(&["check", "--repair"]).status.success());
    assert_eq!(judged().1, "PASS");
    ns.exec(&[
        "nft",
        "chain",
        "inet",
        "anon_firewall",
        "output",
        "{ policy accept; }",
    ])
    .expect("policy");
    let (_, verdict, evidence) = judged();
    assert_eq!(verdict, "FAIL", "{evidence}");
    assert!(
        evidence.contains("chain output: policy is accept"),
        "{evidence}"
    );
    // Unloaded on purpose: unfiltered, FAIL; no anon-firewall at all: SKIP.
    assert!(anon_firewall(&["unload", "--yes-unfiltered"])
        .status
        .success());
    let (_, verdict, evidence) = judged();
    assert_eq!(verdict, "FAIL", "{evidence}");
    assert!(evidence.contains("unloaded"), "{evidence}");
    let (_, j) = leaktest(
        &ns,
        &[
            "--only",
            "host",
            "--anon-firewall",
            "/nonexistent/anon-firewall",
        ],
    );
    let v = verdicts(&j);
    let fw = v
        .iter()
        .find(|(c, _, _)| c == "firewall rules intact")
        .unwrap_or_else(|| panic!("{v:#?}"));
    assert_eq!(fw.1, "SKIP", "{fw:?}");
    assert!(fw.2.contains("not installed"), "{fw:?}");
}
