//! The files other tools read, byte-compatible with upstream sdwdate:
//! `/run/sdwdate/{status,msg,success,first_success,fail,sleep_long}` and the replay-protection
//! file. Names and formats are the shared contract (`tor_control::run_dir`).

use std::io;
use std::path::{Path, PathBuf};

pub use tor_control::run_dir::{status_json, Icon};
use tor_control::run_dir::{FAIL, FIRST_SUCCESS, MSG, PID, STATUS, SUCCESS};

/// Upstream's request to step (not slew) on the next success: `sdwdate-clock-jump` creates it
/// (sdwdate-gui's "Restart sdwdate" runs that), sdwdate removes it after the step.
pub const CLOCK_JUMP: &str = "clock_jump_do_once";
/// Exists while sdwdate sleeps between rounds (as upstream; no known reader).
pub const SLEEP_LONG: &str = "sleep_long";

/// What this process writes into sdwdate's directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// The daemon: every file of the contract and the replay-protection time.
    All,
    /// A dry run in a run directory of this user's where no daemon runs: `status` and `msg`
    /// only (they say "dry run"); never `success`, `first_success`, `fail` or the replay-protection time, which
    /// anon-firewall, timesync-check, systemcheck and the next boot act on.
    StatusOnly,
    /// A dry run where the run directory is missing or another user's (root testing beside
    /// the daemon): nothing at all, so that no root-owned file lands in sdwdate's directories.
    Nothing,
}

#[derive(Debug, Clone)]
pub struct StatusDir {
    pub run_dir: PathBuf,
    pub state_dir: PathBuf,
    pub writes: Writes,
}

fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// In place, as upstream's `open(path, "w")`: sdwdate-gui watches `status` itself with
/// inotify (IN_MODIFY) and loses it for good when the file is replaced by a rename.
fn write_in_place(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(data)
}

fn touch(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
}

fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl StatusDir {
    /// The daemon's: writes everything.
    pub fn new(run_dir: PathBuf, state_dir: PathBuf) -> StatusDir {
        StatusDir {
            run_dir,
            state_dir,
            writes: Writes::All,
        }
    }

    /// A dry run's: `status` and `msg` if the run directory exists and belongs to this
    /// process's user, else nothing.
    pub fn dry_run(run_dir: PathBuf, state_dir: PathBuf) -> StatusDir {
        use std::os::unix::fs::MetadataExt;
        let ours = std::fs::metadata(&run_dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw());
        let mut s = StatusDir {
            run_dir,
            state_dir,
            writes: Writes::Nothing,
        };
        // Never over a running daemon's status (a dry run as its own user): sdwdate-gui
        // would show the dry run's success instead of the daemon's last round.
        if ours && !s.daemon_running() {
            s.writes = Writes::StatusOnly;
        }
        s
    }

    fn all(&self) -> bool {
        self.writes == Writes::All
    }

    pub fn init(&self) -> io::Result<()> {
        if !self.all() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.run_dir)
    }

    /// The daemon runs: its pid in `pid`, for readers to tell a stopped or crashed sdwdate
    /// from a running one.
    pub fn started(&self) -> io::Result<()> {
        if !self.all() {
            return Ok(());
        }
        write_atomic(
            &self.run_dir.join(PID),
            format!("{}\n", std::process::id()).as_bytes(),
        )
    }

    /// The daemon is gone (a signal, or systemd's stop hook after any exit): `status` says
    /// so and `pid` goes. `success` and `first_success` stay: the clock was set, and the
    /// firewall must not close again; readers see that nothing keeps it right any more.
    pub fn stopped(&self, message: &str) -> io::Result<()> {
        if !self.all() {
            return Ok(());
        }
        // The pid first: a status that cannot be written must not leave it behind.
        let gone = remove(&self.run_dir.join(PID));
        self.status(Icon::Error, message).and(gone)
    }

    /// Whether a live daemon has its pid here (as readers judge it).
    pub fn daemon_running(&self) -> bool {
        tor_control::client::read_run_dir(&self.run_dir).running
    }

    /// The message in `msg` and whether `status` has the error icon (for the stop hook,
    /// which keeps a configuration error's message).
    pub fn last_error(&self) -> Option<String> {
        let status = std::fs::read_to_string(self.run_dir.join(STATUS)).ok()?;
        if !status.contains(r#""icon": "error""#) {
            return None;
        }
        std::fs::read_to_string(self.run_dir.join(MSG))
            .ok()
            .map(|m| m.trim().to_owned())
    }

    pub fn status(&self, icon: Icon, message: &str) -> io::Result<()> {
        if self.writes == Writes::Nothing {
            return Ok(());
        }
        write_in_place(
            &self.run_dir.join(STATUS),
            status_json(icon, message).as_bytes(),
        )?;
        write_in_place(&self.run_dir.join(MSG), message.as_bytes())
    }

    pub fn first_success_exists(&self) -> bool {
        self.run_dir.join(FIRST_SUCCESS).exists()
    }

    /// `sdwdate-clock-jump` asked for a step on the next success.
    pub fn clock_jump_requested(&self) -> bool {
        self.run_dir.join(CLOCK_JUMP).exists()
    }

    /// A round begins: an old `fail` no longer describes the present, and the daemon is no
    /// longer sleeping (as upstream).
    pub fn round_started(&self) -> io::Result<()> {
        if !self.all() {
            return Ok(());
        }
        remove(&self.run_dir.join(SLEEP_LONG))?;
        remove(&self.run_dir.join(FAIL))
    }

    /// Created directly (IN_CREATE): whonix-firewall's restarter and anon-firewall's path
    /// unit wait for `first_success` to be created, not moved into place.
    pub fn succeeded(&self) -> io::Result<()> {
        if !self.all() {
            return Ok(());
        }
        touch(&self.run_dir.join(FIRST_SUCCESS))?;
        touch(&self.run_dir.join(SUCCESS))?;
        remove(&self.run_dir.join(CLOCK_JUMP))?;
        remove(&self.run_dir.join(FAIL))
    }

    /// Unlike upstream, a failure also removes `success`, so that readers never see both.
    pub fn failed(&self) -> io::Result<()> {
        if !self.all() {
            return Ok(());
        }
        touch(&self.run_dir.join(FAIL))?;
        remove(&self.run_dir.join(SUCCESS))
    }

    /// Before the sleep between rounds / when it ends.
    pub fn sleeping(&self, yes: bool) -> io::Result<()> {
        if !self.all() {
            return Ok(());
        }
        let p = self.run_dir.join(SLEEP_LONG);
        if yes {
            touch(&p)
        } else {
            remove(&p)
        }
    }

    pub fn replay_file(&self) -> PathBuf {
        self.state_dir.join("time-replay-protection-utc-unixtime")
    }

    /// Records the current (just corrected) time as the new minimum for later boots.
    pub fn write_replay_protection(&self, now: i64) -> io::Result<()> {
        if !self.all() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.state_dir)?;
        write_atomic(&self.replay_file(), now.to_string().as_bytes())?;
        write_atomic(
            &self
                .state_dir
                .join("time-replay-protection-utc-humanreadable"),
            crate::bounds::utc(now).as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_follow_the_contract() {
        let d = std::env::temp_dir().join(format!("sdw-status-{}", std::process::id()));
        let s = StatusDir::new(d.join("run"), d.join("state"));
        s.init().expect("init");
        s.status(Icon::Busy, "Running").expect("status");
        // Rewritten in place: the inode a reader watches stays the same.
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &str| std::fs::metadata(d.join(p)).expect("meta").ino();
        let before = ino("run/status");
        s.status(Icon::Error, "Failed: x").expect("status");
        assert_eq!(ino("run/status"), before);
        assert_eq!(
            std::fs::read_to_string(d.join("run/status")).expect("status"),
            r#"{"icon": "error", "message": "Failed: x"}"#
        );
        s.status(Icon::Busy, "Running").expect("status");
        assert_eq!(
            std::fs::read_to_string(d.join("run/msg")).expect("msg"),
            "Running"
        );
        s.failed().expect("fail");
        assert!(
            d.join("run/fail").exists()
                && !d.join("run/success").exists()
                && !s.first_success_exists()
        );
        s.round_started().expect("start");
        assert!(!d.join("run/fail").exists());
        std::fs::write(d.join("run").join(CLOCK_JUMP), "").expect("jump");
        assert!(s.clock_jump_requested());
        s.sleeping(true).expect("sleep");
        s.round_started().expect("start");
        assert!(!d.join("run/sleep_long").exists());
        s.succeeded().expect("ok");
        assert!(d.join("run/success").exists() && s.first_success_exists());
        assert!(
            !s.clock_jump_requested(),
            "a step was made: the request is done"
        );
        s.write_replay_protection(1_795_636_209).expect("replay");
        assert_eq!(
            std::fs::read_to_string(s.replay_file()).expect("replay"),
            "1795636209"
        );
        std::fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn a_dry_run_writes_nothing_other_programs_act_on() {
        let d = std::env::temp_dir().join(format!("sdw-dry-{}", std::process::id()));
        let run = d.join("run");
        std::fs::create_dir_all(&run).expect("mkdir");
        let every_write = |s: &StatusDir| {
            s.init().expect("init");
            s.started().expect("started");
            s.round_started().expect("start");
            s.status(Icon::Success, "Success (dry run)")
                .expect("status");
            s.succeeded().expect("ok");
            s.failed().expect("fail");
            s.sleeping(true).expect("sleep");
            s.write_replay_protection(1_795_636_209).expect("replay");
            s.stopped("Not running").expect("stopped");
        };
        let s = StatusDir::dry_run(run.clone(), d.join("state"));
        assert_eq!(s.writes, Writes::StatusOnly);
        every_write(&s);
        let mut names: Vec<String> = std::fs::read_dir(&run)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["msg", "status"]);
        assert!(!d.join("state").exists(), "no replay-protection time");
        // A run directory that is missing (or another user's): nothing, not even created.
        let s = StatusDir::dry_run(d.join("missing"), d.join("state"));
        assert_eq!(s.writes, Writes::Nothing);
        every_write(&s);
        assert!(!d.join("missing").exists() && !d.join("state").exists());
        if nix::unistd::geteuid().is_root() {
            let other = d.join("other");
            std::fs::create_dir(&other).expect("mkdir");
            nix::unistd::chown(&other, Some(nix::unistd::Uid::from_raw(64_123)), None)
                .expect("chown");
            let s = StatusDir::dry_run(other.clone(), d.join("state"));
            assert_eq!(
                s.writes,
                Writes::Nothing,
                "root beside the daemon writes nothing"
            );
            every_write(&s);
            assert_eq!(std::fs::read_dir(&other).expect("ls").count(), 0);
        }
        std::fs::remove_dir_all(&d).expect("cleanup");
    }
}
