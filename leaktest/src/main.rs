//! `leaktest`: run the checks (workstation or gateway), or be the observer.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anon_cli::Program;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};

use leaktest::marker::marker;
use leaktest::observer::{self, Client};
use leaktest::probes::{gateway_checks, host_checks, network_checks, Firewall, Setup};
use leaktest::verdict::{exit_code, human, to_json};

static PROGRAM: Program = Program {
    name: "leaktest",
    section: "8",
    examples: "  leaktest --observer 10.152.152.10:7777        on a workstation, with the observer on the gateway
  leaktest observer --capture eth0 --listen 10.152.152.10:7777   on the gateway
  leaktest --role gateway --json",
    notes: "",
    exit_codes: &[
        (0, "every check passed"),
        (1, "a leak (a check failed)"),
        (2, "could not test: a check was skipped (no observer, not root), or an error"),
    ],
    error_code: 2,
    info_targets: &["leaktest", "tor_control"],
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    Workstation,
    Gateway,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    Network,
    Host,
}

#[derive(Debug, Parser)]
#[command(
    name = "leaktest",
    version,
    about = "Tries every way out of Tor and judges each"
)]
struct Cli {
    #[arg(long, value_enum, default_value_t = Role::Workstation)]
    role: Role,
    /// The observer's control address.
    #[arg(long)]
    observer: Option<SocketAddr>,
    /// An outside address to aim at (nobody needs to answer; TEST-NET-1 by default).
    #[arg(long, default_value = "192.0.2.1")]
    target: IpAddr,
    /// An outside IPv6 address (documentation prefix by default).
    #[arg(long, default_value = "2001:db8::1")]
    target6: IpAddr,
    /// The gateway (SocksPorts).
    #[arg(long, default_value = "10.152.152.10")]
    gateway: IpAddr,
    /// This host's addresses as the outside would see them (default: its global addresses).
    #[arg(long, value_delimiter = ',')]
    me: Vec<IpAddr>,
    /// Gateway role: the Tor user's uid.
    #[arg(long)]
    tor_uid: Option<u32>,
    /// Only the network checks, or only the host settings (anon-firewall's rules included).
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// The anon-firewall program whose `status` says whether its rules are still what it
    /// loaded.
    #[arg(long, default_value = "anon-firewall")]
    anon_firewall: PathBuf,
    /// anon-firewall's run directory.
    #[arg(long, default_value = "/run/anon-firewall")]
    anon_firewall_run_dir: PathBuf,
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Capture on an interface where leaks would pass and answer leaktest's questions.
    Observer {
        #[arg(long)]
        capture: String,
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Internal: one TCP connection attempt (exit 0 if it connected), run as another user.
    #[command(hide = true)]
    ProbeTcp { to: SocketAddr },
}

/// This host's non-loopback addresses.
fn own_addresses() -> Vec<IpAddr> {
    nix::ifaddrs::getifaddrs()
        .map(|it| {
            it.filter_map(|i| {
                let a = i.address?;
                a.as_sockaddr_in()
                    .map(|s| IpAddr::V4(s.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
            })
            .filter(|ip| {
                !ip.is_loopback()
                    && !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
            })
            .collect()
        })
        .unwrap_or_default()
}

fn main() -> ExitCode {
    anon_cli::main(&PROGRAM, run)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Some(Cmd::Observer { capture, listen }) => {
            observer::run(&capture, listen).context("observer")?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::ProbeTcp { to }) => {
            let connected = TcpStream::connect_timeout(&to, Duration::from_secs(3)).is_ok();
            Ok(ExitCode::from(u8::from(!connected)))
        }
        None => checks(&cli),
    }
}

/// Runs the checks the options ask for and prints the verdicts.
fn checks(cli: &Cli) -> anyhow::Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("raw sockets and probes as other users need root");
    }
    let me = if cli.me.is_empty() {
        own_addresses()
    } else {
        cli.me.clone()
    };
    if me.is_empty() && cli.only != Some(Only::Host) {
        // Without our addresses the observer could only match markers, and TCP carries none.
        bail!("cannot determine this host's addresses; pass --me");
    }
    let setup = Setup {
        target: cli.target,
        target6: Some(cli.target6),
        gateway: cli.gateway,
        me,
        marker: marker(),
    };
    let mut obs = cli.observer.and_then(|addr| {
        Client::connect(addr)
            .inspect_err(|e| {
                eprintln!(
                    "leaktest: observer {addr} unreachable ({e}); network checks will be skipped"
                );
            })
            .ok()
    });
    let mut outcomes = Vec::new();
    if cli.only != Some(Only::Host) {
        match cli.role {
            Role::Workstation => outcomes.extend(network_checks(&setup, &mut obs)),
            Role::Gateway => outcomes.extend(gateway_checks(&setup, &mut obs, cli.tor_uid)),
        }
    }
    if cli.only != Some(Only::Network) {
        let firewall = Firewall {
            exe: cli.anon_firewall.clone(),
            run_dir: cli.anon_firewall_run_dir.clone(),
        };
        outcomes.extend(host_checks(cli.role == Role::Gateway, &firewall));
    }
    if cli.json {
        println!("{}", to_json(&outcomes));
    } else {
        print!("{}", human(&outcomes));
    }
    Ok(ExitCode::from(exit_code(&outcomes)))
}
