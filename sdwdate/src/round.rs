//! One round, sans-IO: which sources to ask next, what to make of each answer, and when the
//! round is over. The shell fetches; this decides.

use std::time::Duration;

use rand::Rng;

use crate::bounds::{utc, Bounds, OutOfBounds};
use crate::clock::ClockError;
use crate::config::Source;
use crate::pools::Pools;
use crate::transport::{FetchError, WindowError};

/// What a fetch brought back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    /// The `Date` header, unix seconds (1 s resolution: the true time is in [remote, remote+1)).
    pub remote: i64,
    /// Local wall-clock time when the response head arrived, unix seconds.
    pub local_at_reply: f64,
    /// From sending the request to the response head (circuit set-up excluded).
    pub round_trip: Duration,
}

impl Answer {
    /// `remote - local`, as upstream computes it.
    pub fn raw_diff(&self) -> f64 {
        self.remote as f64 - self.local_at_reply
    }
    /// The better estimate: the server stamped its time about half a round trip before the
    /// reply arrived, and a truncated `Date` is on average 0.5 s behind.
    pub fn lag_cleaned_diff(&self) -> f64 {
        self.raw_diff() + self.round_trip.as_secs_f64() / 2.0 + 0.5
    }
}

/// One fetch to make: pool and member index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub pool: usize,
    pub member: usize,
    pub source: Source,
}

/// Why an answer did not count.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Bounds(#[from] OutOfBounds),
}

#[derive(Debug, Clone)]
pub enum Verdict {
    Accepted {
        diff: f64,
    },
    Rejected(Rejection),
    /// The pool already has its answer (a hedged twin was faster): neither counted nor a
    /// failure.
    Late,
}

/// Why a round failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RoundError {
    #[error("pool {0}: every member was tried and none gave a valid time")]
    PoolExhausted(usize),
    #[error("maximum allowed number of failures ({0}) exceeded, giving up")]
    TooManyFailures(usize),
    #[error("no Tor consensus window: {0}")]
    NoConsensus(WindowError),
    /// Not reachable: a pool without an answer always has a fetch under way.
    #[error("no Tor consensus window: internal: nothing to wait for")]
    NothingToWaitFor,
    #[error("the new time {} would be before the minimum time {} minus 100 s (replay protection)", utc(*new_time), utc(*minimum))]
    ReplayProtection { new_time: i64, minimum: i64 },
    #[error("cannot set the clock: {0}")]
    Clock(ClockError),
    #[error("the pools disagree: offsets {:+.3} / {:+.3} / {:+.3} s, no two within {AGREE_S} s of each other (honest sources agree to a few seconds); no correction from this round", .0[0], .0[1], .0[2])]
    PoolsDisagree([f64; 3]),
}

/// Honest sources agree to a few seconds (a `Date` header's second, the round trips); two
/// pools further apart than this cannot both be right.
pub const AGREE_S: f64 = 60.0;

/// The pool whose answer is more than [`AGREE_S`] from both others (outvoted: the median is
/// the other two's), if one is. With three pools a majority is all there is: one lying pool
/// never moves the clock nor blocks it; a round where no two agree is refused
/// ([`RoundError::PoolsDisagree`]), so that no correction stands on a single pool.
pub fn outvoted(diffs: [f64; 3]) -> Option<usize> {
    let near = |a: usize, b: usize| (diffs[a] - diffs[b]).abs() <= AGREE_S;
    (0..3).find(|&i| {
        let (j, k) = ((i + 1) % 3, (i + 2) % 3);
        near(j, k) && !near(i, j) && !near(i, k)
    })
}

fn agree(diffs: [f64; 3]) -> bool {
    let near = |a: usize, b: usize| (diffs[a] - diffs[b]).abs() <= AGREE_S;
    near(0, 1) || near(1, 2) || near(0, 2)
}

/// How a round ends.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// One accepted diff per pool; the median is the correction.
    Success {
        diffs: [f64; 3],
        median: f64,
    },
    Failed(RoundError),
}

#[derive(Debug)]
pub struct Round {
    pools: Pools,
    tried: [Vec<bool>; 3],
    accepted: [Option<f64>; 3],
    /// Fetches under way per pool: 1, or 2 while a slow one is hedged.
    in_flight: [usize; 3],
    failures: usize,
    allowed_failures: usize,
    bounds: Bounds,
    failed: Option<RoundError>,
}

impl Round {
    pub fn new(pools: Pools, allowed_failures: usize, bounds: Bounds) -> Round {
        let tried = [0, 1, 2].map(|i| vec![false; pools.0[i].len()]);
        Round {
            pools,
            tried,
            accepted: [None; 3],
            in_flight: [0; 3],
            failures: 0,
            allowed_failures,
            bounds,
            failed: None,
        }
    }

    /// For every pool that still needs an answer and has none in flight: a random untried
    /// member. A pool with no untried member left (and nothing in flight) fails the round.
    pub fn next_requests(&mut self, rng: &mut impl Rng) -> Vec<Request> {
        let mut out = Vec::new();
        for pool in 0..3 {
            if self.failed.is_some() || self.accepted[pool].is_some() || self.in_flight[pool] > 0 {
                continue;
            }
            match self.pick(pool, rng) {
                Some(r) => out.push(r),
                None => {
                    self.failed = Some(RoundError::PoolExhausted(pool));
                    return Vec::new();
                }
            }
        }
        out
    }

    /// A second member for a pool whose only fetch is slow, on its own circuit, so that one
    /// dead source costs a hedge delay instead of the whole fetch timeout. Only inside the
    /// failure budget: if every hedged fetch that can still count as a failure and the
    /// failures so far all failed, the round would still be within it. A pool that already
    /// has its answer holds no budget (its twin's answer is late, never a failure), so a pool
    /// refused a hedge gets one as soon as another pool answers (see [`Round::wants_hedge`]).
    pub fn hedge(&mut self, pool: usize, rng: &mut impl Rng) -> Option<Request> {
        if !self.wants_hedge(pool) {
            return None;
        }
        let hedged = (0..3)
            .filter(|&p| self.accepted[p].is_none() && self.in_flight[p] > 1)
            .count();
        if self.failures + hedged + 1 > self.allowed_failures {
            return None;
        }
        self.pick(pool, rng)
    }

    /// Whether `pool` could use a hedge: no answer yet, exactly one fetch under way and an
    /// untried member left. While it does, the shell asks again (the budget may free up).
    pub fn wants_hedge(&self, pool: usize) -> bool {
        self.failed.is_none()
            && self.accepted[pool].is_none()
            && self.in_flight[pool] == 1
            && self.tried[pool].iter().any(|t| !t)
    }

    fn pick(&mut self, pool: usize, rng: &mut impl Rng) -> Option<Request> {
        let untried: Vec<usize> = (0..self.tried[pool].len())
            .filter(|i| !self.tried[pool][*i])
            .collect();
        if untried.is_empty() {
            return None;
        }
        let member = untried[rng.random_range(0..untried.len())];
        self.tried[pool][member] = true;
        self.in_flight[pool] += 1;
        Some(Request {
            pool,
            member,
            source: self.pools.0[pool][member].clone(),
        })
    }

    /// Tor's consensus window as read when the answers are judged (tor may have got its first
    /// or a newer consensus while the round ran).
    pub fn set_consensus(&mut self, window: Option<(i64, i64)>) {
        self.bounds.consensus = window;
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// Ends the round from outside (the consensus window could not be read).
    pub fn fail(&mut self, e: RoundError) {
        self.failed.get_or_insert(e);
    }

    /// Feeds the result of a request.
    pub fn answer(&mut self, req: &Request, result: Result<Answer, FetchError>) -> Verdict {
        self.in_flight[req.pool] = self.in_flight[req.pool].saturating_sub(1);
        if self.accepted[req.pool].is_some() || self.failed.is_some() {
            return Verdict::Late;
        }
        let verdict = match result {
            Err(e) => Verdict::Rejected(Rejection::Fetch(e)),
            Ok(a) => match self.bounds.check(a.remote) {
                Err(b) => Verdict::Rejected(Rejection::Bounds(b)),
                Ok(()) => Verdict::Accepted {
                    diff: a.lag_cleaned_diff(),
                },
            },
        };
        match &verdict {
            Verdict::Accepted { diff } => self.accepted[req.pool] = Some(*diff),
            Verdict::Rejected(_) => {
                self.failures += 1;
                if self.failures > self.allowed_failures {
                    self.failed = Some(RoundError::TooManyFailures(self.allowed_failures));
                }
            }
            Verdict::Late => {}
        }
        verdict
    }

    /// `None` while the round goes on.
    pub fn outcome(&self) -> Option<Outcome> {
        if let Some(f) = &self.failed {
            return Some(Outcome::Failed(f.clone()));
        }
        match self.accepted {
            [Some(a), Some(b), Some(c)] if !agree([a, b, c]) => {
                Some(Outcome::Failed(RoundError::PoolsDisagree([a, b, c])))
            }
            [Some(a), Some(b), Some(c)] => Some(Outcome::Success {
                diffs: [a, b, c],
                median: median([a, b, c]),
            }),
            _ => None,
        }
    }

    pub fn failures(&self) -> usize {
        self.failures
    }
}

/// The middle of three: one liar, fast or slow, cannot move it outside the honest answers.
pub fn median(mut d: [f64; 3]) -> f64 {
    d.sort_by(f64::total_cmp);
    d[1]
}

/// The new time must not fall below the minimum time minus 100 s (replay protection).
pub fn check_floor(now: f64, offset: f64, minimum: i64) -> Result<(), RoundError> {
    let new = now + offset;
    if tor_control::time::below_floor(new, minimum) {
        return Err(RoundError::ReplayProtection {
            new_time: new as i64,
            minimum,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounds::EXPIRY;
    use crate::config::Scheme;
    use rand::SeedableRng;

    const NOW: f64 = 1_800_000_000.0;

    fn pools(sizes: [usize; 3]) -> Pools {
        let src = |p: usize, m: usize| Source {
            scheme: Scheme::Http,
            host: format!("p{p}m{m}"),
            port: 80,
            path: "/".into(),
            comment: String::new(),
        };
        Pools([0, 1, 2].map(|p| (0..sizes[p]).map(|m| src(p, m)).collect()))
    }

    fn bounds() -> Bounds {
        Bounds {
            minimum: 1_700_000_000,
            expiry: EXPIRY,
            consensus: Some((NOW as i64 - 3600, NOW as i64 + 7200)),
        }
    }

    fn answer(offset: i64) -> Answer {
        Answer {
            remote: NOW as i64 + offset,
            local_at_reply: NOW,
            round_trip: Duration::from_millis(400),
        }
    }

    /// Runs a round where `source_offset(pool, member)` gives each source's answer.
    fn run(
        sizes: [usize; 3],
        allowed: usize,
        seed: u64,
        source: impl Fn(usize, usize) -> Result<i64, FetchError>,
    ) -> (Outcome, usize) {
        let mut r = Round::new(pools(sizes), allowed, bounds());
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let mut asked = 0;
        for _ in 0..100 {
            if let Some(o) = r.outcome() {
                return (o, asked);
            }
            for req in r.next_requests(&mut rng) {
                asked += 1;
                let res = source(req.pool, req.member).map(answer);
                r.answer(&req, res);
            }
        }
        panic!("round did not end");
    }

    #[test]
    fn honest_sources_give_the_offset() {
        let (o, asked) = run([5, 5, 5], 0, 1, |_, _| Ok(30));
        let Outcome::Success { median, .. } = o else {
            panic!("{o:?}")
        };
        assert!((median - 30.7).abs() < 1e-9, "{median}"); // +0.2 half rtt, +0.5 truncation
        assert_eq!(asked, 3);
    }

    #[test]
    fn a_liar_is_rejected_and_another_member_asked() {
        for seed in 0..50 {
            // member 0 of every pool says +1 day: outside the consensus window.
            let (o, asked) = run([3, 3, 3], 3, seed, |_, m| {
                Ok(if m == 0 { 86_400 } else { 30 })
            });
            let Outcome::Success { diffs, .. } = o else {
                panic!("{o:?}")
            };
            assert!(diffs.iter().all(|d| (d - 30.7).abs() < 1e-9));
            assert!((3..=6).contains(&asked));
        }
    }

    #[test]
    fn failure_budget_and_exhausted_pools() {
        // A whole pool dead: fails once its members are used up.
        let (o, _) = run([3, 2, 3], 10, 3, |p, _| {
            if p == 1 {
                Err(FetchError::Closed)
            } else {
                Ok(0)
            }
        });
        assert!(
            matches!(o, Outcome::Failed(RoundError::PoolExhausted(1))),
            "{o:?}"
        );
        // More failures than allowed ends the round even with members left.
        let (o, asked) = run([9, 9, 9], 1, 4, |_, m| {
            if m < 4 {
                Err(FetchError::Closed)
            } else {
                Ok(0)
            }
        });
        if let Outcome::Failed(e) = &o {
            assert!(matches!(e, RoundError::TooManyFailures(1)), "{e:?}");
        } else {
            // Only possible when at most one dead member was picked.
            assert!(asked <= 4, "{o:?} after {asked}");
        }
    }

    #[test]
    fn hedges_stay_inside_the_budget_and_late_answers_do_not_count() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        // Budget 2: two pools may be hedged, the third not.
        let mut r = Round::new(pools([3, 3, 3]), 2, bounds());
        let first = r.next_requests(&mut rng);
        assert_eq!(first.len(), 3);
        let h0 = r.hedge(0, &mut rng).expect("hedge pool 0");
        assert!(r.hedge(0, &mut rng).is_none(), "one hedge per slow fetch");
        assert!(r.hedge(1, &mut rng).is_some());
        assert!(
            r.hedge(2, &mut rng).is_none(),
            "a third hedge could exceed the budget"
        );
        assert_ne!(h0.member, first[0].member);
        // Pool 0: the hedge answers first; the slow original then fails, and does not count.
        assert!(matches!(
            r.answer(&h0, Ok(answer(30))),
            Verdict::Accepted { .. }
        ));
        assert!(matches!(
            r.answer(&first[0], Err(FetchError::Closed)),
            Verdict::Late
        ));
        assert_eq!(r.failures(), 0);
        // A pool that already answered is never hedged.
        assert!(r.hedge(0, &mut rng).is_none());
    }

    #[test]
    fn the_window_at_judging_time_decides() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(6);
        let mut r = Round::new(pools([2, 2, 2]), 5, bounds());
        let reqs = r.next_requests(&mut rng);
        // tor got a newer consensus during the round: the answer is inside the new window.
        r.set_consensus(Some((NOW as i64 + 3600, NOW as i64 + 7200)));
        assert!(matches!(
            r.answer(&reqs[0], Ok(answer(4000))),
            Verdict::Accepted { .. }
        ));
        assert!(matches!(
            r.answer(&reqs[1], Ok(answer(30))),
            Verdict::Rejected(Rejection::Bounds(OutOfBounds::BeforeConsensus { .. }))
        ));
    }

    #[test]
    fn a_pool_far_from_both_others_is_outvoted_and_no_agreement_is_refused() {
        assert_eq!(outvoted([0.5, 3600.0, 1.0]), Some(1));
        assert_eq!(outvoted([86_400.0, 86_401.0, 90_000.0]), Some(2));
        assert_eq!(outvoted([0.0, 30.0, 59.0]), None);
        // A chain (0 ~ 50 ~ 100): every pool has a neighbour within AGREE_S; no outlier.
        assert_eq!(outvoted([0.0, 50.0, 100.0]), None);
        assert!(agree([0.0, 50.0, 100.0]) && agree([0.0, 0.0, 1e6]));
        assert!(!agree([0.0, 100.0, 200.0]));
        assert!(outvoted([0.0, 100.0, 200.0]).is_none());
    }

    #[test]
    fn median_is_robust_to_one_outlier() {
        assert_eq!(median([1.0, 100_000.0, 2.0]), 2.0);
        assert_eq!(median([-5e9, 1.0, 2.0]), 1.0);
        assert_eq!(median([3.0, 3.0, 3.0]), 3.0);
    }

    #[test]
    fn replay_floor() {
        assert!(check_floor(NOW, 0.0, NOW as i64).is_ok());
        assert!(check_floor(NOW, -99.0, NOW as i64).is_ok());
        assert!(matches!(
            check_floor(NOW, -101.0, NOW as i64),
            Err(RoundError::ReplayProtection { .. })
        ));
    }
}
