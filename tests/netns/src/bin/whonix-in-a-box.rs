//! The demo: the Whonix topology in three network namespaces, anon-firewall loaded on both
//! sides, every way out probed, a short report printed, everything torn down.
//!
//! Usage: whonix-in-a-box --firewall PATH/TO/anon-firewall

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anon_netns::{
    tcp_connect_as, udp_received, Netns, TempDir, Topology, GATEWAY_EXT_IP, GATEWAY_IP,
    INTERNET_IP, INTERNET_IP6,
};

const TOR_UID: u32 = 64001;
const USER_UID: u32 = 64002;
const WAIT: Duration = Duration::from_millis(600);

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

struct Report {
    failed: usize,
}

impl Report {
    fn check(&mut self, ok: bool, what: &str) {
        println!("  [{}] {what}", if ok { "PASS" } else { "FAIL" });
        if !ok {
            self.failed += 1;
        }
    }
}

fn firewall(
    bin: &Path,
    ns: &Netns,
    cfg_dir: &Path,
    run_dir: &Path,
    args: &[&str],
) -> std::io::Result<(bool, String)> {
    let out = ns
        .command(bin)
        .arg("--config-dir")
        .arg(cfg_dir)
        .arg("--run-dir")
        .arg(run_dir)
        .args(args)
        .output()?;
    let text = String::from_utf8_lossy(if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    });
    Ok((out.status.success(), text.trim().to_owned()))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let bin: PathBuf = match (args.next().as_deref(), args.next()) {
        (Some("--firewall"), Some(p)) => p.into(),
        _ => {
            eprintln!("usage: whonix-in-a-box --firewall PATH/TO/anon-firewall");
            return ExitCode::from(2);
        }
    };
    match demo(&bin) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            println!("\n{n} check(s) failed.");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("whonix-in-a-box: {e}");
            ExitCode::from(2)
        }
    }
}

fn demo(bin: &Path) -> std::io::Result<usize> {
    let mut r = Report { failed: 0 };
    println!("Whonix in a box: internet / gateway / workstation in network namespaces\n");
    let t = Topology::up("demo")?;
    println!("topology: internet {INTERNET_IP}  <->  gateway {GATEWAY_EXT_IP} | {GATEWAY_IP}  <->  workstation 10.152.152.11");
    println!("(stand-ins for Tor: listeners on the gateway's TransPort 9040, DnsPort 5300, SocksPort 9050; Tor user uid {TOR_UID})\n");

    let server = t.internet.tcp_listen(sa(INTERNET_IP, 80))?;
    let server6 = t.internet.tcp_listen(sa(INTERNET_IP6, 80))?;
    let udp_server = t.internet.udp_bind(sa(INTERNET_IP, 9999))?;
    let icmp = t.internet.icmp_observer(false)?;
    let trans = t.gateway.tcp_listen(sa([0, 0, 0, 0], 9040))?;
    let dns = t.gateway.udp_bind(sa([0, 0, 0, 0], 5300))?;
    let socks = t.gateway.tcp_listen(sa([0, 0, 0, 0], 9050))?;

    let (gw_cfg, gw_run, ws_cfg, ws_run) = (
        TempDir::new("demo-gw-cfg")?,
        TempDir::new("demo-gw-run")?,
        TempDir::new("demo-ws-cfg")?,
        TempDir::new("demo-ws-run")?,
    );
    std::fs::write(
        gw_cfg.path().join("50_demo.toml"),
        format!("role = \"gateway\"\ntor_user = {TOR_UID}\n"),
    )?;
    std::fs::write(
        ws_cfg.path().join("50_demo.toml"),
        "role = \"workstation\"\n",
    )?;

    println!("anon-firewall apply:");
    let started = Instant::now();
    let (ok, msg) = firewall(bin, &t.gateway, gw_cfg.path(), gw_run.path(), &["apply"])?;
    r.check(
        ok,
        &format!("gateway: {msg} ({} ms)", started.elapsed().as_millis()),
    );
    let (ok, msg) = firewall(
        bin,
        &t.workstation,
        ws_cfg.path(),
        ws_run.path(),
        &["apply"],
    )?;
    r.check(ok, &format!("workstation: {msg}"));

    println!("\nworkstation -> internet:");
    let c = t
        .workstation
        .tcp_connect(sa(INTERNET_IP, 80), Duration::from_secs(2));
    let got = trans.accept_all(WAIT);
    let orig = got
        .first()
        .and_then(|a| a.original_dst)
        .map_or("-".into(), |d| d.to_string());
    let direct = server.accept_all(WAIT).len();
    r.check(
        c.is_ok() && got.len() == 1 && direct == 0,
        &format!("TCP to {INTERNET_IP}:80 lands on the TransPort (original destination {orig}); the server saw {direct}"),
    );
    t.workstation.udp_send(sa(GATEWAY_IP, 53), b"dns?")?;
    let q = udp_received(&dns, WAIT).len();
    r.check(
        q == 1,
        &format!("DNS to the resolver {GATEWAY_IP}:53 lands on the DnsPort 5300 ({q} query)"),
    );
    let other = t
        .workstation
        .udp_send(sa(INTERNET_IP, 53), b"dns?")
        .is_err();
    r.check(
        other,
        &format!("DNS to another resolver ({INTERNET_IP}:53) is refused on the workstation"),
    );
    let _ = t.workstation.udp_send(sa(INTERNET_IP, 9999), b"leak?");
    t.workstation.ping(INTERNET_IP.into(), 2)?;
    let _ = t.workstation.tcp_connect(sa(INTERNET_IP6, 80), WAIT);
    let (u, i, s6) = (
        udp_received(&udp_server, WAIT).len(),
        icmp.echo_requests(WAIT),
        server6.accept_all(WAIT).len(),
    );
    r.check(
        u + i + s6 == 0,
        &format!(
            "UDP, ICMP and IPv6 reach nothing (internet saw {u} UDP, {i} ICMP, {s6} IPv6 TCP)"
        ),
    );
    let c = t
        .workstation
        .tcp_connect(sa(GATEWAY_IP, 9050), Duration::from_secs(2));
    r.check(
        c.is_ok() && socks.accept_all(WAIT).len() == 1,
        "the gateway's SocksPort 9050 answers",
    );

    println!("\ngateway -> internet:");
    let tor = tcp_connect_as(
        &t.gateway,
        TOR_UID,
        sa(INTERNET_IP, 80),
        Duration::from_secs(2),
    )?;
    r.check(
        tor && server.accept_all(WAIT).len() == 1,
        "the Tor user reaches the internet",
    );
    let user = tcp_connect_as(
        &t.gateway,
        USER_UID,
        sa(INTERNET_IP, 80),
        Duration::from_secs(2),
    )?;
    let root = t
        .gateway
        .tcp_connect(sa(INTERNET_IP, 80), Duration::from_secs(2))
        .is_ok();
    r.check(
        !user && !root && server.accept_all(WAIT).is_empty(),
        "root and an ordinary user are rejected",
    );

    println!("\ninternet -> gateway:");
    let c = t
        .internet
        .tcp_connect(sa(GATEWAY_EXT_IP, 9050), Duration::from_secs(1));
    r.check(
        c.is_err() && socks.accept_all(WAIT).is_empty(),
        "a connection to the SocksPort from outside is dropped",
    );

    println!("\nfail closed:");
    std::fs::write(
        gw_cfg.path().join("60_typo.toml"),
        "allow_incomming_ssh = true\n",
    )?;
    let (ok, msg) = firewall(bin, &t.gateway, gw_cfg.path(), gw_run.path(), &["apply"])?;
    let first = msg.lines().last().unwrap_or_default().to_owned();
    r.check(
        !ok && gw_run.path().join("failed.status").exists(),
        &format!("a typo in the config is refused: {first}"),
    );
    let tor = tcp_connect_as(&t.gateway, TOR_UID, sa(INTERNET_IP, 80), WAIT)?;
    let ws = t.workstation.tcp_connect(sa(INTERNET_IP, 80), WAIT).is_ok();
    r.check(
        !tor && !ws,
        "... and the gateway is in lockdown: not even Tor gets out",
    );

    println!("\nteardown: namespaces removed.");
    Ok(r.failed)
}
