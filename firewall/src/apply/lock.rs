//! One anon-firewall at a time changes the rules: an `flock` on `RUN_DIR/lock`, exclusive for
//! apply, watch's applies, lockdown, unload and the repair (the unit, the path unit, the
//! timer and an administrator may run at once), shared for `status` and `check`, which read
//! the rules and the record of them and must not see one without the other.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::info;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

/// The lock file's name in the run directory.
pub const LOCK_FILE: &str = "lock";
/// How often a waiting process tries the lock again.
const POLL: Duration = Duration::from_millis(50);

/// Held while the lock is; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct RunLock {
    _flock: Flock<File>,
}

#[derive(Debug, Error)]
pub enum LockError {
    #[error("cannot open the lock file {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "another anon-firewall held {} for {waited:.0?} (the limit, --lock-timeout); gave up",
        path.display()
    )]
    Timeout { path: PathBuf, waited: Duration },
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: Errno,
    },
}

/// Takes the exclusive lock in `run_dir` (made if missing), waiting at most `timeout` for
/// another holder.
pub fn exclusive(run_dir: &Path, timeout: Duration) -> Result<RunLock, LockError> {
    let path = run_dir.join(LOCK_FILE);
    let open = std::fs::create_dir_all(run_dir).and_then(|()| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
    });
    let file = open.map_err(|source| LockError::Open {
        path: path.clone(),
        source,
    })?;
    take(file, path, FlockArg::LockExclusiveNonblock, timeout)
}

/// Takes the shared lock in `run_dir` if its lock file exists (a reader never creates it:
/// it may not be allowed to, and without it nobody is changing the rules).
pub fn shared(run_dir: &Path, timeout: Duration) -> Result<Option<RunLock>, LockError> {
    let path = run_dir.join(LOCK_FILE);
    match File::open(&path) {
        Ok(file) => take(file, path, FlockArg::LockSharedNonblock, timeout).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LockError::Open { path, source }),
    }
}

fn take(
    mut file: File,
    path: PathBuf,
    how: FlockArg,
    timeout: Duration,
) -> Result<RunLock, LockError> {
    let start = Instant::now();
    let mut said = false;
    loop {
        match Flock::lock(file, how) {
            Ok(flock) => return Ok(RunLock { _flock: flock }),
            Err((f, Errno::EWOULDBLOCK)) => {
                let waited = start.elapsed();
                if waited >= timeout {
                    return Err(LockError::Timeout { path, waited });
                }
                if !said {
                    info!(
                        "waiting for another anon-firewall to finish (it holds {})",
                        path.display()
                    );
                    said = true;
                }
                file = f;
                std::thread::sleep(POLL.min(timeout - waited));
            }
            Err((_, source)) => return Err(LockError::Lock { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_makes_the_next_wait_then_give_up() {
        let dir = std::env::temp_dir().join(format!("afw-lock-{}", std::process::id()));
        let held = exclusive(&dir, Duration::ZERO).expect("first");
        // flock locks belong to the open file: a second open in this process conflicts too.
        let start = Instant::now();
        let e = exclusive(&dir, Duration::from_millis(300)).expect_err("held");
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(matches!(e, LockError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("--lock-timeout"), "{e}");
        assert!(matches!(
            shared(&dir, Duration::ZERO),
            Err(LockError::Timeout { .. })
        ));
        drop(held);
        let a = shared(&dir, Duration::ZERO)
            .expect("shared")
            .expect("file exists");
        let b = shared(&dir, Duration::ZERO)
            .expect("shared")
            .expect("file exists");
        assert!(exclusive(&dir, Duration::ZERO).is_err(), "readers hold it");
        drop((a, b));
        exclusive(&dir, Duration::ZERO).expect("free again");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        // No lock file, no reader lock (and none created).
        assert!(shared(&dir, Duration::ZERO).expect("absent").is_none());
        assert!(!dir.exists());
    }
}
