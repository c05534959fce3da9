//! The shell: reads the host (config, role markers, users, sdwdate state), loads rules with one
//! `nft -j -f -` transaction, and fails closed.
//!
//! Fail-closed means: whatever goes wrong between reading the config and the kernel accepting
//! the new rules, the host ends up in [`lockdown`](crate::ruleset::lockdown) (drop all but
//! loopback) and `failed.status` names the cause. If even `nft` cannot be run, every interface
//! but loopback is set down, which stops traffic as surely as a drop policy.

use std::ffi::CStr;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use log::{error, info, warn};
use nftables::helper::{apply_ruleset_with_args, NftablesError};
use nftables::schema::Nftables;
use thiserror::Error;

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
    #[error("{at}: user `{user}` does not exist on this host (hint: install its package or write a numeric uid)")]
    UnknownUser { at: String, user: String },
    #[error("nft rejected the ruleset: {0}")]
    Nft(#[from] NftablesError),
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

/// Paths and programs of the host; overridable for tests and unusual systems.
#[derive(Debug, Clone)]
pub struct Host {
    pub config_dir: PathBuf,
    pub run_dir: PathBuf,
    pub sdwdate_run_dir: PathBuf,
    pub nft: PathBuf,
    pub gateway_marker: PathBuf,
    pub workstation_marker: PathBuf,
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
        }
    }
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

    /// sdwdate's marker; upstream also accepts `success`.
    pub fn time_synced(&self) -> bool {
        self.sdwdate_run_dir.join("first_success").exists()
            || self.sdwdate_run_dir.join("success").exists()
    }

    fn load(&self, nftables: &Nftables) -> Result<(), NftablesError> {
        apply_ruleset_with_args(nftables, Some(self.nft.as_os_str()), &[] as &[&str])
    }

    /// Plans, builds and loads the full ruleset. On any error the host is locked down and
    /// `failed.status` written before the error is returned.
    pub fn apply(&self, cli_role: Option<Role>) -> Result<(Role, Mode), ApplyError> {
        let result = self.plan(cli_role).and_then(|plan| {
            let rs = Ruleset::build(&plan.config, plan.role, &plan.facts);
            self.load(&rs.nftables)?;
            // A host whose state cannot be recorded is broken too: status would lie.
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

    /// Loads the lockdown ruleset (or, failing that, takes the links down) and records why.
    /// With [`Reason::KeepFirst`] a reason already in `failed.status` stays first and `why`
    /// is added below it: the stop hook must not hide why the unit failed.
    pub fn fail_closed(&self, why: &str, reason: Reason) {
        match self.load(&ruleset::lockdown()) {
            Ok(()) => warn!("lockdown ruleset loaded: all traffic but loopback is dropped"),
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
        self.load(&ruleset::unload())?;
        self.record_state("unloaded")?;
        warn!(
            "table inet {} deleted: this host is no longer filtered by anon-firewall",
            ruleset::TABLE
        );
        Ok(())
    }

    /// What `status` reports: the recorded state and whether our table is in the kernel.
    pub fn status(&self) -> Status {
        let recorded = fs::read_to_string(self.run_dir.join("state"))
            .ok()
            .map(|s| s.trim().to_owned());
        let failed = fs::read_to_string(self.run_dir.join("failed.status"))
            .ok()
            .map(|s| s.trim().to_owned());
        let loaded = std::process::Command::new(&self.nft)
            .args(["list", "table", "inet", ruleset::TABLE])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .ok();
        Status {
            recorded,
            failed,
            loaded,
        }
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
    /// "gateway full", "workstation timesync-fail-closed", "lockdown".
    pub recorded: Option<String>,
    pub failed: Option<String>,
    /// `None` when nft could not be run.
    pub loaded: Option<bool>,
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
