//! `anon-firewall`: thin CLI over the library. Every failure of `apply` leaves the host locked
//! down; see the man page (`anon-firewall --man`) for exit codes.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anon_cli::{Program, UsageError};
use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};

use anon_firewall::apply::{Health, NftCheck, Reason, Repair, Rules, Status};
use anon_firewall::{Host, Mode, Role, Ruleset};

static PROGRAM: Program = Program {
    name: "anon-firewall",
    section: "8",
    examples: "  anon-firewall apply                      load the rules for this host's role
  anon-firewall dry-run --role gateway --format nft
  anon-firewall check-config --config-dir /etc/anon-firewall.d
  anon-firewall status                     is the ruleset loaded as applied? did the last apply fail?
  anon-firewall check --repair             rules deleted or opened by another tool? load them again
  systemctl stop anon-firewall anon-firewall-timesync.path anon-firewall-check.timer
  anon-firewall unload --yes-unfiltered    DANGEROUS: delete our rules, the host is unfiltered",
    notes: "The role comes from upstream's marker files (/usr/share/anon-gw-base-files/gateway,
/usr/share/anon-ws-base-files/workstation) when one exists; `role` in the config or --role
must agree with it (a contradiction is an error and, for apply, lockdown). Without a marker,
--role or `role` decides.

check-config runs everything apply runs but the commit: the same validation, then nft's own
check mode (`nft -c`) over the ruleset. Without CAP_NET_ADMIN (not root) nft cannot ask the
kernel; check-config then says that nft's check was skipped and why, and exits 0 if the rest
passed.

After every load, what the kernel then has is recorded in RUN_DIR/loaded.json; status and
check compare the kernel's table with it (nft's JSON, chain by chain: hook, policy, rules).
anon-firewall-check.timer runs `check --repair` every 30 s: rules another tool deleted,
flushed or opened are loaded again from the configuration (lockdown if that fails; a
lockdown is loaded again as a lockdown).

Changes of the rules (apply, watch, lockdown, unload, check --repair) take turns through an
exclusive lock on RUN_DIR/lock, each waiting at most --lock-timeout seconds.",
    exit_codes: &[
        (
            0,
            "success (status: ruleset loaded as applied and the last apply succeeded; check: \
             intact, or restored by --repair)",
        ),
        (
            1,
            "error; after a failed apply or repair the host is in lockdown (all but loopback \
             dropped); status: loaded, but the last apply failed (lockdown)",
        ),
        (
            3,
            "status, check: our ruleset is not loaded, on purpose (never applied, or removed \
             by `unload`)",
        ),
        (
            4,
            "status, check: cannot tell whether our ruleset is loaded (nft cannot list the \
             rules: not root, or nft failing); never means \"not loaded\"",
        ),
        (
            5,
            "status, check: the state says a ruleset is loaded, but the kernel's table is not \
             it (deleted, a chain flushed or missing, a policy changed); the message names what",
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
    /// How long a change of the rules waits for another anon-firewall changing them (the
    /// unit, the path unit, the timer, an administrator); then it fails (apply: lockdown).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = anon_firewall::apply::DEFAULT_LOCK_TIMEOUT.as_secs())]
    lock_timeout: u64,
    /// sdwdate's status directory (first_success switches timesync-fail-closed to full).
    /// Tests only, as --gateway-marker.
    #[arg(long, global = true, default_value = "/run/sdwdate", hide = true)]
    sdwdate_run_dir: PathBuf,
    /// The nft program. Tests only, as --gateway-marker.
    #[arg(long, global = true, default_value = "nft", hide = true)]
    nft: PathBuf,
    /// Upstream's gateway marker file. Tests only: any other value of the test paths
    /// (--gateway-marker, --workstation-marker, --sdwdate-run-dir, --nft) is refused unless
    /// ANON_FIREWALL_TEST_MARKERS=1 is set (see `host`).
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
    /// Everything apply does but the commit: validate the configuration, build the ruleset
    /// and have nft check it (`nft -c`; skipped, saying so, without CAP_NET_ADMIN).
    CheckConfig {
        #[arg(long)]
        role: Option<Role>,
    },
    /// Report whether our ruleset is loaded as applied and whether the last apply failed.
    Status,
    /// Compare the kernel's table with what was loaded (exit 0, 3, 4 or 5 as status).
    Check {
        /// Load it again when it changed: apply from the configuration (lockdown if that
        /// fails), or the lockdown again if that is what was loaded.
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        role: Option<Role>,
    },
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
    /// Stop the service first (`systemctl stop anon-firewall anon-firewall-timesync.path
    /// anon-firewall-check.timer`): while anon-firewall.service is active, the network
    /// managers' gate shipped with the package (it checks `systemctl is-active
    /// anon-firewall.service`) still treats this host as protected, and the path unit would
    /// load the rules again (the timer's check leaves an `unloaded` host alone). A stopped
    /// service with the `unloaded` state keeps the network managers from starting, as after
    /// a failure.
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

/// The environment variable that lets the test paths (--gateway-marker,
/// --workstation-marker, --sdwdate-run-dir, --nft) name other files. Its name is older than
/// its meaning: it allows all the test paths, not only the markers.
const TEST_MARKERS_ENV: &str = "ANON_FIREWALL_TEST_MARKERS";

/// The validated options: the host's paths, checked once.
///
/// The test paths may point anywhere but the host's own files only in the tests. The
/// markers decide the role (a gateway must never get the workstation rules, which let every
/// process out); sdwdate's directory decides the mode (a directory with a `first_success`
/// opens the full ruleset before the clock is set); `--nft` decides what loads the rules (a
/// script that does nothing and exits 0 would leave the host unfiltered with `state` saying
/// loaded). A stray or malicious command line could use any of them to bypass that on a
/// production host, so the flags exist only for the tests, which set
/// ANON_FIREWALL_TEST_MARKERS=1; no unit or script of the package sets it.
fn host(cli: Cli) -> Result<(Host, Cmd), UsageError> {
    use anon_firewall::apply::{GATEWAY_MARKER, WORKSTATION_MARKER};
    let defaults = Host::default();
    let moved: Vec<&str> = [
        (
            "--gateway-marker",
            cli.gateway_marker != defaults.gateway_marker,
        ),
        (
            "--workstation-marker",
            cli.workstation_marker != defaults.workstation_marker,
        ),
        (
            "--sdwdate-run-dir",
            cli.sdwdate_run_dir != defaults.sdwdate_run_dir,
        ),
        ("--nft", cli.nft != defaults.nft),
    ]
    .into_iter()
    .filter_map(|(flag, moved)| moved.then_some(flag))
    .collect();
    if !moved.is_empty() && std::env::var_os(TEST_MARKERS_ENV).is_none_or(|v| v != "1") {
        return Err(UsageError(format!(
            "{} {} for tests only (they need {TEST_MARKERS_ENV}=1); the role markers are \
             {GATEWAY_MARKER} and {WORKSTATION_MARKER}, sdwdate's directory {}, nft is `{}` \
             from PATH",
            moved.join(", "),
            if moved.len() == 1 { "is" } else { "are" },
            defaults.sdwdate_run_dir.display(),
            defaults.nft.display(),
        )));
    }
    let host = Host {
        config_dir: cli.config_dir,
        run_dir: cli.run_dir,
        sdwdate_run_dir: cli.sdwdate_run_dir,
        nft: cli.nft,
        gateway_marker: cli.gateway_marker,
        workstation_marker: cli.workstation_marker,
        lock_timeout: Duration::from_secs(cli.lock_timeout),
    };
    Ok((host, cli.cmd))
}

/// Prints what `status` found; its exit code.
fn print_status(st: &Status) -> ExitCode {
    println!(
        "state: {}",
        st.recorded.as_deref().unwrap_or("never applied")
    );
    if let Some(f) = &st.failed {
        println!("failed: {f}");
    }
    let (loaded, rules) = match &st.rules {
        Rules::AsLoaded => ("yes", "as loaded".to_owned()),
        Rules::NotRecorded => (
            "yes",
            "not recorded (loaded by an older anon-firewall?): cannot compare".to_owned(),
        ),
        Rules::Absent => ("no", "none".to_owned()),
        Rules::Changed(d) => (
            if d.contains(&anon_firewall::apply::loaded::Difference::TableMissing) {
                "no"
            } else {
                "yes, changed"
            },
            format!(
                "CHANGED since anon-firewall loaded them: {}",
                d.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        Rules::Unknown(why) => ("unknown", format!("cannot tell: {why}")),
    };
    println!("loaded: {loaded}");
    println!("rules: {rules}");
    ExitCode::from(st.health() as u8)
}

fn main() -> ExitCode {
    anon_cli::main(&PROGRAM, run)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (host, cmd) = host(cli)?;
    if matches!(
        cmd,
        Cmd::Apply { .. } | Cmd::Watch { .. } | Cmd::Check { repair: true, .. }
    ) {
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
            // The host's network is judged when the role is this host's (marker or `role`),
            // as apply would; `--role` asks about a config for that role on any machine (the
            // autopkgtests check the shipped configs on a testbed that is neither).
            if role.is_none() {
                host.check_network(&plan)?;
            }
            let rs = Ruleset::build(&plan.config, plan.role, &plan.facts);
            let nft = match host.nft_check(&rs.nftables)? {
                NftCheck::Passed => "nft accepted the ruleset (check mode, nothing loaded)".into(),
                NftCheck::Skipped(why) => {
                    eprintln!("anon-firewall: warning: nft's check was skipped: {why}");
                    format!("nft's check skipped: {why}")
                }
            };
            println!(
                "anon-firewall: configuration OK (role {}, mode {}); {nft}",
                plan.role, rs.mode
            );
        }
        Cmd::Status => return Ok(print_status(&host.status())),
        Cmd::Check {
            repair: false,
            role: _,
        } => {
            let st = host.status();
            let code = print_status(&st);
            // The integrity of the rules only: a lockdown loaded as recorded is intact.
            return Ok(match st.health() {
                Health::LockedDown => ExitCode::SUCCESS,
                _ => code,
            });
        }
        Cmd::Check { repair: true, role } => match host.repair(role)? {
            Repair::Intact => println!("anon-firewall: the rules are as loaded"),
            Repair::NothingLoaded => {
                println!("anon-firewall: no ruleset is recorded as loaded: nothing to repair");
                return Ok(ExitCode::from(Health::NotLoaded as u8));
            }
            Repair::Restored { what, now } => {
                eprintln!("anon-firewall: the rules had changed: {what}");
                println!("anon-firewall: loaded again: {now}");
            }
        },
        Cmd::Lockdown { if_service_failed } => {
            // ExecStopPost= gets SERVICE_RESULT; an OnFailure= unit (anon-firewall-lockdown)
            // gets the failed unit's as MONITOR_SERVICE_RESULT, and its name as MONITOR_UNIT
            // (anon-firewall.service or anon-firewall-check.service).
            let result = std::env::var("SERVICE_RESULT")
                .or_else(|_| std::env::var("MONITOR_SERVICE_RESULT"))
                .unwrap_or_default();
            let unit = std::env::var("MONITOR_UNIT")
                .ok()
                .filter(|u| !u.is_empty() && std::env::var_os("SERVICE_RESULT").is_none())
                .unwrap_or_else(|| "anon-firewall.service".into());
            if if_service_failed && result == "success" {
                return Ok(ExitCode::SUCCESS);
            }
            if if_service_failed {
                let why = format!("{unit} ended with result `{result}`");
                host.lockdown(&why, Reason::KeepFirst);
            } else {
                host.lockdown("lockdown requested by the administrator", Reason::Replace);
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
                 anon-firewall-timesync.path anon-firewall-check.timer` (and disable them) first"
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
                    host.lockdown(&why, Reason::Replace);
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
