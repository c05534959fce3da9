//! The clock against Tor's consensus window and the minimum time (as upstream's anondate and
//! timesanitycheck), by the rules sdwdate judges its sources with.

use std::path::Path;

pub use tor_control::time::{check_clock, window_from_consensus, ClockProblem};

/// max of the minimum times in these files (sdwdate's replay protection, /etc/minimum-unixtime).
pub fn minimum_time(files: &[&Path]) -> i64 {
    tor_control::client::minimum_from_files(0, files).0
}

/// The line for people.
pub fn check(now: i64, window: Option<(i64, i64)>, minimum: i64) -> Result<String, String> {
    match check_clock(now, window, minimum) {
        Ok(true) => Ok("inside Tor's consensus window and after the minimum time".into()),
        Ok(false) => Ok("after the minimum time (no Tor consensus to compare with)".into()),
        Err(e) => Err(e.to_string()),
    }
}
