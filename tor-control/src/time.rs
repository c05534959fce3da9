//! Which times are plausible: Tor's time format, the consensus window, the minimum time and
//! the expiry. sdwdate judges answers with these rules and timesync-check judges the clock with
//! the same ones, so they are written once.

/// 2033-05-17 10:00:00 UTC: upstream's EXPIRATION_UNIXTIME.
pub const EXPIRY: i64 = 1_999_936_800;

/// sdwdate's slack below the minimum time (its estimate of the time is not exact): a new time
/// may be this much before the minimum, and a clock this much before it still counts.
pub const MINIMUM_SLACK: i64 = 100;

/// Days since 1970-01-01 of a Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Tor's `YYYY-MM-DD HH:MM:SS` (UTC, optionally quoted) as unix time.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim().trim_matches('"');
    let (date, time) = s.split_once(' ')?;
    let num = |p: &str| {
        p.parse::<i64>()
            .ok()
            .filter(|_| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let d: Vec<i64> = date.split('-').map(num).collect::<Option<_>>()?;
    let t: Vec<i64> = time.split(':').map(num).collect::<Option<_>>()?;
    let [y, mo, da] = <[i64; 3]>::try_from(d).ok()?;
    let [h, mi, se] = <[i64; 3]>::try_from(t).ok()?;
    if !(1..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
        || h > 23
        || mi > 59
        || se > 60
    {
        return None;
    }
    Some(days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + se)
}

/// `YYYY-MM-DD HH:MM:SS` UTC, for messages (the inverse of [`parse_time`]).
pub fn utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
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

/// valid-after / valid-until of a consensus document (tor's cached-microdesc-consensus), if
/// its window is one Tor could have made ([`plausible_window`], with its fresh-until).
pub fn window_from_consensus(text: &str) -> Option<(i64, i64)> {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(parse_time)
    };
    let (after, until) = (field("valid-after ")?, field("valid-until ")?);
    plausible_window(after, field("fresh-until "), until).ok()?;
    Some((after, until))
}

/// A minimum-time file's content (`/etc/minimum-unixtime`, sdwdate's replay protection): a
/// 10-digit unix time, surrounding white space allowed.
pub fn parse_minimum(text: &str) -> Option<i64> {
    let t = text.trim();
    t.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| t.parse::<i64>().ok())
        .flatten()
        .filter(|t| (1_000_000_000..10_000_000_000).contains(t))
}

/// Bounds a time must be inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// max(build date, replay-protection file, /etc/minimum-unixtime).
    pub minimum: i64,
    pub expiry: i64,
    /// Tor's consensus valid-after .. valid-until; `None` only with `CONTROL_PORT=none`.
    pub consensus: Option<(i64, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutOfBounds {
    #[error("remote time {} is before the minimum time {}", utc(*remote), utc(*minimum))]
    BeforeMinimum { remote: i64, minimum: i64 },
    #[error("remote time {} is after the expiry {}", utc(*remote), utc(EXPIRY))]
    AfterExpiry { remote: i64 },
    #[error("remote time {} is before the Tor consensus valid-after {} (slow)", utc(*remote), utc(*valid_after))]
    BeforeConsensus { remote: i64, valid_after: i64 },
    #[error("remote time {} is after the Tor consensus valid-until {} (fast)", utc(*remote), utc(*valid_until))]
    AfterConsensus { remote: i64, valid_until: i64 },
}

impl Bounds {
    /// Is a remote time (an answer's `Date`) plausible?
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

/// How the local clock compares with the bounds (timesync-check `--tor`, as upstream's
/// anondate and timesanitycheck).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockProblem {
    #[error("the clock is before the minimum time by {0} s (slow)")]
    BeforeMinimum(i64),
    #[error("the clock is after 2033-05-17 10:00 UTC (fast)")]
    AfterExpiry,
    #[error("the clock is {0} s before Tor's consensus valid-after (slow)")]
    BeforeConsensus(i64),
    #[error("the clock is {0} s after Tor's consensus valid-until (fast)")]
    AfterConsensus(i64),
}

/// Judges the local clock; `Ok(true)` when a consensus window was compared too.
pub fn check_clock(
    now: i64,
    window: Option<(i64, i64)>,
    minimum: i64,
) -> Result<bool, ClockProblem> {
    if now < minimum - MINIMUM_SLACK {
        return Err(ClockProblem::BeforeMinimum(minimum - now));
    }
    if now > EXPIRY {
        return Err(ClockProblem::AfterExpiry);
    }
    match window {
        Some((after, _)) if now < after => Err(ClockProblem::BeforeConsensus(after - now)),
        Some((_, until)) if now > until => Err(ClockProblem::AfterConsensus(now - until)),
        w => Ok(w.is_some()),
    }
}

/// A new time must not fall below the minimum time minus the slack (replay protection).
pub fn below_floor(new_time: f64, minimum: i64) -> bool {
    new_time < (minimum - MINIMUM_SLACK) as f64
}

/// Why a consensus window cannot be Tor's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImplausibleWindow {
    #[error("valid-after {} is not before valid-until {}", utc(*valid_after), utc(*valid_until))]
    Order { valid_after: i64, valid_until: i64 },
    #[error("fresh-until {} is not between valid-after {} and valid-until {}", utc(*fresh_until), utc(*valid_after), utc(*valid_until))]
    Fresh {
        valid_after: i64,
        fresh_until: i64,
        valid_until: i64,
    },
    #[error("a window of {width} s, outside what Tor uses ({MIN_WINDOW_S} s to {MAX_WINDOW_S} s)")]
    Width { width: i64 },
    #[error("a window of {width} s is not at least 2 whole voting intervals of {interval} s")]
    Intervals { width: i64, interval: i64 },
}

/// The narrowest window accepted: a private test network voting every 10 s, valid for 2
/// intervals (tor's own minimums with TestingTorNetwork).
pub const MIN_WINDOW_S: i64 = 20;
/// The widest: 3 intervals of tor's longest voting interval (24 h). The public network's
/// window is 3 h (fresh for 1 h).
pub const MAX_WINDOW_S: i64 = 3 * 86_400;

/// Whether `(valid_after, fresh_until, valid_until)` can be a consensus Tor made: ordered,
/// and as wide as Tor's voting makes it: valid-until is valid-after plus a whole number (at
/// least 2, tor's V3AuthNIntervalsValid) of voting intervals, fresh-until one interval after
/// valid-after. A window that is not is no bound: a round that needs it fails. `fresh_until`
/// is `None` where it cannot be asked for (a filtering control-port proxy); the order and
/// width are still checked.
pub fn plausible_window(
    valid_after: i64,
    fresh_until: Option<i64>,
    valid_until: i64,
) -> Result<(), ImplausibleWindow> {
    if valid_after >= valid_until {
        return Err(ImplausibleWindow::Order {
            valid_after,
            valid_until,
        });
    }
    let width = valid_until - valid_after;
    if !(MIN_WINDOW_S..=MAX_WINDOW_S).contains(&width) {
        return Err(ImplausibleWindow::Width { width });
    }
    if let Some(fresh_until) = fresh_until {
        if !(valid_after < fresh_until && fresh_until < valid_until) {
            return Err(ImplausibleWindow::Fresh {
                valid_after,
                fresh_until,
                valid_until,
            });
        }
        let interval = fresh_until - valid_after;
        if width % interval != 0 || width / interval < 2 {
            return Err(ImplausibleWindow::Intervals { width, interval });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tor_times() {
        assert_eq!(parse_time("2033-05-17 10:00:00"), Some(EXPIRY));
        assert_eq!(parse_time("\"1970-01-01 00:00:00\""), Some(0));
        assert_eq!(parse_time("2026-11-25 19:00:00"), Some(1_795_633_200));
        for bad in [
            "2026-13-01 00:00:00",
            "2026-11-25",
            "2026-11-25 24:00:00",
            "2026-+1-25 19:00:00",
            "2026-11-25 19:00:00:00",
            "--1 ::",
            "yesterday",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        for t in [0, 951_782_400, 1_795_636_209, EXPIRY, 4_102_444_800] {
            assert_eq!(parse_time(&utc(t)), Some(t), "{}", utc(t));
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
    }

    #[test]
    fn clock_and_files() {
        let c = "network-status-version 3 microdesc\nvalid-after 2026-11-25 19:00:00\nfresh-until 2026-11-25 20:00:00\nvalid-until 2026-11-25 22:00:00\n";
        let (a, u) = window_from_consensus(c).expect("window");
        assert_eq!((a, u - a), (1_795_633_200, 3 * 3600));
        assert_eq!(check_clock(a + 10, Some((a, u)), 0), Ok(true));
        assert_eq!(
            check_clock(a - 10, Some((a, u)), 0),
            Err(ClockProblem::BeforeConsensus(10))
        );
        assert_eq!(
            check_clock(u + 10, Some((a, u)), 0),
            Err(ClockProblem::AfterConsensus(10))
        );
        assert_eq!(check_clock(a, None, a + 5), Ok(false), "within the slack");
        assert_eq!(
            check_clock(a, None, a + 101),
            Err(ClockProblem::BeforeMinimum(101))
        );
        assert_eq!(parse_minimum(" 1900000000\n"), Some(1_900_000_000));
        for bad in ["99", "junk", "+1900000000", "19000000000", ""] {
            assert_eq!(parse_minimum(bad), None, "{bad}");
        }
        assert!(below_floor(899.0, 1000) && !below_floor(900.0, 1000));
    }

    #[test]
    fn only_windows_tor_makes_are_plausible() {
        let va = 1_795_633_200;
        // The public network: fresh for 1 h, valid for 3 h; the tornet: 20 intervals of 15 s.
        assert_eq!(plausible_window(va, Some(va + 3600), va + 3 * 3600), Ok(()));
        assert_eq!(plausible_window(va, Some(va + 15), va + 300), Ok(()));
        assert_eq!(plausible_window(va, None, va + 3 * 3600), Ok(()));
        for (fresh, until) in [
            (None, va),                           // empty
            (None, va - 3600),                    // reversed
            (None, va + 10),                      // narrower than any network
            (None, va + 365 * 86_400),            // a year: a bound that bounds nothing
            (Some(va), va + 3 * 3600),            // fresh-until at valid-after
            (Some(va + 4 * 3600), va + 3 * 3600), // fresh-until after valid-until
            (Some(va + 3600 + 7), va + 3 * 3600), // not whole intervals
            (Some(va + 2 * 3600), va + 3 * 3600), // 1.5 intervals
            (Some(va + 3 * 3600 - 1), va + 3 * 3600),
        ] {
            assert!(
                plausible_window(va, fresh, until).is_err(),
                "{fresh:?} {until}"
            );
        }
    }
}
