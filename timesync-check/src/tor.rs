//! The clock against Tor's consensus window and the minimum time (as upstream's anondate
//! and timesanitycheck).

use std::path::Path;

/// Upstream's expiry: 2033-05-17 10:00:00 UTC.
pub const EXPIRY: i64 = 1_999_936_800;

pub use tor_control::parse_time;

/// valid-after / valid-until of a cached consensus file.
pub fn window_from_consensus(text: &str) -> Option<(i64, i64)> {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(parse_time)
    };
    Some((field("valid-after ")?, field("valid-until ")?))
}

/// sdwdate's own slack below the minimum time (its estimate of the time is not exact).
pub const MINIMUM_SLACK: i64 = 100;

/// Which bound the clock violates, if any.
pub fn check(now: i64, window: Option<(i64, i64)>, minimum: i64) -> Result<String, String> {
    if now < minimum - MINIMUM_SLACK {
        return Err(format!(
            "the clock is before the minimum time by {} s (slow)",
            minimum - now
        ));
    }
    if now > EXPIRY {
        return Err("the clock is after 2033-05-17 10:00 UTC (fast)".into());
    }
    match window {
        Some((after, _)) if now < after => Err(format!(
            "the clock is {} s before Tor's consensus valid-after (slow)",
            after - now
        )),
        Some((_, until)) if now > until => Err(format!(
            "the clock is {} s after Tor's consensus valid-until (fast)",
            now - until
        )),
        Some(_) => Ok("inside Tor's consensus window and after the minimum time".into()),
        None => Ok("after the minimum time (no Tor consensus to compare with)".into()),
    }
}

/// max of the 10-digit times in these files (sdwdate's replay protection, /etc/minimum-unixtime).
pub fn minimum_time(files: &[&Path]) -> i64 {
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|t| t.trim().parse::<i64>().ok())
        .filter(|t| (1_000_000_000..10_000_000_000).contains(t))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let c = "network-status-version 3 microdesc\nvalid-after 2026-11-25 19:00:00\nfresh-until 2026-11-25 20:00:00\nvalid-until 2026-11-25 22:00:00\n";
        let (a, u) = window_from_consensus(c).expect("window");
        assert_eq!(u - a, 3 * 3600);
        assert_eq!(a, 1_795_633_200);
        assert!(check(a + 10, Some((a, u)), 0).is_ok());
        assert!(check(a - 10, Some((a, u)), 0)
            .expect_err("slow")
            .contains("valid-after (slow)"));
        assert!(check(u + 10, Some((a, u)), 0)
            .expect_err("fast")
            .contains("valid-until (fast)"));
        assert!(
            check(a, None, a + 5).is_ok(),
            "within sdwdate's 100 s slack"
        );
        assert!(check(a, None, a + 101)
            .expect_err("min")
            .contains("minimum time"));
        assert!(parse_time("2026-13-01 00:00:00").is_none());
    }
}
