//! The clock against Tor's consensus window and the minimum time (as upstream's anondate and
//! timesanitycheck), by the rules sdwdate judges its sources with.

use std::path::Path;

pub use tor_control::time::{check_clock, window_from_consensus, ClockProblem};

/// max of the minimum times in these files (sdwdate's replay protection, /etc/minimum-unixtime).
pub fn minimum_time(files: &[&Path]) -> i64 {
    tor_control::client::minimum_from_files(0, files).0
}

/// How the clock passed [`check`]; its `Display` is the line for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fine {
    InsideConsensus,
    NoConsensus,
}

impl std::fmt::Display for Fine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fine::InsideConsensus => "inside Tor's consensus window and after the minimum time",
            Fine::NoConsensus => "after the minimum time (no Tor consensus to compare with)",
        })
    }
}

/// The clock against the consensus window (when there is one) and the minimum time; either
/// way's `Display` is the line for people.
pub fn check(now: i64, window: Option<(i64, i64)>, minimum: i64) -> Result<Fine, ClockProblem> {
    Ok(match check_clock(now, window, minimum)? {
        true => Fine::InsideConsensus,
        false => Fine::NoConsensus,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_judged_by_window_and_minimum() {
        let (after, until) = (1_795_633_200, 1_795_636_800);
        assert_eq!(
            check(after + 60, Some((after, until)), 0),
            Ok(Fine::InsideConsensus)
        );
        assert_eq!(check(after, None, after - 3600), Ok(Fine::NoConsensus));
        assert_eq!(
            check(after - 10, Some((after, until)), 0),
            Err(ClockProblem::BeforeConsensus(10))
        );
        assert_eq!(
            check(until + 10, Some((after, until)), 0),
            Err(ClockProblem::AfterConsensus(10))
        );
        assert!(matches!(
            check(after, Some((after, until)), after + 86_400),
            Err(ClockProblem::BeforeMinimum(_))
        ));
        // `timesync-check --tor` prints these lines.
        assert_eq!(
            Fine::InsideConsensus.to_string(),
            "inside Tor's consensus window and after the minimum time"
        );
        assert_eq!(
            Fine::NoConsensus.to_string(),
            "after the minimum time (no Tor consensus to compare with)"
        );
    }
}
