//! Which remote times are plausible at all.

use std::fmt;

/// 2033-05-17 10:00:00 UTC: upstream's EXPIRATION_UNIXTIME.
pub const EXPIRY: i64 = 1_999_936_800;

/// Bounds an answer must be inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// max(build date, replay-protection file, /etc/minimum-unixtime).
    pub minimum: i64,
    pub expiry: i64,
    /// Tor's consensus valid-after .. valid-until, when a control port answered.
    pub consensus: Option<(i64, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutOfBounds {
    BeforeMinimum { remote: i64, minimum: i64 },
    AfterExpiry { remote: i64 },
    BeforeConsensus { remote: i64, valid_after: i64 },
    AfterConsensus { remote: i64, valid_until: i64 },
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutOfBounds::BeforeMinimum { remote, minimum } => {
                write!(
                    f,
                    "remote time {} is before the minimum time {}",
                    utc(*remote),
                    utc(*minimum)
                )
            }
            OutOfBounds::AfterExpiry { remote } => write!(
                f,
                "remote time {} is after the expiry {}",
                utc(*remote),
                utc(EXPIRY)
            ),
            OutOfBounds::BeforeConsensus {
                remote,
                valid_after,
            } => {
                write!(
                    f,
                    "remote time {} is before the Tor consensus valid-after {} (slow)",
                    utc(*remote),
                    utc(*valid_after)
                )
            }
            OutOfBounds::AfterConsensus {
                remote,
                valid_until,
            } => {
                write!(
                    f,
                    "remote time {} is after the Tor consensus valid-until {} (fast)",
                    utc(*remote),
                    utc(*valid_until)
                )
            }
        }
    }
}

impl Bounds {
    pub fn check(&self, remote: i64) -> Result<(), OutOfBounds> {
        if remote < self.minimum {
            return Err(OutOfBounds::BeforeMinimum {
                remote,
                minimum: self.minimum,
            });
        }
        if remote > self.expiry {
            return Err(OutOfBounds::AfterExpiry { remote });
        }
        if let Some((valid_after, valid_until)) = self.consensus {
            if remote <= valid_after {
                return Err(OutOfBounds::BeforeConsensus {
                    remote,
                    valid_after,
                });
            }
            if remote > valid_until {
                return Err(OutOfBounds::AfterConsensus {
                    remote,
                    valid_until,
                });
            }
        }
        Ok(())
    }
}

/// Tor's `YYYY-MM-DD HH:MM:SS` (UTC), parsed as the control port and consensus write it.
pub use tor_control::parse_time as parse_tor_time;

/// `YYYY-MM-DD HH:MM:SS` UTC, for messages.
pub fn utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tor_times() {
        assert_eq!(parse_tor_time("2033-05-17 10:00:00"), Some(EXPIRY));
        assert_eq!(parse_tor_time("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_tor_time("2026-11-25 19:50:09"), Some(1_795_636_209));
        assert_eq!(parse_tor_time("2026-13-25 19:50:09"), None);
        assert_eq!(parse_tor_time("yesterday"), None);
        for t in [0, 951_782_400, 1_795_636_209, EXPIRY, 4_102_444_800] {
            assert_eq!(parse_tor_time(&utc(t)), Some(t), "{}", utc(t));
        }
    }

    #[test]
    fn bounds() {
        let b = Bounds {
            minimum: 1000,
            expiry: EXPIRY,
            consensus: Some((2000, 3000)),
        };
        assert!(matches!(
            b.check(999),
            Err(OutOfBounds::BeforeMinimum { .. })
        ));
        assert!(matches!(
            b.check(2000),
            Err(OutOfBounds::BeforeConsensus { .. })
        ));
        assert!(b.check(2001).is_ok() && b.check(3000).is_ok());
        assert!(matches!(
            b.check(3001),
            Err(OutOfBounds::AfterConsensus { .. })
        ));
        assert!(matches!(
            b.check(EXPIRY + 1),
            Err(OutOfBounds::AfterExpiry { .. })
        ));
        let open = Bounds {
            consensus: None,
            ..b
        };
        assert!(open.check(5000).is_ok());
        assert!(b
            .check(3001)
            .expect_err("fast")
            .to_string()
            .contains("(fast)"));
    }
}
