//! The wall clock, behind a trait: the daemon reads and moves it; tests and `--dry-run` use
//! implementations that only log.

use log::info;
use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, clock_settime, ClockId};

/// Why the clock could not be moved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("clock_gettime: {0}")]
    Read(nix::Error),
    #[error("clock_settime: {0} (needs CAP_SYS_TIME)")]
    Set(nix::Error),
    #[error("the new time is out of range")]
    Range,
    #[error("adjtimex (telling the kernel the clock is synchronised): {0}")]
    Sync(nix::Error),
}

pub trait Clock: Send + Sync {
    /// CLOCK_REALTIME as unix seconds.
    fn now(&self) -> f64;
    /// Jumps the clock by `offset` seconds.
    fn step(&self, offset: f64) -> Result<(), ClockError>;
    /// Moves the clock by `ns` nanoseconds (one slew step).
    fn nudge(&self, ns: i64) -> Result<(), ClockError>;
    /// Tells the kernel the clock is synchronised, to within [`MAX_ERROR_US`]: what
    /// `timedatectl` shows as "System clock synchronized", what systemd-time-wait-sync (and
    /// so `time-sync.target`) waits for, and what starts the kernel's 11-minute copy to the
    /// hardware clock. The kernel takes it back by itself when nobody renews it (its error
    /// bound grows by 500 us/s until 16 s: 7 hours from 3 s, longer than sdwdate's rounds).
    fn mark_synced(&self) -> Result<(), ClockError> {
        Ok(())
    }
    /// Tells the kernel the clock is not synchronised (SYNC_HARDWARE_CLOCK=false, at start):
    /// an earlier run's claim would otherwise keep the kernel copying the clock to the
    /// hardware clock for hours.
    fn mark_unsynced(&self) -> Result<(), ClockError> {
        Ok(())
    }
    fn is_dry_run(&self) -> bool {
        false
    }
}

/// The error bound sdwdate claims after a success: 3 s (a `Date` header's second, half a
/// round trip, and RANDOMIZE_TIME's second either way).
pub const MAX_ERROR_US: i64 = 3_000_000;

fn realtime() -> f64 {
    clock_gettime(ClockId::CLOCK_REALTIME)
        .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9)
}

/// The real clock; needs CAP_SYS_TIME.
#[derive(Debug, Default)]
pub struct SystemClock;

impl SystemClock {
    fn shift_ns(ns: i64) -> Result<(), ClockError> {
        let now = clock_gettime(ClockId::CLOCK_REALTIME).map_err(ClockError::Read)?;
        let total =
            i128::from(now.tv_sec()) * 1_000_000_000 + i128::from(now.tv_nsec()) + i128::from(ns);
        let secs = i64::try_from(total.div_euclid(1_000_000_000)).map_err(|_| ClockError::Range)?;
        let nanos = total.rem_euclid(1_000_000_000) as i64;
        clock_settime(ClockId::CLOCK_REALTIME, TimeSpec::new(secs, nanos)).map_err(ClockError::Set)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        realtime()
    }
    fn step(&self, offset: f64) -> Result<(), ClockError> {
        Self::shift_ns((offset * 1e9).round() as i64)
    }
    fn nudge(&self, ns: i64) -> Result<(), ClockError> {
        Self::shift_ns(ns)
    }
    fn mark_synced(&self) -> Result<(), ClockError> {
        kernel::set_sync(Some(MAX_ERROR_US)).map_err(ClockError::Sync)
    }
    fn mark_unsynced(&self) -> Result<(), ClockError> {
        kernel::set_sync(None).map_err(ClockError::Sync)
    }
}

/// Reads the real clock, changes nothing, says what it would do.
#[derive(Debug, Default)]
pub struct DryRunClock;

impl Clock for DryRunClock {
    fn now(&self) -> f64 {
        realtime()
    }
    fn step(&self, offset: f64) -> Result<(), ClockError> {
        info!("dry-run: would step the clock by {offset:+.3} s");
        Ok(())
    }
    fn nudge(&self, _ns: i64) -> Result<(), ClockError> {
        Ok(())
    }
    fn is_dry_run(&self) -> bool {
        true
    }
}

/// The one call nix does not wrap: adjtimex(2).
#[allow(unsafe_code)]
mod kernel {
    /// With an error bound (microseconds): clears STA_UNSYNC and sets the kernel's maximum
    /// and estimated error. Without: sets STA_UNSYNC. Every other status bit (a pending leap
    /// second) is kept.
    pub fn set_sync(max_error_us: Option<i64>) -> Result<(), nix::Error> {
        // SAFETY: `timex` is plain data; zeroed with modes 0 it only asks for the current
        // state, and the kernel writes into the struct we own for the duration of the call.
        let mut t: libc::timex = unsafe { std::mem::zeroed() };
        // SAFETY: as above; a valid, exclusively borrowed struct.
        if unsafe { libc::adjtimex(&mut t) } < 0 {
            return Err(nix::Error::last());
        }
        let status = t.status;
        // SAFETY: as above.
        let mut t: libc::timex = unsafe { std::mem::zeroed() };
        match max_error_us {
            Some(max_error_us) => {
                t.modes = libc::ADJ_STATUS | libc::ADJ_MAXERROR | libc::ADJ_ESTERROR;
                t.status = status & !libc::STA_UNSYNC;
                t.maxerror = max_error_us as libc::c_long;
                t.esterror = (max_error_us / 3) as libc::c_long;
            }
            None => {
                t.modes = libc::ADJ_STATUS;
                t.status = status | libc::STA_UNSYNC;
            }
        }
        // SAFETY: as above.
        if unsafe { libc::adjtimex(&mut t) } < 0 {
            return Err(nix::Error::last());
        }
        Ok(())
    }
}
