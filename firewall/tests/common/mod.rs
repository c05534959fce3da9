//! What the namespace test files share: probes, and `Fw`, one host's anon-firewall.
#![allow(dead_code, unused_imports)] // each test file uses its own part

pub use std::net::{IpAddr, SocketAddr, UdpSocket};
pub use std::path::Path;
pub use std::process::Output;
pub use std::time::{Duration, Instant};

pub use anon_netns::{
    require_root, tcp_connect_as, tcp_probe_as, udp_received, Accepted, Listener, Netns, Probe,
    TempDir, Topology, GATEWAY_EXT_IP, GATEWAY_IP, INTERNET_IP, INTERNET_IP6, WORKSTATION_IP,
};
pub use anon_wait::wait_until;

pub const TOR_UID: u32 = 64001;
pub const USER_UID: u32 = 64002;
pub const SDWDATE_UID: u32 = 64003;
/// How long a probe that must not get through is given.
pub const SHORT: Duration = Duration::from_millis(700);
/// How long a probe that must get through may take.
pub const PATIENT: Duration = Duration::from_secs(2);
pub const ANY: [u8; 4] = [0, 0, 0, 0];
pub const LOCALHOST: [u8; 4] = [127, 0, 0, 1];

pub fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// A TCP listener in `ns` on `ip`:`port`.
pub fn listen(ns: &Netns, ip: impl Into<IpAddr>, port: u16) -> Listener {
    ns.tcp_listen(sa(ip, port)).expect("listen")
}

/// A UDP socket in `ns` on `ip`:`port`.
pub fn bind(ns: &Netns, ip: impl Into<IpAddr>, port: u16) -> UdpSocket {
    ns.udp_bind(sa(ip, port)).expect("bind")
}

/// A listener on 127.0.0.1 in `ns` for each of `ports`.
pub fn local_listeners(ns: &Netns, ports: &[u16]) -> Vec<(u16, Listener)> {
    ports
        .iter()
        .map(|&port| (port, listen(ns, LOCALHOST, port)))
        .collect()
}

/// Whether `uid` in `ns` gets a TCP connection to `to` within `timeout`.
pub fn connects_as(ns: &Netns, uid: u32, to: SocketAddr, timeout: Duration) -> bool {
    tcp_connect_as(ns, uid, to, timeout).expect("probe")
}

/// `uid` in `ns` connects to `to`, and `listener` takes exactly that one connection.
pub fn assert_connects_as(ns: &Netns, uid: u32, to: SocketAddr, listener: &Listener, what: &str) {
    assert!(
        connects_as(ns, uid, to, PATIENT),
        "{what}: uid {uid} could not connect to {to}"
    );
    assert_eq!(
        listener.accept_all(SHORT).len(),
        1,
        "{what}: connections of uid {uid} to {to} at the listener"
    );
}

/// No one of `uids` in `ns` gets a TCP connection to `to` (the caller asks the listener).
pub fn assert_blocked_as(ns: &Netns, uids: &[u32], to: SocketAddr, what: &str) {
    for &uid in uids {
        assert!(
            !connects_as(ns, uid, to, SHORT),
            "{what}: uid {uid} got through to {to}"
        );
    }
}

/// The test itself (root) connects from `ns` to `to`, and `listener` takes exactly that one
/// connection, which is returned (to see where it was meant to go).
pub fn assert_connects(ns: &Netns, to: SocketAddr, listener: &Listener, what: &str) -> Accepted {
    let c = ns.tcp_connect(to, PATIENT);
    assert!(c.is_ok(), "{what}: connecting to {to}: {c:?}");
    let mut got = listener.accept_all(SHORT);
    assert_eq!(got.len(), 1, "{what}: connections to {to} at the listener");
    got.remove(0)
}

/// The test itself (root) gets no TCP connection from `ns` to `to`.
pub fn assert_blocked(ns: &Netns, to: SocketAddr, what: &str) {
    assert!(
        ns.tcp_connect(to, SHORT).is_err(),
        "{what}: got through to {to}"
    );
}

/// `from` sends a datagram to `to`: `sock` receives it exactly when `arrives` (a send that
/// is refused locally counts as not arriving).
pub fn assert_udp(from: &Netns, to: SocketAddr, sock: &UdpSocket, arrives: bool, what: &str) {
    let sent = from.udp_send(to, b"probe");
    if arrives {
        sent.expect("send");
    }
    assert_eq!(
        udp_received(sock, SHORT).len(),
        usize::from(arrives),
        "{what}"
    );
}

/// As each of `uids` in `ns`, a TCP connection to 127.0.0.1 on each listener's port gets
/// through exactly when `open(port)` (and is refused otherwise), and the listener takes
/// exactly the ones that did.
pub fn assert_local_ports(
    ns: &Netns,
    uids: &[u32],
    listeners: &[(u16, Listener)],
    open: impl Fn(u16) -> bool,
) {
    for &uid in uids {
        for (port, l) in listeners {
            let open = open(*port);
            // Closed means refused at once, never a drop the client waits out.
            let want = if open { Probe::Open } else { Probe::Refused };
            let got = tcp_probe_as(ns, uid, sa(LOCALHOST, *port), PATIENT).expect("probe");
            assert_eq!(got, want, "uid {uid} to 127.0.0.1:{port}");
            assert_eq!(
                l.accept_all(SHORT).len(),
                usize::from(open),
                "uid {uid} port {port}"
            );
        }
    }
}

/// Config + state dirs of one host, and a way to run anon-firewall in its namespace.
pub struct Fw {
    pub cfg: TempDir,
    pub run: TempDir,
    pub sdwdate: TempDir,
    /// Stands in for /usr/share/anon-{gw,ws}-base-files: `gateway` and `workstation` in here.
    pub markers: TempDir,
}

impl Fw {
    pub fn new(config: &str) -> Fw {
        let fw = Fw {
            cfg: TempDir::new("afw-cfg").expect("tmp"),
            run: TempDir::new("afw-run").expect("tmp"),
            sdwdate: TempDir::new("afw-sdw").expect("tmp"),
            markers: TempDir::new("afw-mark").expect("tmp"),
        };
        std::fs::write(fw.cfg.path().join("50_test.toml"), config).expect("write config");
        fw
    }

    /// The command line with this host's directories, before the subcommand. The marker
    /// flags need ANON_FIREWALL_TEST_MARKERS=1 (refused without it, see main.rs).
    pub fn command(&self, ns: &Netns) -> std::process::Command {
        let mut c = ns.command(env!("CARGO_BIN_EXE_anon-firewall"));
        c.env("ANON_FIREWALL_TEST_MARKERS", "1");
        c.arg("--config-dir")
            .arg(self.cfg.path())
            .arg("--run-dir")
            .arg(self.run.path())
            .arg("--sdwdate-run-dir")
            .arg(self.sdwdate.path())
            .arg("--gateway-marker")
            .arg(self.markers.path().join("gateway"))
            .arg("--workstation-marker")
            .arg(self.markers.path().join("workstation"));
        c
    }

    pub fn cmd(&self, ns: &Netns, args: &[&str]) -> Output {
        self.command(ns)
            .args(args)
            .output()
            .expect("run anon-firewall")
    }

    pub fn apply(&self, ns: &Netns) {
        let out = self.cmd(ns, &["apply"]);
        assert!(
            out.status.success(),
            "apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!self.run.path().join("failed.status").exists());
    }

    /// Runs `args`, which must fail (exit code 1) with an error that names `cause`.
    pub fn assert_refuses(&self, ns: &Netns, args: &[&str], cause: &str, what: &str) {
        let out = self.cmd(ns, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains(cause),
            "{what}: the error must name the cause: {err}"
        );
    }

    /// The run dir's failed.status, which must be there.
    pub fn failed_status(&self) -> String {
        std::fs::read_to_string(self.run.path().join("failed.status")).expect("failed.status")
    }

    /// The run dir's state file.
    pub fn state(&self) -> String {
        std::fs::read_to_string(self.run.path().join("state")).expect("state")
    }
}

pub fn gateway_config() -> String {
    format!("role = \"gateway\"\ntor_user = {TOR_UID}\n")
}

pub fn ruleset(ns: &Netns) -> String {
    ns.exec(&["nft", "list", "ruleset"])
        .expect("nft list ruleset")
}

/// Asserts the namespace holds exactly the lockdown ruleset.
pub fn assert_lockdown(ns: &Netns) {
    let rules = ruleset(ns);
    assert_eq!(rules.matches("policy drop").count(), 3, "{rules}");
    assert!(
        !rules.contains("skuid") && !rules.contains("redirect") && !rules.contains("dport"),
        "{rules}"
    );
}

/// The status an anon-firewall command exited with, and what it printed (stdout, then stderr).
pub fn code_and_text(out: &Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

impl Fw {
    /// `anon-firewall status` in `ns`: its exit code and output.
    pub fn status(&self, ns: &Netns) -> (Option<i32>, String) {
        code_and_text(&self.cmd(ns, &["status"]))
    }

    /// The command line as `self.command`, for the binary at `exe` run as `uid` (setpriv,
    /// no capabilities, no groups).
    pub fn command_as(&self, ns: &Netns, exe: &Path, uid: u32) -> std::process::Command {
        let mut c = ns.command("setpriv");
        c.args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
        ])
        .arg(exe)
        .env("ANON_FIREWALL_TEST_MARKERS", "1")
        .arg("--config-dir")
        .arg(self.cfg.path())
        .arg("--run-dir")
        .arg(self.run.path())
        .arg("--sdwdate-run-dir")
        .arg(self.sdwdate.path())
        .arg("--gateway-marker")
        .arg(self.markers.path().join("gateway"))
        .arg("--workstation-marker")
        .arg(self.markers.path().join("workstation"));
        c
    }
}

/// anon-firewall copied into a directory every user may enter (the build directory under
/// /root is not), for running it as an unprivileged user.
pub fn world_runnable_copy() -> (TempDir, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("afw-bin").expect("tmp");
    let exe = dir.path().join("anon-firewall");
    std::fs::copy(env!("CARGO_BIN_EXE_anon-firewall"), &exe).expect("copy anon-firewall");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (dir, exe)
}

/// A small deterministic generator (SplitMix64) for seeded random tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// 0..n
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
}
