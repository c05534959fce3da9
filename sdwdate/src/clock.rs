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
}

pub trait Clock: Send + Sync {
    /// CLOCK_REALTIME as unix seconds.
    fn now(&self) -> f64;
    /// Jumps the clock by `offset` seconds.
    fn step(&self, offset: f64) -> Result<(), ClockError>;
    /// Moves the clock by `ns` nanoseconds (one slew step).
    fn nudge(&self, ns: i64) -> Result<(), ClockError>;
    fn is_dry_run(&self) -> bool {
        false
    }
}

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
