//! When to run next. Sleeps are on the monotonic clock (tokio's Instant), never wall time,
//! because sdwdate itself moves the wall clock.

use std::time::Duration;

use rand::Rng;

/// After a success: uniform 60..180 minutes, as upstream.
pub fn after_success(rng: &mut impl Rng) -> Duration {
    Duration::from_millis(rng.random_range(60 * 60_000..180 * 60_000))
}

/// After the n-th failure in a row (n >= 1). Before the first success since boot: 5, 10, 15 ...
/// seconds, capped at 30 s: until then anon-firewall keeps the workstation closed, so every
/// minute here is a minute without network for the user (a round also waits for Tor's
/// consensus itself, so this does not spin). After it: 30 s, 1, 2, 4 ... minutes, capped at
/// 60 minutes. Up to 10% jitter. Upstream sleeps 60..180 minutes even after a failure,
/// leaving a fresh boot with a wrong clock for hours.
pub fn after_failure(n: u32, synced_before: bool, rng: &mut impl Rng) -> Duration {
    let base = if synced_before {
        Duration::from_secs(30).saturating_mul(1u32 << n.saturating_sub(1).min(16))
    } else {
        Duration::from_secs(5).saturating_mul(n.max(1))
    };
    let cap = if synced_before { 3600 } else { 30 };
    let base = base.min(Duration::from_secs(cap));
    base + base.mul_f64(rng.random_range(0.0..0.1))
}

/// How often a sleep looks at the clocks (suspend, the watchdog).
pub const TICK: Duration = Duration::from_secs(5);

/// A suspend shows as CLOCK_BOOTTIME running ahead of CLOCK_MONOTONIC (which stops while the
/// machine sleeps). Fed both clocks in nanoseconds; says when the gap grew by more than
/// [`SuspendDetector::THRESHOLD_NS`] since the last look.
#[derive(Debug, Clone, Copy)]
pub struct SuspendDetector {
    gap_ns: i128,
}

impl SuspendDetector {
    pub const THRESHOLD_NS: i128 = 2_000_000_000;

    pub fn new(boottime_ns: i128, monotonic_ns: i128) -> SuspendDetector {
        SuspendDetector {
            gap_ns: boottime_ns - monotonic_ns,
        }
    }

    /// `Some(seconds asleep)` when the machine was suspended since the last call.
    pub fn observe(&mut self, boottime_ns: i128, monotonic_ns: i128) -> Option<f64> {
        let gap = boottime_ns - monotonic_ns;
        let grew = gap - self.gap_ns;
        self.gap_ns = gap;
        (grew > Self::THRESHOLD_NS).then(|| grew as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ranges() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        for _ in 0..1000 {
            let s = after_success(&mut rng);
            assert!(s >= Duration::from_secs(3600) && s < Duration::from_secs(3 * 3600));
        }
        let mut prev = Duration::ZERO;
        for n in 1..40 {
            let f = after_failure(n, true, &mut rng);
            assert!(
                f >= Duration::from_secs(30) && f <= Duration::from_secs(3960),
                "{n}: {f:?}"
            );
            assert!(
                f.as_secs() + 400 >= prev.as_secs(),
                "backoff must not shrink"
            );
            prev = f;
        }
        assert!(after_failure(1, true, &mut rng) < Duration::from_secs(34));
        assert!(after_failure(30, true, &mut rng) >= Duration::from_secs(3600));
        // Before the first success: seconds, never more than 33.
        assert!(after_failure(1, false, &mut rng) < Duration::from_secs(6));
        for n in 1..1000 {
            assert!(after_failure(n, false, &mut rng) <= Duration::from_secs(33));
        }
    }

    #[test]
    fn a_boottime_jump_is_a_suspend() {
        let s = 1_000_000_000i128;
        let mut d = SuspendDetector::new(100 * s, 90 * s);
        assert_eq!(d.observe(105 * s, 95 * s), None, "both clocks ran");
        assert_eq!(
            d.observe(106 * s + s / 2, 96 * s),
            None,
            "0.5 s of drift is noise"
        );
        // 1 hour asleep: BOOTTIME moved on, MONOTONIC did not.
        let asleep = d.observe(3706 * s + s / 2, 96 * s + s);
        assert!(
            asleep.is_some_and(|a| (a - 3599.0).abs() < 1e-6),
            "{asleep:?}"
        );
        assert_eq!(d.observe(3707 * s + s / 2, 97 * s + s), None, "only once");
    }
}
