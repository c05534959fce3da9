//! The command line of `sdwdate` and `sdwdate-arti` (both include this file; `WITH_ARTI` of
//! the including binary says which one this is): wires the config, transport, clock and
//! status files to the daemon loop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anon_cli::Program;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use sdwdate::clock::{Clock, DryRunClock, SystemClock};
use sdwdate::config::ControlSetting;
use sdwdate::config::{Config, TransportKind};
use sdwdate::control::{ControlAddr, ControlPort};
use sdwdate::daemon::sanitize;
use sdwdate::daemon::{os_rng, Daemon, RoundResult};
use sdwdate::status::{Icon, StatusDir, Writes};
#[cfg(feature = "arti")]
use sdwdate::transport::arti::{self, Arti};
use sdwdate::transport::socks::Socks;
use sdwdate::transport::Transport;

static PROGRAM: Program = Program {
    name: "sdwdate",
    section: "8",
    examples:
        "  sdwdate                           run as the daemon (systemd starts it as user sdwdate)
  sdwdate --once --dry-run          one round, print the offset, change nothing
  sdwdate --proxy 10.152.152.10:9108 --once --dry-run
  sdwdate --transport arti --once --dry-run   embedded Tor client, no tor daemon
  sdwdate check-config
  sdwdate wait-sync --timeout 300   wait (at most 5 min) for the first success since boot",
    notes: "",
    exit_codes: &[
        (
            0,
            "success (--once: the round succeeded; the daemon: stopped by a signal)",
        ),
        (
            1,
            "the round failed (--once), wait-sync gave up (--timeout), or another error",
        ),
        (
            78,
            "a bad line in /etc/sdwdate.d or a bad arti setting (file, line and key in the \
             message, the journal and the daemon's /run/sdwdate/status): nothing ran, and the \
             unit does not restart",
        ),
    ],
    error_code: 1,
    // arti's directory manager (with its submodules) says where the directory came from, how
    // its bootstrap goes and when it became usable; the rest of arti's info chatter stays out
    // of the journal.
    // (This file's own lines name the target "sdwdate" explicitly: in sdwdate-arti its
    // module path is sdwdate_arti::cli.)
    info_targets: &["sdwdate", "tor_control", "tor_dirmgr"],
};

#[derive(Debug, Parser)]
#[command(
    name = "sdwdate",
    version,
    about = "Secure distributed web date: the clock from onion time sources over Tor"
)]
struct Cli {
    /// Directory of *.conf files in upstream's format, read in lexical order.
    #[arg(long, global = true, default_value = "/etc/sdwdate.d")]
    config_dir: PathBuf,
    /// Log what would be done to the clock; change nothing. Allowed as root.
    #[arg(long)]
    dry_run: bool,
    /// Run one round and exit (the correction is stepped, not slewed).
    #[arg(long)]
    once: bool,
    /// How to reach Tor: a tor daemon's SocksPort, or the embedded arti client.
    /// Default: TRANSPORT in the config, else SOCKS on Whonix, on Qubes, with a configured
    /// proxy or where a tor daemon is installed (up or not), else arti. Never a fallback.
    #[arg(long, value_name = "socks|arti")]
    transport: Option<TransportKind>,
    /// Extra arti settings in arti's TOML format (a private test network). Default: ARTI_CONFIG.
    #[arg(long, value_name = "FILE")]
    arti_config: Option<PathBuf>,
    /// Tor's SocksPort. Default: PROXY_IP/PROXY_PORT, else the Whonix gateway's 9108, else 127.0.0.1:9050.
    #[arg(long, value_name = "HOST:PORT")]
    proxy: Option<SocketAddr>,
    /// Tor's control port for the consensus bound: HOST:PORT, unix:/PATH, auto (Debian's
    /// /run/tor/control, else 127.0.0.1:9051) or none (no bound: weaker). Default: CONTROL_PORT,
    /// else the Whonix gateway's 10.152.152.10:9051 on a workstation, else auto. Unless none,
    /// a round without the window fails: no window, no time.
    #[arg(long, value_name = "HOST:PORT|unix:PATH|auto|none")]
    control_port: Option<ControlSetting>,
    /// Cookie file for the control port. Default: CONTROL_COOKIE, else the one expected at
    /// the address (Debian's /run/tor/control.authcookie, `<socket>.authcookie` beside a
    /// socket). A cookie file the control port names is used only if it is this one.
    #[arg(long)]
    control_cookie: Option<PathBuf>,
    /// How long a round waits for Tor to have a consensus before it fails.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    consensus_wait: u64,
    /// A fetch without an answer after this many seconds is hedged with another member of
    /// its pool (inside the failure budget).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    hedge_after: u64,
    /// Per-fetch timeout in seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Tests only (SDWDATE_TEST=1), with --dry-run: write every status file as the daemon
    /// does (success, first_success, fail, pid, the replay-protection time) though the clock
    /// is not moved, so that a reader's tests see a live daemon's files.
    #[arg(long, hide = true, requires = "dry_run")]
    test_write_all: bool,
    /// Soak tests only, with --dry-run: divide the sleeps between rounds by this, so that a
    /// day of rounds runs in minutes.
    #[arg(long, hide = true, default_value_t = 1, requires = "dry_run", value_parser = clap::value_parser!(u32).range(1..))]
    soak_sleep_divisor: u32,
    /// Status files for other tools.
    #[arg(long, default_value = "/run/sdwdate")]
    run_dir: PathBuf,
    /// Persistent state (time-replay protection).
    #[arg(long, default_value = "/var/lib/sdwdate")]
    state_dir: PathBuf,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Validate the configuration only.
    CheckConfig,
    /// The unit's stop hook (ExecStopPost=): sdwdate is not running, after any exit, a crash
    /// included. The status says so (keeping an error's message) and the pid file goes.
    #[command(hide = true)]
    Stopped,
    /// Wait until sdwdate has set the clock once since boot (`first_success` in the run
    /// directory), then exit 0; what sdwdate-wait-sync.service runs, so that time-sync.target
    /// (and every unit ordered after it, OnCalendar timers among them) follows sdwdate.
    WaitSync {
        /// Give up after this many seconds (exit 1). Default: wait as long as it takes.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
}

fn whonix_workstation() -> bool {
    tor_control::whonix::workstation()
}

/// The Whonix gateway's address ([`tor_control::whonix::gateway_ip`]), its fallback warned.
fn gateway_ip() -> IpAddr {
    let g = tor_control::whonix::gateway_ip();
    if let Some(w) = g.warning {
        log::warn!(target: "sdwdate", "{w}");
    }
    g.ip
}

fn default_proxy(cfg: &Config) -> SocketAddr {
    let (ip, port) = if whonix() {
        (gateway_ip(), 9108)
    } else {
        (IpAddr::V4(Ipv4Addr::LOCALHOST), 9050)
    };
    SocketAddr::new(cfg.proxy_ip.unwrap_or(ip), cfg.proxy_port.unwrap_or(port))
}

/// `--control-port`, else CONTROL_PORT, else the platform's tor (the gateway's 9051 on a
/// Whonix workstation, where onion-grater answers).
fn control_setting(cli: &Cli, cfg: &Config) -> ControlSetting {
    cli.control_port
        .clone()
        .or_else(|| cfg.control_port.clone())
        .unwrap_or_else(|| {
            ControlSetting::Addr(if whonix_workstation() {
                ControlAddr::Tcp(SocketAddr::new(gateway_ip(), 9051))
            } else {
                ControlAddr::Auto
            })
        })
}

/// SOCKS is the default: a tor daemon is installed (Debian's tor package, or one built into
/// /usr/local), or this is a Qubes qube (whose way to Tor is its NetVM, e.g. sys-whonix: an
/// embedded Tor client there would run Tor over Tor). arti needs `TRANSPORT=arti` there.
fn socks_by_default() -> bool {
    [
        "/usr/bin/tor",
        "/usr/sbin/tor",
        "/usr/local/bin/tor",
        "/usr/local/sbin/tor",
        "/usr/bin/qubesdb-read",
        "/usr/share/qubes/marker-vm",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
}

fn whonix() -> bool {
    whonix_workstation() || Path::new(tor_control::whonix::GATEWAY_MARKER).exists()
}

fn pick_transport(cli: &Cli, cfg: &Config) -> (TransportKind, &'static str) {
    if !arti_available() && cli.transport.is_none() && cfg.transport.is_none() {
        return (TransportKind::Socks, "built without arti");
    }
    sdwdate::transport::choose(
        cli.transport,
        cfg,
        cli.proxy.is_some(),
        whonix(),
        socks_by_default,
    )
}

pub fn main() -> ExitCode {
    anon_cli::main(&PROGRAM, run)
}

/// Where `sdwdate-arti` is: beside this binary (a build tree), else the package's
/// /usr/libexec/sdwdate. Only a build with the arti feature looks for it: a SOCKS-only build
/// never runs arti, whatever an older build left in its target directory.
fn arti_binary() -> Option<PathBuf> {
    if !cfg!(feature = "arti") {
        return None;
    }
    let beside = std::env::current_exe()
        .ok()
        .map(|e| e.with_file_name("sdwdate-arti"));
    beside
        .into_iter()
        .chain([PathBuf::from("/usr/libexec/sdwdate/sdwdate-arti")])
        .find(|p| p.is_file())
}

fn arti_available() -> bool {
    if crate::WITH_ARTI || arti_binary().is_some() {
        return true;
    }
    if cfg!(feature = "arti") {
        log::warn!(
            target: "sdwdate",
            "sdwdate-arti is missing (/usr/libexec/sdwdate/sdwdate-arti: a partial install?): \
             only the SOCKS transport can be used"
        );
    }
    false
}

/// Replaces this process (same pid, arguments, environment, capabilities) with
/// `sdwdate-arti`; returns only if that cannot be done.
fn exec_arti() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let Some(bin) = arti_binary() else {
        return anyhow::anyhow!(
            "the arti transport was asked for, but this sdwdate was built without arti (SOCKS only)"
        );
    };
    let error = std::process::Command::new(&bin)
        .arg0("sdwdate")
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow::Error::new(error).context(format!("cannot run {}", bin.display()))
}

/// systemd's `$EXIT_CODE` and `$EXIT_STATUS`, in words.
fn exit_reason(code: &str, status: &str) -> String {
    match code {
        "killed" | "dumped" => format!("sdwdate crashed (signal {status})"),
        "exited" if status == "0" => "sdwdate was stopped".to_owned(),
        "exited" => format!("sdwdate exited with status {status}"),
        _ => "sdwdate was stopped".to_owned(),
    }
}

/// A control port of this host's tor: a socket, `auto` (Debian's socket or 127.0.0.1:9051),
/// or a TCP address of this host.
fn control_is_local(addr: &ControlAddr) -> bool {
    match addr {
        ControlAddr::Tcp(a) => tor_control::client::is_local(a.ip()),
        ControlAddr::Unix(_) | ControlAddr::Auto => true,
    }
}

/// sysexits' EX_CONFIG: never a usage error (64) nor a failed round (1).
const CONFIG_ERROR: u8 = 78;

/// A configuration error (an /etc/sdwdate.d line, an arti setting) where users look: the
/// status file (sdwdate-gui) besides the journal (stderr, already written by the caller);
/// exit 78, on which the unit does not restart: the file will not fix itself.
fn config_error(status: &StatusDir, e: &dyn std::fmt::Display) -> ExitCode {
    if status.writes != Writes::All {
        // A dry run is a person at a terminal: the message on stderr is for them.
        return ExitCode::from(CONFIG_ERROR);
    }
    let shown = status.init().and_then(|()| {
        status.status(
            Icon::Error,
            &sanitize(&format!(
                "Configuration error: {e}. Not running: fix it, then restart sdwdate."
            )),
        )
    });
    if let Err(w) = shown {
        log::error!(target: "sdwdate", "cannot write {}: {w}", status.run_dir.display());
    }
    ExitCode::from(CONFIG_ERROR)
}

/// The stop hook: says why sdwdate is not running, from systemd's account of the exit
/// (`$SERVICE_RESULT`, `$EXIT_CODE`, `$EXIT_STATUS`), keeping an error already shown (a
/// configuration error) so that the reason is not lost.
fn stopped(status: &StatusDir) -> anyhow::Result<()> {
    let var = |k| std::env::var(k).unwrap_or_default();
    let how = match var("SERVICE_RESULT").as_str() {
        "exec-condition" => {
            "sdwdate was not started: its condition is not met (on Qubes: no NetVM)".to_owned()
        }
        "watchdog" => "sdwdate was stopped by systemd's watchdog (no progress)".to_owned(),
        _ => exit_reason(&var("EXIT_CODE"), &var("EXIT_STATUS")),
    };
    let message = match status.last_error() {
        Some(e) if !e.starts_with("Not running") => format!("Not running ({how}): {e}"),
        _ => format!("Not running: {how}. The clock is not kept right."),
    };
    status
        .stopped(&sanitize(&message))
        .with_context(|| format!("cannot write {}", status.run_dir.display()))
}

/// Polls for `first_success` once a second: the file is created in place (never renamed
/// over), so its existence is the whole answer.
fn wait_sync(run_dir: &Path, timeout: Option<Duration>) -> ExitCode {
    let file = run_dir.join(tor_control::run_dir::FIRST_SUCCESS);
    let start = std::time::Instant::now();
    loop {
        if file.exists() {
            return ExitCode::SUCCESS;
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            eprintln!(
                "sdwdate: no first success after {} s ({} is not there)",
                start.elapsed().as_secs(),
                file.display()
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Some(Cmd::CheckConfig) => {
            let cfg = match Config::load_dir(&cli.config_dir) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("sdwdate: {e:#}");
                    return Ok(ExitCode::from(CONFIG_ERROR));
                }
            };
            let extra = cli.arti_config.as_ref().or(cfg.arti_config.as_ref());
            if extra.is_some() && !crate::WITH_ARTI && arti_binary().is_some() {
                // arti's settings are checked by arti's own parser.
                return Err(exec_arti());
            }
            #[cfg(feature = "arti")]
            if let (Some(extra), true) = (extra, crate::WITH_ARTI) {
                if let Err(e) = arti::config(&cli.state_dir, Some(extra)) {
                    eprintln!("sdwdate: {e}");
                    return Ok(ExitCode::from(CONFIG_ERROR));
                }
            }
            if cfg.transport == Some(TransportKind::Arti) && !arti_available() {
                bail!("TRANSPORT=arti, but this sdwdate was built without arti");
            }
            let n: Vec<usize> = cfg.pools.iter().map(Vec::len).collect();
            let transport = match cfg.transport {
                Some(TransportKind::Socks) => "socks",
                Some(TransportKind::Arti) => "arti",
                None => "decided at start: socks on Whonix, on Qubes or where tor is installed, else arti",
            };
            println!(
                "sdwdate: configuration OK (pools of {} / {} / {} members, proxy {}, transport {transport})",
                n[0],
                n[1],
                n[2],
                default_proxy(&cfg)
            );
            return Ok(ExitCode::SUCCESS);
        }
        Some(Cmd::WaitSync { timeout }) => {
            return Ok(wait_sync(&cli.run_dir, timeout.map(Duration::from_secs)));
        }
        Some(Cmd::Stopped) => {
            stopped(&StatusDir::new(cli.run_dir.clone(), cli.state_dir.clone()))?;
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    if nix::unistd::geteuid().is_root() && !cli.dry_run {
        bail!("refusing to run as root: the sdwdate unit runs it as user sdwdate with only CAP_SYS_TIME (use --dry-run to test as root)");
    }
    if cli.test_write_all && std::env::var_os("SDWDATE_TEST").is_none_or(|v| v != "1") {
        return Err(anon_cli::UsageError(
            "--test-write-all is for tests only (they set SDWDATE_TEST=1): a dry run must not \
             write what says the clock is synced"
                .into(),
        )
        .into());
    }
    let status = if cli.dry_run && !cli.test_write_all {
        StatusDir::dry_run(cli.run_dir.clone(), cli.state_dir.clone())
    } else {
        StatusDir::new(cli.run_dir.clone(), cli.state_dir.clone())
    };
    let cfg = match Config::load_dir(&cli.config_dir) {
        Ok(cfg) => cfg,
        Err(e) => {
            // Where users look: the journal (stderr) and sdwdate-gui (the status file). The
            // unit does not restart on this exit code: the file will not fix itself.
            eprintln!("sdwdate: {e:#}");
            return Ok(config_error(&status, &e));
        }
    };
    let (kind, why) = pick_transport(&cli, &cfg);
    if kind == TransportKind::Arti && !crate::WITH_ARTI {
        // Before anything is logged or written: sdwdate-arti starts over, as this process.
        return Err(exec_arti());
    }
    let proxy = cli.proxy.unwrap_or_else(|| default_proxy(&cfg));
    let control = match control_setting(&cli, &cfg) {
        ControlSetting::None => {
            log::warn!(target: "sdwdate",
                "CONTROL_PORT=none: answers are judged WITHOUT Tor's consensus window; \
                 time sources that agree on a lie are believed (weaker than upstream sdwdate)"
            );
            if tor_control::client::is_local(proxy.ip()) {
                log::warn!(target: "sdwdate",
                    "CONTROL_PORT=none: the SOCKS port {proxy} on this host is not checked \
                     against tor's own list either: a local user who binds it first answers \
                     every request"
                );
            }
            None
        }
        ControlSetting::Addr(addr) => Some(ControlPort {
            cookie: cli.control_cookie.clone().or(cfg.control_cookie.clone()),
            timeout: Duration::from_secs(10),
            // A SOCKS port on this host is checked against tor's own list before any fetch
            // (the round's window query asks for it): a local user may have bound it first.
            // Only where the control port is this host's tor too: a workstation's local
            // forwarder to the gateway is not among the gateway tor's listeners.
            verify_socks: (tor_control::client::is_local(proxy.ip()) && control_is_local(&addr))
                .then_some(proxy),
            addr,
        }),
    };
    let clock: Arc<dyn Clock> = if cli.dry_run {
        Arc::new(DryRunClock)
    } else {
        Arc::new(SystemClock)
    };
    if status.writes != Writes::All {
        log::info!(target: "sdwdate",
            "dry run: {} in {}",
            if status.writes == Writes::StatusOnly {
                "only the status written (it says dry run), no success, fail or replay time"
            } else {
                "nothing written (the directory is missing or not this user's)"
            },
            status.run_dir.display()
        );
    }
    status
        .init()
        .with_context(|| format!("cannot create {}", status.run_dir.display()))?;
    if kind == TransportKind::Socks {
        if let Some(f) = cli.arti_config.as_ref().or(cfg.arti_config.as_ref()) {
            log::warn!(target: "sdwdate", "{} is not used: the transport is socks", f.display());
        }
    }
    let timeout = Duration::from_secs(cli.timeout);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = match kind {
        TransportKind::Socks => {
            log::info!(target: "sdwdate",
                "transport socks ({why}): proxy {proxy}, timeout {} s{}",
                cli.timeout,
                if cli.dry_run { ", dry run" } else { "" }
            );
            let transport = Socks { proxy, timeout };
            rt.block_on(drive(&cli, cfg, transport, clock, status, control))?
        }
        // Only sdwdate-arti gets here with arti (sdwdate exec'd it above); the constant
        // keeps every arti call out of the SOCKS binary.
        TransportKind::Arti if !crate::WITH_ARTI => return Err(exec_arti()),
        TransportKind::Arti => {
            #[cfg(feature = "arti")]
            if let Some(extra) = cli.arti_config.as_ref().or(cfg.arti_config.as_ref()) {
                if let Err(e) = arti::config(&cli.state_dir, Some(extra)) {
                    eprintln!("sdwdate: {e}");
                    return Ok(config_error(&status, &e));
                }
            }
            run_arti(&cli, cfg, why, clock, status, &rt)?
        }
    };
    Ok(match result {
        Some(RoundResult::Success { offset, .. }) => {
            println!("sdwdate: success, offset {offset:+.3} s");
            ExitCode::SUCCESS
        }
        Some(RoundResult::Failed(why)) => {
            println!("sdwdate: failed: {why}");
            ExitCode::from(1)
        }
        None => ExitCode::SUCCESS,
    })
}

#[cfg(not(feature = "arti"))]
fn run_arti(
    _cli: &Cli,
    _cfg: Config,
    _why: &str,
    _clock: Arc<dyn Clock>,
    _status: StatusDir,
    _rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Option<RoundResult>> {
    bail!("the arti transport was asked for, but this sdwdate was built without arti (SOCKS only)")
}

#[cfg(feature = "arti")]
fn run_arti(
    cli: &Cli,
    cfg: Config,
    why: &str,
    clock: Arc<dyn Clock>,
    status: StatusDir,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Option<RoundResult>> {
    let timeout = Duration::from_secs(cli.timeout);
    let extra = cli.arti_config.clone().or(cfg.arti_config.clone());
    // A dry run keeps arti's state in the state directory only if that is this user's (a
    // test's own): root testing beside the daemon must not leave root-owned files in
    // /var/lib/sdwdate, which the daemon (user sdwdate) could then not write.
    let scratch = if cli.dry_run && !owned_by_me(&cli.state_dir) {
        Some(scratch_dir()?)
    } else {
        None
    };
    let state = scratch.clone().unwrap_or_else(|| cli.state_dir.clone());
    if let Some(s) = &scratch {
        log::info!(target: "sdwdate",
            "dry run: arti's state in {} (a fresh bootstrap; {} is not this user's)",
            s.display(),
            cli.state_dir.display()
        );
    }
    let result = arti_round(cli, cfg, why, clock, status, rt, &state, extra, timeout);
    if let Some(s) = scratch {
        let _ = std::fs::remove_dir_all(s);
    }
    result
}

/// A new private directory under $TMPDIR, a random name made here (never one that someone
/// else made first: creating it fails then).
#[cfg(feature = "arti")]
fn scratch_dir() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("sdwdate-dry-run-{:016x}", rand::random::<u64>()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// The directory exists and belongs to this process's user.
#[cfg(feature = "arti")]
fn owned_by_me(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw())
}

#[cfg(feature = "arti")]
#[allow(clippy::too_many_arguments)]
fn arti_round(
    cli: &Cli,
    cfg: Config,
    why: &str,
    clock: Arc<dyn Clock>,
    status: StatusDir,
    rt: &tokio::runtime::Runtime,
    state: &Path,
    extra: Option<PathBuf>,
    timeout: Duration,
) -> anyhow::Result<Option<RoundResult>> {
    let dir = arti::prepare_state(state)?;
    let arti_cfg = arti::config(state, extra.as_deref())?;
    log::info!(target: "sdwdate",
        "transport arti ({why}): state in {}{}, timeout {} s{}",
        dir.display(),
        extra
            .as_ref()
            .map(|f| format!(", settings from {}", f.display()))
            .unwrap_or_default(),
        cli.timeout,
        if cli.dry_run { ", dry run" } else { "" }
    );
    if cli.control_port.is_some() || cfg.control_port.is_some() {
        log::warn!(target: "sdwdate", "CONTROL_PORT is not used: the arti transport brings its own consensus");
    }
    rt.block_on(async {
        // arti refuses a state it cannot read (a corrupt directory cache: "Error setting up
        // the directory manager"); the unit would restart into the same error forever. Moved
        // aside, with a warning, and arti starts afresh; a second failure is an error. Never
        // the daemon's own state by a dry run, and at most once an hour (an error that is not
        // the state's would otherwise leave a new copy every restart).
        let daemons = state == Path::new("/var/lib/sdwdate");
        let transport = match Arti::new(arti_cfg, timeout) {
            Ok(t) => t,
            Err(e) if (cli.dry_run && daemons) || arti::moved_aside_within(state, 3600) => {
                return Err(e.into())
            }
            Err(e) => {
                arti::move_aside(state, &format!("unusable for arti ({e})"))?;
                arti::prepare_state(state)?;
                Arti::new(arti::config(state, extra.as_deref())?, timeout)?
            }
        };
        // A control port belongs to a tor daemon; arti brings its own consensus.
        drive(cli, cfg, transport, clock, status, None).await
    })
}

/// Runs the daemon (or one round) until it ends or a signal arrives (`None`).
async fn drive<T: Transport>(
    cli: &Cli,
    cfg: Config,
    transport: T,
    clock: Arc<dyn Clock>,
    status: StatusDir,
    control: Option<ControlPort>,
) -> anyhow::Result<Option<RoundResult>> {
    let stop = status.clone();
    if !cli.once {
        if let Err(e) = status.started() {
            log::error!(target: "sdwdate", "cannot write {}: {e}", status.run_dir.display());
        }
    }
    let mut daemon = Daemon::new(cfg, transport, clock, status, os_rng());
    daemon.control = control;
    daemon.consensus_wait = Duration::from_secs(cli.consensus_wait);
    daemon.hedge_after = Duration::from_secs(cli.hedge_after);
    daemon.sleep_divisor = cli.soak_sleep_divisor;
    daemon.minimum_files = vec![
        "/etc/minimum-unixtime".into(),
        "/usr/local/etc/minimum-unixtime".into(),
    ];
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = tokio::select! {
        r = daemon.run(cli.once) => Some(r),
        _ = term.recv() => None,
        _ = tokio::signal::ctrl_c() => None,
    };
    if result.is_none() && !cli.once {
        if let Err(e) =
            stop.stopped("Not running: sdwdate was stopped. The clock is not kept right.")
        {
            log::error!(target: "sdwdate", "cannot write {}: {e}", stop.run_dir.display());
        }
    }
    Ok(result)
}
