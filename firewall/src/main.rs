//! `anon-firewall`: thin CLI over the library. Every failure of `apply` leaves the host locked
//! down; see the man page (`anon-firewall --man`) for exit codes.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anon_cli::{Program, UsageError};
use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};

use anon_firewall::apply::Reason;
use anon_firewall::{Host, Mode, Role, Ruleset};

static PROGRAM: Program = Program {
    name: "anon-firewall",
    section: "8",
    examples: "  anon-firewall apply                      load the rules for this host's role
  anon-firewall dry-run --role gateway --format nft
  anon-firewall check-config --config-dir /etc/anon-firewall.d
  anon-firewall status                     is the ruleset loaded? did the last apply fail?
  systemctl stop anon-firewall anon-firewall-timesync.path
  anon-firewall unload --yes-unfiltered    DANGEROUS: delete our rules, the host is unfiltered",
    notes: "The role comes from upstream's marker files (/usr/share/anon-gw-base-files/gateway,
/usr/share/anon-ws-base-files/workstation) when one exists; `role` in the config or --role
must agree with it (a contradiction is an error and, for apply, lockdown). Without a marker,
--role or `role` decides.",
    exit_codes: &[
        (
            0,
            "success (status: ruleset loaded and the last apply succeeded)",
        ),
        (
            1,
            "error; after a failed apply the host is in lockdown (all but loopback dropped)",
        ),
        (
            3,
            "status: our ruleset is not loaded (never applied, or removed by `unload`)",
        ),
    ],
    error_code: 1,
    info_targets: &["anon_firewall"],
};

#[derive(Debug, Parser)]
#[command(
    name = "anon-firewall",
    version,
    about = "Fail-closed nftables firewall for Whonix gateways and workstations"
)]
struct Cli {
    /// Directory of *.toml config files, read in lexical order.
    #[arg(long, global = true, default_value = "/etc/anon-firewall.d")]
    config_dir: PathBuf,
    /// Where state and failed.status are written.
    #[arg(long, global = true, default_value = "/run/anon-firewall")]
    run_dir: PathBuf,
    /// sdwdate's status directory (first_success switches timesync-fail-closed to full).
    #[arg(long, global = true, default_value = "/run/sdwdate")]
    sdwdate_run_dir: PathBuf,
    /// The nft program.
    #[arg(long, global = true, default_value = "nft")]
    nft: PathBuf,
    /// Upstream's gateway marker file. Tests only: any other path is refused unless
    /// ANON_FIREWALL_TEST_MARKERS=1 is set (see `test_markers_allowed`).
    #[arg(long, global = true, default_value = anon_firewall::apply::GATEWAY_MARKER, hide = true)]
    gateway_marker: PathBuf,
    /// Upstream's workstation marker file. Tests only, as --gateway-marker.
    #[arg(long, global = true, default_value = anon_firewall::apply::WORKSTATION_MARKER, hide = true)]
    workstation_marker: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build and load the ruleset in one transaction; on any error load the lockdown ruleset.
    Apply {
        #[arg(long)]
        role: Option<Role>,
    },
    /// Print the ruleset that `apply` would load; loads nothing.
    DryRun {
        #[arg(long)]
        role: Option<Role>,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Validate the configuration only.
    CheckConfig {
        #[arg(long)]
        role: Option<Role>,
    },
    /// Report whether our ruleset is loaded and whether the last apply failed.
    Status,
    /// Load the lockdown ruleset now (drop everything but loopback).
    Lockdown {
        /// For ExecStopPost= and OnFailure= units: do nothing unless systemd's $SERVICE_RESULT
        /// (or $MONITOR_SERVICE_RESULT) says the unit failed; a reason already in
        /// failed.status is kept first.
        #[arg(long)]
        if_service_failed: bool,
    },
    /// DANGEROUS: delete our nft table; this host is then not filtered by anon-firewall at all.
    ///
    /// For package removal, to leave the host in a known state on purpose. Other nft tables
    /// are left alone. Refused without --yes-unfiltered. Afterwards `status` says `unloaded`
    /// and exits 3.
    ///
    /// Stop the service first (`systemctl stop anon-firewall anon-firewall-timesync.path`):
    /// while anon-firewall.service is active, the network managers' gate shipped with the
    /// package (it checks `systemctl is-active anon-firewall.service`) still treats this host
    /// as protected, and the path unit would load the rules again. A stopped service with
    /// the `unloaded` state keeps the network managers from starting, as after a failure.
    Unload {
        /// Confirms that this host is to be left unfiltered by anon-firewall.
        #[arg(long, required = true)]
        yes_unfiltered: bool,
    },
    /// Apply the current ruleset (timesync-fail-closed until sdwdate's first success), wait for
    /// that success, then apply the full ruleset. Any error or the timeout means lockdown.
    Watch {
        #[arg(long)]
        role: Option<Role>,
        /// Give up after this many seconds (default: wait forever).
        #[arg(long)]
        timeout: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Nft,
}

/// The environment variable that lets --gateway-marker / --workstation-marker name other files.
const TEST_MARKERS_ENV: &str = "ANON_FIREWALL_TEST_MARKERS";

/// The validated options: the host's paths, checked once.
///
/// The hidden marker flags may point anywhere but upstream's marker files only in the tests.
/// The markers decide the role (a gateway must never get the workstation rules, which let
/// every process out). A flag that moves them would let a stray or malicious command line
/// (`--gateway-marker /nonexistent apply --role workstation`) bypass that on a production
/// host, so the flags exist only for the tests, which set ANON_FIREWALL_TEST_MARKERS=1; no
/// unit or script of the package sets it.
fn host(cli: Cli) -> Result<(Host, Cmd), UsageError> {
    use anon_firewall::apply::{GATEWAY_MARKER, WORKSTATION_MARKER};
    let moved = cli.gateway_marker.as_os_str() != GATEWAY_MARKER
        || cli.workstation_marker.as_os_str() != WORKSTATION_MARKER;
    if moved && std::env::var_os(TEST_MARKERS_ENV).is_none_or(|v| v != "1") {
        return Err(UsageError(format!(
            "--gateway-marker and --workstation-marker are for tests only (they need \
             {TEST_MARKERS_ENV}=1); the role markers are {GATEWAY_MARKER} and {WORKSTATION_MARKER}"
        )));
    }
    let host = Host {
        config_dir: cli.config_dir,
        run_dir: cli.run_dir,
        sdwdate_run_dir: cli.sdwdate_run_dir,
        nft: cli.nft,
        gateway_marker: cli.gateway_marker,
        workstation_marker: cli.workstation_marker,
    };
    Ok((host, cli.cmd))
}

fn main() -> ExitCode {
    anon_cli::main(&PROGRAM, run)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (host, cmd) = host(cli)?;
    if matches!(cmd, Cmd::Apply { .. } | Cmd::Watch { .. }) {
        // A crash half-way must not leave the host open either.
        let h = host.clone();
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default_hook(info);
            h.fail_closed(&format!("anon-firewall crashed: {info}"), Reason::Replace);
        }));
    }
    execute(cmd, &host)
}

fn execute(cmd: Cmd, host: &Host) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Apply { role } => {
            let (role, mode) = host.apply(role)?;
            println!("anon-firewall: {role} ruleset loaded (mode {mode})");
        }
        Cmd::DryRun { role, format } => {
            let plan = host.plan(role)?;
            let rs = Ruleset::build(&plan.config, plan.role, &plan.facts);
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&rs.nftables)?),
                Format::Nft => print!("{}", host.render_nft(&rs.nftables)?),
            }
        }
        Cmd::CheckConfig { role } => {
            let plan = host.plan(role)?;
            println!(
                "anon-firewall: configuration OK (role {}, mode {})",
                plan.role, plan.config.mode
            );
        }
        Cmd::Status => {
            let st = host.status();
            println!(
                "state: {}",
                st.recorded.as_deref().unwrap_or("never applied")
            );
            if let Some(f) = &st.failed {
                println!("failed: {f}");
            }
            let loaded = match st.loaded {
                Some(true) => "yes",
                Some(false) => "no",
                None => "unknown (cannot run nft)",
            };
            println!("loaded: {loaded}");
            return Ok(match (st.loaded, &st.failed) {
                (Some(true), None) => ExitCode::SUCCESS,
                (Some(true), Some(_)) => ExitCode::from(1),
                _ => ExitCode::from(3),
            });
        }
        Cmd::Lockdown { if_service_failed } => {
            // ExecStopPost= gets SERVICE_RESULT; an OnFailure= unit (anon-firewall-lockdown)
            // gets the failed unit's as MONITOR_SERVICE_RESULT.
            let result = std::env::var("SERVICE_RESULT")
                .or_else(|_| std::env::var("MONITOR_SERVICE_RESULT"))
                .unwrap_or_default();
            if if_service_failed && result == "success" {
                return Ok(ExitCode::SUCCESS);
            }
            if if_service_failed {
                let why = format!("anon-firewall.service ended with result `{result}`");
                host.fail_closed(&why, Reason::KeepFirst);
            } else {
                host.fail_closed("lockdown requested by the administrator", Reason::Replace);
            }
            println!("anon-firewall: lockdown");
        }
        Cmd::Unload { yes_unfiltered } => {
            // clap requires the flag; this keeps it required if that ever changes.
            if !yes_unfiltered {
                bail!("unload needs --yes-unfiltered");
            }
            host.unload()?;
            println!(
                "anon-firewall: table inet {} deleted; this host is NOT filtered by anon-firewall",
                anon_firewall::ruleset::TABLE
            );
            eprintln!(
                "anon-firewall: warning: if anon-firewall.service is still active, the network \
                 managers still treat this host as protected and anon-firewall-timesync.path may \
                 load the rules again; run `systemctl stop anon-firewall \
                 anon-firewall-timesync.path` (and disable them) first"
            );
        }
        Cmd::Watch {
            role: cli_role,
            timeout,
        } => {
            let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t));
            // What the host should have now, before waiting: the timesync ruleset until
            // sdwdate's first success. `apply` locks down itself on any error.
            let (role, mode) = host.apply(cli_role)?;
            println!("anon-firewall: {role} ruleset loaded (mode {mode})");
            if mode == Mode::Full {
                return Ok(ExitCode::SUCCESS);
            }
            while !host.time_synced() {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let why = format!(
                        "watch: timed out waiting for {}",
                        host.sdwdate_run_dir.join("first_success").display()
                    );
                    host.fail_closed(&why, Reason::Replace);
                    bail!("{why}; locked down");
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            let (role, mode) = host.apply(cli_role)?;
            println!("anon-firewall: {role} ruleset loaded (mode {mode})");
        }
    }
    Ok(ExitCode::SUCCESS)
}
