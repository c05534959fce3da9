//! The shell: reads the host (config, role markers, users, sdwdate state), loads rules with one
//! `nft -j -f -` transaction, and fails closed.
//!
//! Fail-closed means: whatever goes wrong between reading the config and the kernel accepting
//! the new rules, the host ends up in [`lockdown`](crate::ruleset::lockdown) (drop all but
//! loopback) and `failed.status` names the cause. If even `nft` cannot be run, every interface
//! but loopback is set down, which stops traffic as surely as a drop policy.
//!
//! After each load the table is listed back (`nft -j list table`) and its shape recorded in
//! `loaded.json` beside `state`, so that `status` and `check --repair` notice rules another
//! tool removed or opened ([`loaded`]). Every change of the rules holds the run directory's
//! lock ([`lock`]): the unit, the path unit, the timer and an administrator take turns.

pub mod loaded;
pub mod lock;

use std::ffi::CStr;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use log::{error, info, warn};
use nftables::helper::NftablesError;
use nftables::schema::Nftables;
use thiserror::Error;

use self::loaded::{Difference, Loaded};
use self::lock::{LockError, RunLock};

use crate::config::{Config, ConfigError, Mode, Role, User, UserRef};
use crate::ruleset::{self, Facts, Ruleset};
use crate::validate::{self, Markers, Uids, ValidationError};

/// Upstream's role markers, shipped by anon-gw-base-files / anon-ws-base-files.
pub const GATEWAY_MARKER: &str = "/usr/share/anon-gw-base-files/gateway";
pub const WORKSTATION_MARKER: &str = "/usr/share/anon-ws-base-files/workstation";

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    HostNetwork(#[from] crate::hostnet::Mismatch),
    #[error("{at}: user `{user}` does not exist on this host (hint: install its package or write a numeric uid)")]
    UnknownUser { at: String, user: String },
    #[error("nft rejected the ruleset: {0}")]
    Nft(#[from] NftError),
    /// `check-config`: nft's check mode refused the ruleset (nothing was loaded).
    #[error(
        "nft refused the ruleset built from this configuration (check mode, nothing was \
         loaded): {0}"
    )]
    CheckRefused(NftError),
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The table just loaded could not be listed back and recorded: `status` could not tell
    /// a tampered table from ours.
    #[error("cannot record the rules just loaded: {0}")]
    Record(String),
    /// The kernel's table right after a load is not what the load meant (a chain's policy or
    /// rules): the rules cannot be trusted.
    #[error("the kernel's table is not what was just loaded: {0}")]
    NotAsLoaded(String),
    #[error("{0} needs CAP_NET_ADMIN (run it as root)")]
    NotPrivileged(&'static str),
    #[error("cannot render the ruleset: {0}")]
    Render(#[from] RenderError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why [`Host::render_nft`] could not render a ruleset.
#[derive(Debug, Error)]
pub enum RenderError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot create a private network namespace ({0}); `--format nft` needs root")]
    Namespace(nix::errno::Errno),
    #[error("{0}")]
    Load(NftablesError),
    #[error("cannot run {}: {source}", nft.display())]
    Run {
        nft: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `nft list table` failed; what it printed on stderr.
    #[error("{stderr}")]
    List { stderr: String },
    #[error("render thread panicked")]
    Panicked,
}

/// Running `nft` failed.
#[derive(Debug, Error)]
pub enum NftError {
    #[error("cannot run {}: {source}", nft.display())]
    Run {
        nft: PathBuf,
        #[source]
        source: io::Error,
    },
    /// nft ran and exited non-zero; what it said on stderr.
    #[error("`{} {args}` failed: {}", nft.display(), stderr.trim())]
    Failed {
        nft: PathBuf,
        args: String,
        stderr: String,
    },
    #[error("`{} {args}` printed what is not nft's JSON: {source}", nft.display())]
    Json {
        nft: PathBuf,
        args: String,
        #[source]
        source: loaded::ParseError,
    },
}

/// How long a change of the rules waits for another one by default (`--lock-timeout`).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// The record of what was loaded, beside `state`.
pub const LOADED_FILE: &str = "loaded.json";
/// The transaction `apply` loaded, until the first `status` or `check` lists the table and
/// records it as [`LOADED_FILE`].
pub const BATCH_FILE: &str = "loaded-batch.json";

/// Paths and programs of the host; overridable for tests and unusual systems.
#[derive(Debug, Clone)]
pub struct Host {
    pub config_dir: PathBuf,
    pub run_dir: PathBuf,
    pub sdwdate_run_dir: PathBuf,
    pub nft: PathBuf,
    pub gateway_marker: PathBuf,
    pub workstation_marker: PathBuf,
    /// How long a change of the rules waits for another anon-firewall holding the lock.
    pub lock_timeout: Duration,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            config_dir: "/etc/anon-firewall.d".into(),
            run_dir: "/run/anon-firewall".into(),
            sdwdate_run_dir: "/run/sdwdate".into(),
            nft: "nft".into(),
            gateway_marker: GATEWAY_MARKER.into(),
            workstation_marker: WORKSTATION_MARKER.into(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

/// Whether this process may talk to nftables: CAP_NET_ADMIN in its effective set
/// (`/proc/self/status`). `None` when that cannot be read.
pub fn has_net_admin() -> Option<bool> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    // capability(7): CAP_NET_ADMIN is capability number 12.
    const CAP_NET_ADMIN: u32 = 12;
    Some(caps & (1 << CAP_NET_ADMIN) != 0)
}

/// What nft's check mode said about a ruleset (`check-config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NftCheck {
    /// `nft -c` accepted it (nothing was loaded).
    Passed,
    /// Not checked, and why (this process lacks CAP_NET_ADMIN).
    Skipped(String),
}

/// The uid of `u`, the value of `key` in `cfg` (`key` names a compiled-in default in the
/// error, e.g. a missing `sdwdate` user).
fn resolve_user(cfg: &Config, u: &User, key: &str) -> Result<u32, ApplyError> {
    match &u.user {
        UserRef::Uid(uid) => Ok(*uid),
        UserRef::Name(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(pw)) => Ok(pw.uid.as_raw()),
            _ => Err(ApplyError::UnknownUser {
                at: u
                    .loc
                    .as_ref()
                    .map_or_else(|| cfg.at(key), ToString::to_string),
                user: name.clone(),
            }),
        },
    }
}

/// Everything needed to build: the merged config, the role and the host facts.
#[derive(Debug)]
pub struct Plan {
    pub config: Config,
    pub role: Role,
    pub facts: Facts,
}

impl Host {
    /// Which role marker files exist.
    pub fn markers(&self) -> Markers {
        Markers {
            gateway: self.gateway_marker.exists(),
            workstation: self.workstation_marker.exists(),
        }
    }

    /// Reads config, role and facts, and runs the validation pass over them: a config that
    /// would widen what the role allows is an error here, like a syntax error. Users are
    /// resolved only where the role and mode use them.
    pub fn plan(&self, cli_role: Option<Role>) -> Result<Plan, ApplyError> {
        let config = Config::load_dir(&self.config_dir)?;
        let role = validate::role(cli_role, &config, self.markers())?;
        validate::config(&config, role)?;
        let mut uids = Uids::default();
        if role == Role::Gateway {
            uids.tor = Some(resolve_user(&config, &config.tor_user, "tor_user")?);
            uids.no_nat = config
                .no_nat_users
                .iter()
                .map(|u| resolve_user(&config, u, "no_nat_users"))
                .collect::<Result<_, _>>()?;
            if config.vpn_firewall {
                uids.vpn = config
                    .vpn_user
                    .as_ref()
                    .map(|u| resolve_user(&config, u, "vpn_user"))
                    .transpose()?;
            }
        }
        if validate::needs_sdwdate_uid(&config, role) {
            uids.sdwdate = Some(resolve_user(&config, &config.sdwdate_user, "sdwdate_user")?);
        }
        validate::users(&config, &uids)?;
        let facts = Facts {
            tor_uid: uids.tor.unwrap_or(0),
            no_nat_uids: uids.no_nat,
            sdwdate_uid: uids.sdwdate,
            vpn_uid: uids.vpn,
            time_synced: self.time_synced(),
        };
        Ok(Plan {
            config,
            role,
            facts,
        })
    }

    /// Refuses a host whose addresses and default routes contradict the role's config
    /// ([`crate::hostnet`]): a "workstation" whose default route is not via the gateway, a
    /// gateway with swapped interfaces. `apply` and `check-config` run it; `dry-run` does not,
    /// so the rules for a role can be printed on any machine.
    pub fn check_network(&self, plan: &Plan) -> Result<(), ApplyError> {
        crate::hostnet::check(&plan.config, plan.role, &crate::hostnet::read())?;
        Ok(())
    }

    /// sdwdate's marker; upstream also accepts `success`.
    pub fn time_synced(&self) -> bool {
        self.sdwdate_run_dir.join("first_success").exists()
            || self.sdwdate_run_dir.join("success").exists()
    }

    /// Runs `nft ARGS`, with `input` on its stdin; its stdout, or its stderr in the error.
    fn nft(&self, args: &[&str], input: Option<&str>) -> Result<String, NftError> {
        let run = |source| NftError::Run {
            nft: self.nft.clone(),
            source,
        };
        let mut child = Command::new(&self.nft)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(run)?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            // nft reads all of `-f -` before it writes anything: no deadlock on the pipes.
            stdin.write_all(text.as_bytes()).map_err(run)?;
        }
        let out = child.wait_with_output().map_err(run)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(NftError::Failed {
                nft: self.nft.clone(),
                args: args.join(" "),
                stderr: format!(
                    "{} ({})",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    out.status
                ),
            })
        }
    }

    fn load(&self, nftables: &Nftables) -> Result<(), NftError> {
        let json = serde_json::to_string(nftables).expect("the nft schema types serialize");
        self.nft(&["-j", "-f", "-"], Some(&json)).map(drop)
    }

    /// Runs nft's check mode over `nftables` (`nft -c`: the kernel checks the whole
    /// transaction against the current rules and nothing is committed). Skipped, saying why,
    /// when this process lacks CAP_NET_ADMIN: nft cannot talk to the kernel then.
    pub fn nft_check(&self, nftables: &Nftables) -> Result<NftCheck, ApplyError> {
        if has_net_admin() == Some(false) {
            return Ok(NftCheck::Skipped(
                "this process lacks CAP_NET_ADMIN, which nft's check mode needs to ask the \
                 kernel (run check-config as root for it)"
                    .into(),
            ));
        }
        let json = serde_json::to_string(nftables).expect("the nft schema types serialize");
        match self.nft(&["-c", "-j", "-f", "-"], Some(&json)) {
            Ok(_) => Ok(NftCheck::Passed),
            Err(e @ NftError::Failed { .. }) => Err(ApplyError::CheckRefused(e)),
            Err(e) => Err(e.into()),
        }
    }

    /// Our table as the kernel has it now: `None` when it is not there.
    fn read_table(&self) -> Result<Option<Loaded>, NftError> {
        let json = |args: &[&str], source| NftError::Json {
            nft: self.nft.clone(),
            args: args.join(" "),
            source,
        };
        let tables = ["-j", "list", "tables"];
        let ours = |text: &str| loaded::has_table(text).map_err(|e| json(&tables, e));
        if !ours(&self.nft(&tables, None)?)? {
            return Ok(None);
        }
        let table = ["-j", "list", "table", "inet", ruleset::TABLE];
        match self.nft(&table, None) {
            Ok(text) => Loaded::from_nft_json(&text)
                .map(Some)
                .map_err(|e| json(&table, e)),
            // Deleted in between?
            Err(e) => match ours(&self.nft(&tables, None)?)? {
                false => Ok(None),
                true => Err(e),
            },
        }
    }

    /// Lists the table just loaded by `batch`, checks that the kernel has what it loaded
    /// (each chain's policy and number of rules: a policy another tool changed that the load
    /// did not put back would otherwise be recorded as ours) and records its shape in
    /// `loaded.json`.
    fn record_loaded(&self, batch: &Nftables) -> Result<(), ApplyError> {
        let path = self.run_dir.join(LOADED_FILE);
        let table = self
            .read_table()
            .map_err(|e| ApplyError::Record(e.to_string()))?
            .ok_or_else(|| ApplyError::Record("the table is gone already".into()))?;
        let batch = serde_json::to_value(batch).expect("the nft schema types serialize");
        let unlike = loaded::unlike_batch(&batch, &table);
        if !unlike.is_empty() {
            return Err(ApplyError::NotAsLoaded(
                unlike
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        let text = serde_json::to_string(&table).map_err(|e| ApplyError::Record(e.to_string()))?;
        fs::create_dir_all(&self.run_dir)
            .and_then(|()| write_atomic(&path, &text))
            .map_err(|source| ApplyError::Io {
                what: "cannot write",
                path,
                source,
            })
    }

    /// Records the transaction just loaded, for `status` and `check` to hold the kernel's table
    /// against. Listing the table here would cost two more nft runs on every apply (about a
    /// fifth of its time); nft's success already says the kernel took the whole transaction.
    /// The first `status` or `check` (the timer's, within 30 s) compares the table with the
    /// transaction ([`loaded::unlike_batch`]: chains, hooks, policies, rule counts) and, when
    /// they agree, records the listing, against which every later one is compared rule by rule.
    fn record_batch(&self, batch: &Nftables) -> Result<(), ApplyError> {
        let io = |what, path: PathBuf| move |source| ApplyError::Io { what, path, source };
        fs::create_dir_all(&self.run_dir).map_err(io("cannot create", self.run_dir.clone()))?;
        let listed = self.run_dir.join(LOADED_FILE);
        match fs::remove_file(&listed) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io("cannot remove", listed)(e))
            }
            _ => {}
        }
        let path = self.run_dir.join(BATCH_FILE);
        let text = serde_json::to_string(batch).expect("the nft schema types serialize");
        write_atomic(&path, &text).map_err(io("cannot write", path.clone()))
    }

    /// The exclusive lock for a change of the rules, waiting at most `lock_timeout`.
    pub fn lock(&self) -> Result<RunLock, LockError> {
        lock::exclusive(&self.run_dir, self.lock_timeout)
    }

    /// [`apply_locked`](Self::apply_locked) under the lock. Failing to get the lock is an
    /// error like any other: lockdown.
    pub fn apply(&self, cli_role: Option<Role>) -> Result<(Role, Mode), ApplyError> {
        let _lock = match self.lock() {
            Ok(l) => l,
            Err(e) => {
                let e = ApplyError::from(e);
                self.fail_closed(&e.to_string(), Reason::Replace);
                return Err(e);
            }
        };
        self.apply_locked(cli_role)
    }

    /// Plans, builds and loads the full ruleset, and records what the kernel then has. On
    /// any error the host is locked down and `failed.status` written before the error is
    /// returned. The caller holds the lock.
    fn apply_locked(&self, cli_role: Option<Role>) -> Result<(Role, Mode), ApplyError> {
        let result = self.plan(cli_role).and_then(|plan| {
            self.check_network(&plan)?;
            let rs = Ruleset::build(&plan.config, plan.role, &plan.facts);
            self.load(&rs.nftables)?;
            // A host whose state cannot be recorded is broken too: status would lie.
            self.record_batch(&rs.nftables)?;
            self.record_success(plan.role, rs.mode)?;
            Ok((plan.role, rs.mode))
        });
        match result {
            Ok((role, mode)) => {
                info!("loaded {role} ruleset, mode {mode}");
                Ok((role, mode))
            }
            Err(e) => {
                self.fail_closed(&e.to_string(), Reason::Replace);
                Err(e)
            }
        }
    }

    fn record_success(&self, role: Role, mode: Mode) -> Result<(), ApplyError> {
        self.record_state(&format!("{role} {mode}"))
    }

    /// Clears `failed.status` and writes `state`: what is loaded now, on purpose.
    fn record_state(&self, state_line: &str) -> Result<(), ApplyError> {
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| ApplyError::Io { what, path, source }
        };
        fs::create_dir_all(&self.run_dir).map_err(io("cannot create", &self.run_dir))?;
        let failed = self.run_dir.join("failed.status");
        match fs::remove_file(&failed) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io("cannot remove", &failed)(e))
            }
            _ => {}
        }
        let state = self.run_dir.join("state");
        write_atomic(&state, &format!("{state_line}\n")).map_err(io("cannot write", &state))
    }

    /// [`fail_closed`](Self::fail_closed) under the lock (the `lockdown` command, watch's
    /// timeout). A lock that cannot be had does not stop a lockdown: it goes ahead without.
    pub fn lockdown(&self, why: &str, reason: Reason) {
        let _lock = self
            .lock()
            .inspect_err(|e| warn!("locking down without the lock: {e}"))
            .ok();
        self.fail_closed(why, reason);
    }

    /// Loads the lockdown ruleset (or, failing that, takes the links down) and records why.
    /// With [`Reason::KeepFirst`] a reason already in `failed.status` stays first and `why`
    /// is added below it: the stop hook must not hide why the unit failed.
    ///
    /// Takes no lock: it runs inside apply (which holds it) and from the panic hook.
    pub fn fail_closed(&self, why: &str, reason: Reason) {
        // The old record describes rules that are about to go.
        let _ = fs::remove_file(self.run_dir.join(LOADED_FILE));
        let _ = fs::remove_file(self.run_dir.join(BATCH_FILE));
        let lockdown = ruleset::lockdown();
        match self.load(&lockdown) {
            Ok(()) => {
                warn!("lockdown ruleset loaded: all traffic but loopback is dropped");
                match self.record_loaded(&lockdown) {
                    Ok(()) => {}
                    // Not even the lockdown holds: stop traffic the other way.
                    Err(e @ ApplyError::NotAsLoaded(_)) => {
                        error!("{e}; setting every interface but lo down");
                        if let Err(e) = links_down() {
                            error!("cannot set interfaces down: {e}");
                        }
                    }
                    Err(e) => error!("{e}"),
                }
            }
            Err(e) => {
                error!(
                    "cannot load the lockdown ruleset ({e}); setting every interface but lo down"
                );
                if let Err(e) = links_down() {
                    error!("cannot set interfaces down: {e}");
                }
            }
        }
        let failed = self.run_dir.join("failed.status");
        let text = match (reason, fs::read_to_string(&failed)) {
            (Reason::KeepFirst, Ok(first)) if !first.trim().is_empty() => {
                format!("{}\nthen: {why}\n", first.trim_end())
            }
            _ => format!("{why}\n"),
        };
        let written = fs::create_dir_all(&self.run_dir)
            .and_then(|()| write_atomic(&failed, &text))
            .and_then(|()| write_atomic(&self.run_dir.join("state"), "lockdown\n"));
        if let Err(e) = written {
            error!(
                "cannot write {}: {e}",
                self.run_dir.join("failed.status").display()
            );
        }
    }

    /// Removes our table on purpose (`anon-firewall unload`): the host is then unfiltered by
    /// us. Records `unloaded` as the state and clears `failed.status`.
    pub fn unload(&self) -> Result<(), ApplyError> {
        let _lock = self.lock()?;
        self.load(&ruleset::unload())?;
        let _ = fs::remove_file(self.run_dir.join(BATCH_FILE));
        match fs::remove_file(self.run_dir.join(LOADED_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(ApplyError::Io {
                    what: "cannot remove",
                    path: self.run_dir.join(LOADED_FILE),
                    source: e,
                })
            }
            _ => {}
        }
        self.record_state("unloaded")?;
        warn!(
            "table inet {} deleted: this host is no longer filtered by anon-firewall",
            ruleset::TABLE
        );
        Ok(())
    }

    /// What `status` reports: the recorded state, and whether the kernel has what was
    /// loaded. Holds the shared lock (bounded) so that it never sees new rules with the old
    /// record.
    pub fn status(&self) -> Status {
        let _lock = lock::shared(&self.run_dir, self.lock_timeout)
            .inspect_err(|e| warn!("reading the rules without the lock: {e}"))
            .ok();
        self.status_unlocked()
    }

    fn status_unlocked(&self) -> Status {
        let read = |name: &str| {
            fs::read_to_string(self.run_dir.join(name))
                .ok()
                .map(|s| s.trim().to_owned())
        };
        let recorded = read("state");
        let failed = read("failed.status");
        let says_loaded = recorded.as_deref().is_some_and(|s| s != "unloaded");
        let rules = match self.kernel_table() {
            Err(why) => Rules::Unknown(why),
            Ok(None) if says_loaded => Rules::Changed(vec![Difference::TableMissing]),
            Ok(None) => Rules::Absent,
            Ok(Some(now)) => match fs::read_to_string(self.run_dir.join(LOADED_FILE)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.against_batch(&now),
                Err(e) => Rules::Unknown(format!(
                    "cannot read {}: {e}",
                    self.run_dir.join(LOADED_FILE).display()
                )),
                Ok(text) => match serde_json::from_str::<Loaded>(&text) {
                    Err(e) => Rules::Unknown(format!(
                        "cannot read {}: {e}",
                        self.run_dir.join(LOADED_FILE).display()
                    )),
                    Ok(was) => match loaded::compare(&was, Some(&now)) {
                        d if d.is_empty() => Rules::AsLoaded,
                        d => Rules::Changed(d),
                    },
                },
            },
        };
        Status {
            recorded,
            failed,
            rules,
        }
    }

    /// The table `now` held against the transaction `apply` recorded (no listing recorded
    /// yet); when they agree, `now` becomes the record (best effort: a reader that cannot
    /// write the run directory compares with the transaction again next time).
    fn against_batch(&self, now: &Loaded) -> Rules {
        let path = self.run_dir.join(BATCH_FILE);
        let batch = match fs::read_to_string(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Rules::NotRecorded,
            Err(e) => return Rules::Unknown(format!("cannot read {}: {e}", path.display())),
            Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => v,
                Err(e) => return Rules::Unknown(format!("cannot read {}: {e}", path.display())),
            },
        };
        match loaded::unlike_batch(&batch, now) {
            d if d.is_empty() => {
                if let Ok(text) = serde_json::to_string(now) {
                    let _ = write_atomic(&self.run_dir.join(LOADED_FILE), &text);
                }
                Rules::AsLoaded
            }
            d => Rules::Changed(d),
        }
    }

    /// Our table in the kernel, or why that cannot be told (never "absent" for a failure).
    fn kernel_table(&self) -> Result<Option<Loaded>, String> {
        if has_net_admin() == Some(false) {
            return Err(
                "this process lacks CAP_NET_ADMIN, which nft needs to list the kernel's rules \
                 (run it as root)"
                    .into(),
            );
        }
        self.read_table().map_err(|e| e.to_string())
    }

    /// `check --repair`: when the kernel no longer has what was loaded (or that cannot be
    /// told), loads it again from the configuration (apply; on error lockdown), or, when the
    /// recorded state is a lockdown, the lockdown again (never lifting it). Under the lock.
    pub fn repair(&self, cli_role: Option<Role>) -> Result<Repair, ApplyError> {
        if has_net_admin() == Some(false) {
            return Err(ApplyError::NotPrivileged("check --repair"));
        }
        let _lock = match self.lock() {
            Ok(l) => l,
            Err(e) => {
                let e = ApplyError::from(e);
                self.fail_closed(&format!("repair: {e}"), Reason::KeepFirst);
                return Err(e);
            }
        };
        let st = self.status_unlocked();
        let what = match &st.rules {
            Rules::AsLoaded | Rules::NotRecorded => return Ok(Repair::Intact),
            Rules::Absent => return Ok(Repair::NothingLoaded),
            Rules::Changed(d) => d
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            Rules::Unknown(why) => format!("cannot tell whether the rules are intact: {why}"),
        };
        if st.recorded.as_deref() == Some("lockdown") {
            warn!("the rules changed since the lockdown was loaded ({what}); loading it again");
            self.fail_closed(
                &format!("repair: {what}; lockdown loaded again"),
                Reason::KeepFirst,
            );
            return Ok(Repair::Restored {
                what,
                now: "lockdown".into(),
            });
        }
        warn!(
            "the rules changed since they were loaded ({what}); applying the configuration again"
        );
        let (role, mode) = self.apply_locked(cli_role)?;
        Ok(Repair::Restored {
            what,
            now: format!("{role} {mode}"),
        })
    }
}

impl Host {
    /// Renders a ruleset in nft syntax by loading it into a throwaway network namespace that
    /// only a helper thread lives in; nothing touches the host's rules. Needs CAP_SYS_ADMIN.
    pub fn render_nft(&self, nftables: &Nftables) -> Result<String, ApplyError> {
        let nft = self.nft.clone();
        let json = serde_json::to_string(nftables).map_err(RenderError::Json)?;
        let worker = std::thread::spawn(move || -> Result<String, RenderError> {
            // Network namespaces are per thread: only this thread and its children see it.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(RenderError::Namespace)?;
            nftables::helper::apply_ruleset_raw(&json, Some(nft.as_os_str()), &[] as &[&str])
                .map_err(RenderError::Load)?;
            let out = std::process::Command::new(&nft)
                .args(["list", "table", "inet", ruleset::TABLE])
                .output()
                .map_err(|source| RenderError::Run {
                    nft: nft.clone(),
                    source,
                })?;
            if !out.status.success() {
                return Err(RenderError::List {
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        });
        Ok(worker.join().map_err(|_| RenderError::Panicked)??)
    }
}

/// What [`Host::fail_closed`] does with an earlier reason in `failed.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A new failure: its reason replaces the file.
    Replace,
    /// A follow-up (the unit's stop hook): the first reason is kept.
    KeepFirst,
}

/// `anon-firewall status` facts.
#[derive(Debug)]
pub struct Status {
    /// "gateway full", "workstation timesync-fail-closed", "lockdown", "unloaded".
    pub recorded: Option<String>,
    pub failed: Option<String>,
    pub rules: Rules,
}

/// The kernel's table against the record of what was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rules {
    /// Our table is there, as loaded.
    AsLoaded,
    /// Our table is there, but there is no record to compare it with (loaded by an older
    /// anon-firewall, or after `unload` by hand).
    NotRecorded,
    /// Not there, and the state does not say it should be (never applied, or unloaded).
    Absent,
    /// The state says a ruleset is loaded, but the kernel has something else.
    Changed(Vec<Difference>),
    /// Cannot tell (no privilege to list the rules, nft failing), and why.
    Unknown(String),
}

/// What `status` says, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Loaded as recorded, the last apply succeeded: 0.
    Protected = 0,
    /// Loaded as recorded, but the last apply failed (lockdown): 1.
    LockedDown = 1,
    /// Our ruleset is not loaded, on purpose (never applied, unloaded): 3.
    NotLoaded = 3,
    /// Cannot tell: 4.
    Unknown = 4,
    /// The state says loaded, the kernel has something else (deleted, flushed, opened): 5.
    Tampered = 5,
}

impl Status {
    pub fn health(&self) -> Health {
        match (&self.rules, &self.failed) {
            (Rules::Unknown(_), _) => Health::Unknown,
            (Rules::Changed(_), _) => Health::Tampered,
            (Rules::Absent, _) => Health::NotLoaded,
            (_, Some(_)) => Health::LockedDown,
            (_, None) => Health::Protected,
        }
    }
}

/// What `check --repair` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// The kernel has what was loaded: nothing done.
    Intact,
    /// Nothing is recorded as loaded (never applied, unloaded): nothing to repair.
    NothingLoaded,
    /// `what` had changed; `now` is what is loaded again ("gateway full", "lockdown").
    Restored { what: String, now: String },
}

/// Last resort when nft cannot be run: set every interface except loopback down.
pub fn links_down() -> io::Result<()> {
    let sock: OwnedFd = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    let names = nix::net::if_::if_nameindex().map_err(io::Error::from)?;
    let mut first_err = None;
    for iface in names.iter() {
        let name: &CStr = iface.name();
        if name.to_bytes() == b"lo" {
            continue;
        }
        if let Err(e) = set_down(&sock, name) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Sets `name` down with SIOCGIFFLAGS/SIOCSIFFLAGS (neither nix nor std wraps them).
#[allow(unsafe_code)]
fn set_down(sock: &OwnedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.to_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `sock` is an open socket and `req` a valid ifreq with a NUL-terminated name.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union.
    unsafe { req.ifr_ifru.ifru_flags &= !(libc::IFF_UP as libc::c_short) };
    // SAFETY: as above; SIOCSIFFLAGS reads the name and flags from `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Replaces `path` by a new file in one rename: a reader (`status`, scripts, the stop hook and
/// the OnFailure unit running at the same time) sees the old or the new text, never an empty
/// or half-written file. The temporary name is unique per process, so two writers at once
/// cannot rename each other's half-written file.
fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_user_names_file_and_line() {
        let mut c = Config::default();
        c.merge_str(
            Path::new("/etc/anon-firewall.d/50_user.toml"),
            "\ntor_user = \"no-such-user-xyz\"\n",
        )
        .expect("parse");
        let e = resolve_user(&c, &c.tor_user, "tor_user").expect_err("unknown user");
        assert!(
            matches!(&e, ApplyError::UnknownUser { user, .. } if user == "no-such-user-xyz"),
            "{e:?}"
        );
        // The text is the contract: it names the file, line and key to fix.
        assert!(
            e.to_string()
                .starts_with("/etc/anon-firewall.d/50_user.toml:2: key `tor_user`"),
            "{e}"
        );
        let user = |name: &str| User {
            user: UserRef::Name(name.into()),
            loc: None,
        };
        assert_eq!(
            resolve_user(
                &c,
                &User {
                    user: UserRef::Uid(7),
                    loc: None
                },
                "tor_user"
            )
            .ok(),
            Some(7)
        );
        assert_eq!(resolve_user(&c, &user("root"), "tor_user").ok(), Some(0));
        // A compiled-in default user that this host lacks (no sdwdate package) says so, with
        // the key to set.
        let e = resolve_user(&c, &user("no-such-sdwdate-xyz"), "sdwdate_user")
            .expect_err("unknown default user");
        assert!(matches!(&e, ApplyError::UnknownUser { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with(
                "compiled-in default: key `sdwdate_user`: user `no-such-sdwdate-xyz` does not exist"
            ),
            "{e}"
        );
    }
}
