//! When to run next. Sleeps are on the monotonic clock (tokio's Instant), never wall time,
//! because sdwdate itself moves the wall clock.

use std::time::Duration;

use rand::Rng;

/// After a success: uniform 60..180 minutes, as upstream.
pub fn after_success(rng: &mut impl Rng) -> Duration {
    Duration::from_millis(rng.random_range(60 * 60_000..180 * 60_000))
}

/// After the n-th failure in a row (n >= 1): 30 s, 1, 2, 4 ... minutes, capped at 60 minutes,
/// with up to 10% jitter. Upstream sleeps 60..180 minutes even after a failure, leaving a
/// fresh boot with a wrong clock for hours.
pub fn after_failure(n: u32, rng: &mut impl Rng) -> Duration {
    let base = Duration::from_secs(30).saturating_mul(1u32 << n.saturating_sub(1).min(16));
    let base = base.min(Duration::from_secs(3600));
    base + base.mul_f64(rng.random_range(0.0..0.1))
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
            let f = after_failure(n, &mut rng);
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
        assert!(after_failure(1, &mut rng) < Duration::from_secs(34));
        assert!(after_failure(30, &mut rng) >= Duration::from_secs(3600));
    }
}
