#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

/// A probe's answer: ready, or not yet.
pub trait Ready {
    /// Whether waiting is over.
    fn is_ready(&self) -> bool;
}

impl Ready for bool {
    fn is_ready(&self) -> bool {
        *self
    }
}

impl<T> Ready for Option<T> {
    fn is_ready(&self) -> bool {
        self.is_some()
    }
}

impl<T, E> Ready for Result<T, E> {
    fn is_ready(&self) -> bool {
        self.is_ok()
    }
}

/// Calls `probe` now and then every `poll` until it answers ready or `limit` has passed, and
/// returns its last answer (`false`, `None` or the last `Err` when it never was ready).
pub fn wait_until<R: Ready>(limit: Duration, poll: Duration, mut probe: impl FnMut() -> R) -> R {
    let start = Instant::now();
    loop {
        let answer = probe();
        let waited = start.elapsed();
        if answer.is_ready() || waited >= limit {
            return answer;
        }
        std::thread::sleep(poll.min(limit - waited));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_millis(10);

    #[test]
    fn returns_the_first_ready_answer_at_once() {
        let start = Instant::now();
        let mut calls = 0;
        let got = wait_until(Duration::from_secs(10), Duration::from_secs(5), || {
            calls += 1;
            Some(calls)
        });
        assert_eq!(got, Some(1));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn returns_early_when_ready() {
        let start = Instant::now();
        let mut calls = 0;
        let got = wait_until(Duration::from_secs(10), POLL, || {
            calls += 1;
            calls == 3
        });
        assert!(got);
        assert_eq!(calls, 3);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn gives_up_after_the_limit() {
        let limit = Duration::from_millis(200);
        let start = Instant::now();
        let got: Option<()> = wait_until(limit, POLL, || None);
        let took = start.elapsed();
        assert_eq!(got, None);
        assert!(took >= limit, "gave up after {took:?}");
        assert!(
            took < limit + Duration::from_secs(2),
            "gave up after {took:?}"
        );
    }

    #[test]
    fn the_number_of_polls_is_bounded() {
        let (limit, poll) = (Duration::from_millis(100), Duration::from_millis(20));
        let mut calls = 0u32;
        let got = wait_until(limit, poll, || {
            calls += 1;
            false
        });
        assert!(!got);
        // The first probe at once, then one after each sleep (the last sleep cut to the
        // limit): at most 1 + limit / poll rounded up, and never fewer than 2.
        assert!((2..=6).contains(&calls), "{calls} probes");
    }

    #[test]
    fn a_zero_limit_probes_once() {
        let mut calls = 0;
        let got = wait_until(Duration::ZERO, Duration::from_secs(10), || {
            calls += 1;
            false
        });
        assert!(!got);
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_result_returns_the_last_error_on_timeout() {
        let mut calls = 0;
        let got: Result<(), u32> = wait_until(Duration::from_millis(50), POLL, || {
            calls += 1;
            Err(calls)
        });
        assert_eq!(got, Err(calls));
    }

    #[test]
    fn the_last_sleep_is_cut_to_the_limit() {
        let start = Instant::now();
        let got = wait_until(Duration::from_millis(50), Duration::from_secs(10), || false);
        assert!(!got);
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
