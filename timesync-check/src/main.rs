//! `timesync-check`: one line and an exit code (see the man page).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anon_cli::Program;
use clap::Parser;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use timesync_check::state::{judge, read_run_dir, Sync, Verdict};
use timesync_check::tor;

static PROGRAM: Program = Program {
    name: "timesync-check",
    section: "1",
    examples: "  timesync-check                        synced?
  timesync-check --wait --timeout 300   wait for sdwdate's first success, showing its progress
  timesync-check --tor --json           also compare with Tor's consensus, as JSON",
    notes: "",
    exit_codes: &[
        (
            0,
            "synced: sdwdate set the clock (and, with --tor, it is inside Tor's consensus window)",
        ),
        (
            1,
            "pending: sdwdate has not succeeded yet (or --wait timed out)",
        ),
        (
            2,
            "failed: sdwdate's last round failed, or the clock is outside Tor's window (--tor)",
        ),
        (
            3,
            "not running: no status from sdwdate, or it stopped before it synced",
        ),
        (
            4,
            "stopped: sdwdate synced the clock earlier, but is not running now (stopped or \
             crashed): nothing keeps the clock right",
        ),
    ],
    error_code: 2,
    info_targets: &["timesync_check", "tor_control"],
};

#[derive(Debug, Parser)]
#[command(
    name = "timesync-check",
    version,
    about = "Is the clock synced by sdwdate?"
)]
struct Cli {
    /// sdwdate's status directory.
    #[arg(long, default_value = "/run/sdwdate")]
    run_dir: PathBuf,
    /// sdwdate's persistent state (the replay-protection time, a lower bound for --tor).
    #[arg(long, default_value = "/var/lib/sdwdate")]
    state_dir: PathBuf,
    /// Print JSON instead of a line.
    #[arg(long)]
    json: bool,
    /// Wait for sdwdate's first success.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this many seconds (exit 1).
    #[arg(long)]
    timeout: Option<u64>,
    /// Also check the clock against Tor's consensus window and the minimum time.
    #[arg(long)]
    tor: bool,
    /// With --tor: tor's control port, HOST:PORT, unix:/PATH or auto (on a Whonix
    /// workstation the gateway's 9051: 10.152.152.10, on Qubes-Whonix the qubesdb gateway;
    /// else Debian's /run/tor/control, else
    /// 127.0.0.1:9051); NULL or cookie authentication. Without a consensus window (from it
    /// or --consensus-file) --tor fails: the clock cannot be judged.
    #[arg(long, default_value = "auto", value_name = "HOST:PORT|unix:PATH|auto")]
    control_port: tor_control::ControlAddr,
    /// With --tor: cookie file for the control port.
    #[arg(long)]
    control_cookie: Option<PathBuf>,
    /// With --tor: a cached consensus, used when the control port does not answer.
    #[arg(long, default_value = "/var/lib/tor/cached-microdesc-consensus")]
    consensus_file: PathBuf,
}

fn main() -> ExitCode {
    anon_cli::main(&PROGRAM, run)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut v = if cli.wait {
        wait(&cli)
    } else {
        judge(&read_run_dir(&cli.run_dir))
    };
    let mut tor_line = None;
    if cli.tor {
        let control = control_port(&cli.control_port);
        let asked = tor_control::consensus_window(
            &control,
            cli.control_cookie.as_deref(),
            std::time::Duration::from_secs(10),
        );
        let window = asked.as_ref().ok().copied().or_else(|| {
            std::fs::read_to_string(&cli.consensus_file)
                .ok()
                .and_then(|t| tor::window_from_consensus(&t))
        });
        // No window, no pass: "after the minimum time" alone says nothing about the clock.
        let Some(window) = window else {
            let why = match asked {
                Err(e) => e.to_string(),
                Ok(_) => unreachable!("a window was read"),
            };
            let line = format!(
                "{}; no Tor consensus window to compare the clock with (control port {control}: {why}; no usable {})",
                v.line,
                cli.consensus_file.display()
            );
            // Not running or stopped stays what it is (worse than a failed round: nothing runs).
            let state = match v.state {
                Sync::NotRunning | Sync::Stopped => v.state,
                _ => Sync::Failed,
            };
            return Ok(print_verdict(&cli, Verdict { state, line }, None));
        };
        let window = Some(window);
        let min = tor::minimum_time(&[
            &cli.state_dir.join("time-replay-protection-utc-unixtime"),
            Path::new("/etc/minimum-unixtime"),
            Path::new("/usr/local/etc/minimum-unixtime"),
        ]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        match tor::check(now, window, min) {
            Ok(l) => tor_line = Some(l.to_string()),
            Err(l) => {
                tor_line = Some(l.to_string());
                v = Verdict {
                    state: Sync::Failed,
                    line: format!("{}; {l}", v.line),
                };
            }
        }
    }
    Ok(print_verdict(&cli, v, tor_line))
}

/// Prints the verdict (a line, or JSON) and gives its exit code.
fn print_verdict(cli: &Cli, v: Verdict, tor_line: Option<String>) -> ExitCode {
    if cli.json {
        let j = serde_json::json!({"state": v.state.name(), "code": v.state.code(), "message": v.line, "tor": tor_line});
        println!("{j}");
    } else {
        match &tor_line {
            Some(t) if v.state != Sync::Failed => println!("{}; {t}", v.line),
            _ => println!("{}", v.line),
        }
    }
    ExitCode::from(v.state.code())
}

/// `auto` on a Whonix workstation is the gateway's control port (through its onion-grater),
/// as sdwdate uses it: the workstation runs no tor of its own. On Qubes-Whonix the gateway
/// is the one qubesdb names, as for sdwdate ([`tor_control::whonix::gateway_ip`]).
fn control_port(asked: &tor_control::ControlAddr) -> tor_control::ControlAddr {
    match asked {
        tor_control::ControlAddr::Auto if tor_control::whonix::workstation() => {
            let g = tor_control::whonix::gateway_ip();
            if let Some(w) = g.warning {
                eprintln!("timesync-check: {w}");
            }
            tor_control::ControlAddr::Tcp(std::net::SocketAddr::new(g.ip, 9051))
        }
        other => other.clone(),
    }
}

/// Waits for `first_success` (or `success`), printing sdwdate's progress when it changes.
fn wait(cli: &Cli) -> Verdict {
    let deadline = cli.timeout.map(|t| Instant::now() + Duration::from_secs(t));
    // Watch the directory if it exists, else its parent until it appears.
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok();
    let flags = AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_ATTRIB;
    let mut watching_dir = false;
    let mut last_msg = None;
    loop {
        if let Some(i) = &inotify {
            if !watching_dir {
                if i.add_watch(&cli.run_dir, flags).is_ok() {
                    watching_dir = true;
                } else if let Some(parent) = cli.run_dir.parent() {
                    let _ = i.add_watch(parent, AddWatchFlags::IN_CREATE);
                }
            }
        }
        let f = read_run_dir(&cli.run_dir);
        if f.first_success || f.success {
            return judge(&f);
        }
        if f.msg != last_msg {
            if let Some(m) = &f.msg {
                eprintln!("timesync-check: waiting; sdwdate: {m}");
            }
            last_msg.clone_from(&f.msg);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            let v = judge(&f);
            let state = if v.state == Sync::Synced {
                Sync::Synced
            } else {
                Sync::Pending
            };
            return Verdict {
                state,
                line: format!("timed out waiting: {}", v.line),
            };
        }
        // Sleep until inotify reports a change (bounded, so a missed event costs at most 1 s).
        let wait_ms = left.map_or(1000, |l| l.as_millis().min(1000)) as u16;
        match &inotify {
            Some(i) => {
                let mut fds = [nix::poll::PollFd::new(
                    std::os::fd::AsFd::as_fd(i),
                    nix::poll::PollFlags::POLLIN,
                )];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(wait_ms));
                let _ = i.read_events();
            }
            None => std::thread::sleep(Duration::from_millis(u64::from(wait_ms))),
        }
    }
}
