//! A reload cuts what the new rules forbid (issue 26, part 2). Connections are held open
//! across `apply`; after a reload that narrows the rules (a user removed from
//! `no_nat_users`, full -> timesync-fail-closed, the VPN firewall switched on), no packet of a
//! connection the new ruleset would refuse gets through, in either direction, while the
//! connections it still allows keep flowing. Each test first shows that data flows both ways
//! before the reload, so that a cut cannot be a broken probe.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{channel, Receiver};

/// A TCP connection held by a process running as `uid` in a namespace (bash's /dev/tcp): what
/// the test writes to it is sent, what arrives is read back.
struct UidConn {
    child: Child,
    stdin: ChildStdin,
    got: Receiver<Vec<u8>>,
}

impl UidConn {
    fn open(ns: &Netns, uid: u32, to: SocketAddr) -> UidConn {
        let script = format!(
            "exec 3<>/dev/tcp/{}/{} || exit 1; cat <&3 & exec cat >&3",
            to.ip(),
            to.port()
        );
        let mut child = ns
            .command("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "timeout",
                "120",
                "bash",
                "-c",
                &script,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the connection's holder");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        let (tx, got) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        UidConn { child, stdin, got }
    }

    fn send(&mut self, text: &str) {
        // A broken pipe (the holder gone) shows as nothing arriving.
        let _ = self.stdin.write_all(text.as_bytes());
        let _ = self.stdin.flush();
    }

    /// Whether `text` arrives within `wait`.
    fn receives(&self, text: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut all = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.got.recv_timeout(left) {
                Ok(chunk) => {
                    all.extend(chunk);
                    if String::from_utf8_lossy(&all).contains(text) {
                        return true;
                    }
                }
                Err(_) => break,
            }
        }
        false
    }
}

impl Drop for UidConn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `text` arrives on `s` within `wait`.
fn stream_receives(s: &mut TcpStream, text: &str, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut all = Vec::new();
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&all).contains(text) {
                    return true;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    false
}

/// Either end of a held connection, so that one check covers both kinds.
trait End {
    fn put(&mut self, text: &str);
    fn gets(&mut self, text: &str, wait: Duration) -> bool;
}

impl End for UidConn {
    fn put(&mut self, text: &str) {
        self.send(text);
    }
    fn gets(&mut self, text: &str, wait: Duration) -> bool {
        self.receives(text, wait)
    }
}

impl End for TcpStream {
    fn put(&mut self, text: &str) {
        let _ = self.write_all(text.as_bytes());
    }
    fn gets(&mut self, text: &str, wait: Duration) -> bool {
        stream_receives(self, text, wait)
    }
}

/// (client -> server arrives, server -> client arrives) for a fresh token.
fn flow(client: &mut dyn End, server: &mut dyn End, tag: &str) -> (bool, bool) {
    client.put(&format!("up-{tag}\n"));
    let up = server.gets(&format!("up-{tag}"), PATIENT);
    server.put(&format!("down-{tag}\n"));
    let down = client.gets(&format!("down-{tag}"), PATIENT);
    (up, down)
}

fn set_config(fw: &Fw, config: &str) {
    std::fs::write(fw.cfg.path().join("50_test.toml"), config).expect("config");
}

/// The server end of the one connection that `listener` should get now.
fn accept_one(listener: &Listener, what: &str) -> TcpStream {
    let mut got = listener.accept_all(PATIENT);
    assert_eq!(got.len(), 1, "{what}: connections at the listener");
    got.remove(0).stream
}

#[test]
fn removing_a_no_nat_user_cuts_that_users_connection_but_not_tors() {
    if !require_root("removing_a_no_nat_user_cuts_that_users_connection_but_not_tors") {
        return;
    }
    let t = Topology::up("afw-rl-user").expect("topology");
    let server = listen(&t.internet, INTERNET_IP, 80);
    let fw = Fw::new(&format!(
        "{}no_nat_users = [{USER_UID}]\n",
        gateway_config()
    ));
    fw.apply(&t.gateway);
    let mut user = UidConn::open(&t.gateway, USER_UID, sa(INTERNET_IP, 80));
    let mut user_srv = accept_one(&server, "the no_nat user");
    let mut tor = UidConn::open(&t.gateway, TOR_UID, sa(INTERNET_IP, 80));
    let mut tor_srv = accept_one(&server, "Tor");
    assert_eq!(
        flow(&mut user, &mut user_srv, "u1"),
        (true, true),
        "user before"
    );
    assert_eq!(
        flow(&mut tor, &mut tor_srv, "t1"),
        (true, true),
        "Tor before"
    );

    set_config(&fw, &gateway_config());
    fw.apply(&t.gateway);
    assert_eq!(
        flow(&mut user, &mut user_srv, "u2"),
        (false, false),
        "the removed user's connection must carry nothing either way"
    );
    assert_eq!(
        flow(&mut tor, &mut tor_srv, "t2"),
        (true, true),
        "Tor's connection is still allowed and must keep flowing"
    );
}

#[test]
fn going_back_to_timesync_mode_cuts_all_but_sdwdates_connections() {
    if !require_root("going_back_to_timesync_mode_cuts_all_but_sdwdates_connections") {
        return;
    }
    let t = Topology::up("afw-rl-ts").expect("topology");
    let socks = listen(&t.gateway, ANY, 9050);
    let sdwdate = listen(&t.gateway, ANY, 9108);
    let fw = Fw::new(&gateway_config());
    fw.apply(&t.gateway);
    let mut ws_socks = t
        .workstation
        .tcp_connect(sa(GATEWAY_IP, 9050), PATIENT)
        .expect("ws to 9050");
    let mut ws_socks_srv = accept_one(&socks, "the workstation to 9050");
    let mut ws_sdw = t
        .workstation
        .tcp_connect(sa(GATEWAY_IP, 9108), PATIENT)
        .expect("ws to 9108");
    let mut ws_sdw_srv = accept_one(&sdwdate, "the workstation to 9108");
    // A program on the gateway itself, over loopback, to Tor's SocksPort.
    let mut local = t
        .gateway
        .tcp_connect(sa(LOCALHOST, 9050), PATIENT)
        .expect("local to 9050");
    let mut local_srv = accept_one(&socks, "the gateway's own program to 9050");
    for (c, s, what) in [
        (
            &mut ws_socks as &mut dyn End,
            &mut ws_socks_srv as &mut dyn End,
            "ws 9050",
        ),
        (&mut ws_sdw, &mut ws_sdw_srv, "ws 9108"),
        (&mut local, &mut local_srv, "local 9050"),
    ] {
        assert_eq!(flow(c, s, "a"), (true, true), "{what} before the reload");
    }

    set_config(
        &fw,
        &format!("{}mode = \"timesync-fail-closed\"\n", gateway_config()),
    );
    fw.apply(&t.gateway);
    assert_eq!(
        flow(&mut ws_socks, &mut ws_socks_srv, "b"),
        (false, false),
        "the workstation's SocksPort connection must be cut"
    );
    assert_eq!(
        flow(&mut local, &mut local_srv, "b"),
        (false, false),
        "the gateway's own loopback connection to 9050 must be cut"
    );
    assert_eq!(
        flow(&mut ws_sdw, &mut ws_sdw_srv, "b"),
        (true, true),
        "sdwdate's connection is allowed in timesync mode and must keep flowing"
    );
}

#[test]
fn switching_the_vpn_firewall_on_cuts_tors_connections_around_the_vpn() {
    if !require_root("switching_the_vpn_firewall_on_cuts_tors_connections_around_the_vpn") {
        return;
    }
    let t = Topology::up("afw-rl-vpn").expect("topology");
    let server = listen(&t.internet, INTERNET_IP, 80);
    let fw = Fw::new(&gateway_config());
    fw.apply(&t.gateway);
    let mut tor = UidConn::open(&t.gateway, TOR_UID, sa(INTERNET_IP, 80));
    let mut tor_srv = accept_one(&server, "Tor out of the uplink");
    assert_eq!(flow(&mut tor, &mut tor_srv, "v1"), (true, true), "before");

    set_config(
        &fw,
        &format!(
            "{}vpn_firewall = true\nvpn_interface = \"tun0\"\n",
            gateway_config()
        ),
    );
    fw.apply(&t.gateway);
    assert_eq!(
        flow(&mut tor, &mut tor_srv, "v2"),
        (false, false),
        "with the VPN firewall on, Tor's connection out of the uplink must carry nothing"
    );
}
