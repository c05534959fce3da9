//! The shell around the core: wait for Tor's consensus, fetch (hedging slow sources), decide,
//! set the clock, write the status files, sleep (watching for a suspend).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use log::{error, info, warn};
use rand::Rng;
use rand_chacha::ChaCha20Rng;

use crate::bounds::{utc, Bounds, EXPIRY};
use crate::clock::Clock;
use crate::config::Config;
use crate::control::ControlPort;
use crate::minimum::minimum_unixtime;
use crate::pools::{allowed_failures, Pools};
use crate::round::{check_floor, outvoted, Outcome, Request, Round, RoundError, Verdict};
use crate::schedule::{self, SuspendDetector, TICK};
use crate::slew::{Slew, INTERVAL};
use crate::status::{Icon, StatusDir};
use crate::transport::{Transport, WindowError};

/// What one round gave.
#[derive(Debug, Clone)]
pub enum RoundResult {
    /// The clock was (or, in a dry run, would have been) corrected by `offset` seconds.
    Success {
        offset: f64,
        stepped: bool,
    },
    Failed(RoundError),
}

/// After a resume, a correction at least this large is stepped, not slewed for hours ...
pub const RESUME_STEP_S: f64 = 1.0;
/// ... if it moves the clock forward by at most the time asleep plus this: a clock that stood
/// still while the machine slept is behind by at most that much, never ahead. Anything else
/// (backwards, or further forward) is slewed as at any other time, so that two colluding
/// pools gain no jump from a suspend. The slack covers the round's own spread (the median,
/// the Date header's second, RANDOMIZE_TIME's second).
pub const RESUME_STEP_SLACK_S: f64 = 10.0;

/// A clock this far before Tor's consensus valid-after is stepped forward to it before a
/// round. Tor itself tolerates less than a day (C tor's "reasonably live" consensus, arti's
/// pre-valid tolerance) and an honest clock can be a few minutes early (a consensus is
/// fetched up to 5 min before its valid-after); an hour is past any honest difference and
/// well inside what Tor still works with.
pub const BEHIND_CONSENSUS_S: f64 = 3600.0;

/// Where the clock goes when it is far behind Tor's consensus (the offset to step), if it is.
/// A consensus Tor accepted (signatures checked) cannot exist before its valid-after, so the
/// time is at least that late; the replay-protection floor and the build date say the same
/// of themselves. The move is only ever forward: a consensus proves nothing about how late it
/// is (an old one can be replayed), so a clock ahead of it is never pulled back by it.
pub fn behind_consensus(now: f64, valid_after: i64, minimum: i64) -> Option<f64> {
    let target = valid_after.max(minimum) as f64;
    (now < valid_after as f64 - BEHIND_CONSENSUS_S).then_some(target - now)
}

/// CLOCK_BOOTTIME and CLOCK_MONOTONIC in nanoseconds (injected: tests simulate a suspend).
pub type BootClocks = Arc<dyn Fn() -> (i128, i128) + Send + Sync>;

/// Tor's consensus window: from a transport that holds Tor's directory itself (arti), else
/// from tor's control port; `None` only with `CONTROL_PORT=none`. `fresh`: before a round
/// (arti may wait for a newer consensus); else read at once, when an answer is judged.
async fn window<T: Transport>(
    transport: &T,
    control: Option<&ControlPort>,
    fresh: bool,
) -> Result<Option<(i64, i64)>, WindowError> {
    let own = if fresh {
        transport.consensus_window().await
    } else {
        transport.consensus_window_now().await
    };
    match (own, control) {
        (Some(w), _) => w.map(Some),
        (None, None) => Ok(None),
        (None, Some(c)) => c.consensus_window().await.map(Some),
    }
}

/// What a status message may carry: printable text, at most 300 characters. Parts of it come
/// from outside (a control port's refusal, a source's error) and end up in sdwdate-gui, the
/// journal and systemd's STATUS=.
pub fn sanitize(message: &str) -> String {
    let clean: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if message.chars().count() > 300 {
        format!("{clean}...")
    } else {
        clean
    }
}

/// The real ones.
pub fn boot_clocks() -> (i128, i128) {
    use nix::time::{clock_gettime, ClockId};
    let ns = |c| {
        clock_gettime(c).map_or(0, |t| {
            i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())
        })
    };
    (ns(ClockId::CLOCK_BOOTTIME), ns(ClockId::CLOCK_MONOTONIC))
}

pub struct Daemon<T: Transport> {
    pub cfg: Config,
    pub transport: T,
    pub clock: Arc<dyn Clock>,
    pub status: StatusDir,
    pub control: Option<ControlPort>,
    /// Files holding minimum times besides the replay-protection file.
    pub minimum_files: Vec<PathBuf>,
    pub rng: ChaCha20Rng,
    /// Step even when a slew would be due (`--once`: a slew would outlive the process).
    pub always_step: bool,
    /// How long a round waits for Tor to have a consensus before it fails.
    pub consensus_wait: Duration,
    /// A fetch without an answer after this is hedged with another member of its pool.
    pub hedge_after: Duration,
    pub boot_clocks: BootClocks,
    /// The sleeps between rounds are divided by this (1 in production; the soak test runs a
    /// day of rounds in minutes with a large one).
    pub sleep_divisor: u32,
    /// A suspend was seen since the last success: how long the machine slept, in seconds.
    resumed: Option<f64>,
    /// The clock was stepped into Tor's consensus window since the last success: the next
    /// correction is stepped too (the consensus put the clock at its valid-after, not right),
    /// if it goes forward by at most this (the window's width): the time can only be later
    /// than valid-after, and the answers are inside the window.
    consensus_stepped: Option<f64>,
    /// The last success's outvoted pool and how far it was from the median, for the status.
    outvoted: Option<(usize, f64)>,
    slew: Option<tokio::task::JoinHandle<()>>,
}

impl<T: Transport> std::fmt::Debug for Daemon<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

fn notify(state: &str) {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Custom(state)]);
}

/// Tells systemd's watchdog that the daemon is alive (a no-op without a watchdog).
fn watchdog() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
}

impl<T: Transport> Daemon<T> {
    pub fn new(
        cfg: Config,
        transport: T,
        clock: Arc<dyn Clock>,
        status: StatusDir,
        rng: ChaCha20Rng,
    ) -> Daemon<T> {
        Daemon {
            cfg,
            transport,
            clock,
            status,
            control: None,
            minimum_files: Vec::new(),
            rng,
            always_step: false,
            consensus_wait: Duration::from_secs(120),
            hedge_after: Duration::from_secs(10),
            boot_clocks: Arc::new(boot_clocks),
            sleep_divisor: 1,
            resumed: None,
            consensus_stepped: None,
            outvoted: None,
            slew: None,
        }
    }

    fn set_status(&self, icon: Icon, message: &str) {
        let message = &sanitize(message);
        if let Err(e) = self.status.status(icon, message) {
            error!("cannot write {}: {e}", self.status.run_dir.display());
        }
        notify(&format!("STATUS={message}"));
    }

    async fn window(&self, fresh: bool) -> Result<Option<(i64, i64)>, WindowError> {
        window(&self.transport, self.control.as_ref(), fresh).await
    }

    /// Waits (bounded, polling) for Tor to have a consensus: right after boot tor is still
    /// starting or bootstrapping, and failing blindly would only add a back-off.
    async fn wait_for_window(&self) -> Result<Option<(i64, i64)>, RoundError> {
        const POLL: Duration = Duration::from_secs(2);
        let deadline = tokio::time::Instant::now() + self.consensus_wait;
        let mut said = false;
        loop {
            match self.window(true).await {
                Ok(w) => return Ok(w),
                Err(e) if tokio::time::Instant::now() + POLL >= deadline => {
                    return Err(RoundError::NoConsensus(e))
                }
                Err(e) => {
                    if !said {
                        info!(
                            "waiting up to {} s for Tor's consensus window: {e}",
                            self.consensus_wait.as_secs()
                        );
                        self.set_status(
                            Icon::Busy,
                            "Waiting for Tor's consensus (Tor is starting or bootstrapping).",
                        );
                        said = true;
                    }
                    watchdog();
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    /// Asks the pools until one valid answer per pool or the round fails.
    pub async fn fetch_round(&mut self) -> Result<f64, RoundError> {
        let first_window = self.wait_for_window().await?;
        if let Some((a, u)) = first_window {
            info!("Tor consensus window: {} .. {}", utc(a), utc(u));
        }
        let replay = self.status.replay_file();
        let mut files: Vec<&std::path::Path> = vec![&replay];
        files.extend(self.minimum_files.iter().map(PathBuf::as_path));
        let bounds = Bounds {
            minimum: minimum_unixtime(&files),
            expiry: EXPIRY,
            consensus: first_window,
        };
        if let Some(window) = first_window {
            self.step_into_window(window, bounds)?;
        }
        // Organisation groups are picked anew every round, as upstream does.
        let pools = Pools::pick(&self.cfg, &mut self.rng);
        let budget = allowed_failures(self.cfg.total_members(), self.cfg.max_failure_ratio);
        let mut round = Round::new(pools, budget, bounds);
        let (transport, clock) = (&self.transport, self.clock.as_ref());
        let control = self.control.as_ref();
        // One fetch; every fetch gets its own isolation string, so its own circuit. An answer
        // comes with the consensus window read right after it (tor may have a newer one by
        // now), inside the fetch, so that no answer waits for another's window to be read.
        let fetch = |req: Request, iso: String| async move {
            let r = transport.fetch(&req.source, &iso, clock).await;
            let w = match &r {
                Ok(_) => Some(window(transport, control, false).await),
                Err(_) => None,
            };
            (req, r, w)
        };
        let mut inflight = FuturesUnordered::new();
        // When each pool's oldest unanswered fetch started (for the hedge).
        let mut since: [Option<tokio::time::Instant>; 3] = [None; 3];
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let outcome = loop {
            for req in round.next_requests(&mut self.rng) {
                since[req.pool] = Some(tokio::time::Instant::now());
                let iso = format!("sdwdate-{:032x}", self.rng.random::<u128>());
                inflight.push(fetch(req, iso));
            }
            for (pool, started) in since.iter_mut().enumerate() {
                if started.is_none_or(|t| t.elapsed() < self.hedge_after) {
                    continue;
                }
                if let Some(req) = round.hedge(pool, &mut self.rng) {
                    info!(
                        "pool {pool}: no answer after {} s; asking {} too, on its own circuit",
                        self.hedge_after.as_secs(),
                        req.source
                    );
                    let iso = format!("sdwdate-{:032x}", self.rng.random::<u128>());
                    inflight.push(fetch(req, iso));
                    *started = None;
                } else if !round.wants_hedge(pool) {
                    *started = None;
                }
                // Else the budget refused it for now: asked again on every tick and answer,
                // so the hedge goes out as soon as another pool's answer frees the budget.
            }
            if let Some(o) = round.outcome() {
                break o;
            }
            if inflight.is_empty() {
                // Not reachable: a pool without an answer always has a fetch under way.
                round.fail(RoundError::NothingToWaitFor);
                continue;
            }
            tokio::select! {
                Some((req, res, w)) = inflight.next() => {
                    // Judged by the window as it was when the answer came.
                    match w {
                        Some(Ok(w)) => round.set_consensus(w),
                        Some(Err(e)) => round.fail(RoundError::NoConsensus(e)),
                        None => {}
                    }
                    let pool = req.pool;
                    match round.answer(&req, res) {
                        Verdict::Accepted { diff } => {
                            info!("pool {pool}: {}: accepted, offset {diff:+.3} s", req.source)
                        }
                        Verdict::Rejected(why) => {
                            warn!("pool {pool}: {}: rejected: {why}", req.source)
                        }
                        Verdict::Late => {}
                    }
                    // A hedged twin still under way may be hedged again later.
                    since[pool] = Some(tokio::time::Instant::now());
                }
                _ = tick.tick() => watchdog(),
            }
        };
        // Whatever is still under way is dropped here: its circuit is closed.
        drop(inflight);
        match outcome {
            Outcome::Failed(why) => Err(why),
            Outcome::Success { diffs, median } => {
                info!(
                    "offsets {:+.3} / {:+.3} / {:+.3} s, median {median:+.3} s",
                    diffs[0], diffs[1], diffs[2]
                );
                self.outvoted = outvoted(diffs).map(|p| (p, diffs[p] - median));
                if let Some((pool, off)) = self.outvoted {
                    warn!(
                        "pool {pool} is {off:+.3} s from the other two, which agree: outvoted \
                         (honest sources agree to a few seconds; is one of its sources lying?)"
                    );
                }
                let mut offset = median;
                if self.cfg.randomize_time {
                    offset += self.rng.random_range(-1.0..1.0);
                }
                check_floor(self.clock.now(), offset, round.bounds().minimum)?;
                Ok(offset)
            }
        }
    }

    /// A clock far behind the consensus ([`behind_consensus`]) goes forward into it first:
    /// from there Tor cannot build circuits (C tor wants a consensus no more than a day
    /// ahead of the clock, arti refuses one not yet valid), and no source could ever answer.
    fn step_into_window(
        &mut self,
        (valid_after, valid_until): (i64, i64),
        bounds: Bounds,
    ) -> Result<(), RoundError> {
        if valid_after > bounds.expiry {
            // No honest consensus is from after the expiry; the answers would be refused too.
            return Ok(());
        }
        let Some(offset) = behind_consensus(self.clock.now(), valid_after, bounds.minimum) else {
            return Ok(());
        };
        let to = utc((self.clock.now() + offset) as i64);
        self.clock.step(offset).map_err(RoundError::Clock)?;
        info!(
            "{} by {offset:+.3} s to {to}: it was before Tor's consensus valid-after {} (from \
             there Tor cannot work); the sources' time follows",
            if self.clock.is_dry_run() {
                "dry-run: the clock would be stepped"
            } else {
                "clock stepped"
            },
            utc(valid_after)
        );
        self.consensus_stepped = Some((valid_until - valid_after) as f64 + RESUME_STEP_SLACK_S);
        Ok(())
    }

    /// One full round: status files, fetching, and setting the clock.
    pub async fn round(&mut self) -> RoundResult {
        if let Some(h) = self.slew.take() {
            h.abort(); // upstream kills sclockadj before the next cycle
        }
        if let Err(e) = self.status.round_started() {
            error!("cannot update {}: {e}", self.status.run_dir.display());
        }
        self.set_status(
            Icon::Busy,
            "Running. Fetching the time from onion sources over Tor.",
        );
        // The time the sources agree on, taken before the clock moves: what replay
        // protection records (a slew or a dry run has not corrected the clock yet).
        let mut true_now = self.clock.now();
        let result = match self.fetch_round().await {
            Err(why) => RoundResult::Failed(why),
            Ok(offset) => {
                true_now = self.clock.now() + offset;
                match self.set_clock(offset) {
                    Ok(stepped) => RoundResult::Success { offset, stepped },
                    Err(e) => RoundResult::Failed(RoundError::Clock(e)),
                }
            }
        };
        let written = match &result {
            RoundResult::Success { .. } => {
                self.resumed = None;
                self.consensus_stepped = None;
                self.status
                    .succeeded()
                    .and_then(|()| self.status.write_replay_protection(true_now.floor() as i64))
            }
            RoundResult::Failed(_) => self.status.failed(),
        };
        if let Err(e) = written {
            error!("cannot write the status files: {e}");
        }
        result
    }

    /// Step or slew. Steps: the first success since boot, `--once`, a request by
    /// `sdwdate-clock-jump` (/run/sdwdate/clock_jump_do_once), and after a resume a forward
    /// correction of [`RESUME_STEP_S`] up to the time asleep plus [`RESUME_STEP_SLACK_S`] (the
    /// clock may be hours behind; a slew would take days). Everything else is slewed.
    fn set_clock(&mut self, offset: f64) -> Result<bool, crate::clock::ClockError> {
        let why = if self.always_step {
            Some("one round only")
        } else if !self.status.first_success_exists() {
            Some("first success since boot")
        } else if self.status.clock_jump_requested() {
            Some("clock jump requested")
        } else if self
            .consensus_stepped
            .is_some_and(|most| (-RESUME_STEP_SLACK_S..=most).contains(&offset))
        {
            Some("after a step into Tor's consensus window")
        } else if self
            .resumed
            .is_some_and(|asleep| (RESUME_STEP_S..=asleep + RESUME_STEP_SLACK_S).contains(&offset))
        {
            Some("after a suspend")
        } else {
            None
        };
        if let Some(why) = why {
            self.clock.step(offset)?;
            if !self.clock.is_dry_run() {
                info!("clock stepped by {offset:+.3} s ({why})");
            }
            self.mark_synced();
            return Ok(true);
        }
        let plan = Slew::plan((offset * 1e9).round() as i64);
        info!(
            "{}slewing the clock by {offset:+.3} s over {} s",
            if self.clock.is_dry_run() {
                "dry-run: would be "
            } else {
                ""
            },
            plan.duration().as_secs()
        );
        let clock = Arc::clone(&self.clock);
        let tell_kernel = self.cfg.sync_hardware_clock;
        self.slew = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            for step in plan {
                tick.tick().await;
                if let Err(e) = clock.nudge(step) {
                    error!("slew stopped: {e}");
                    return;
                }
            }
            // Only now is the clock as right as the round said.
            if tell_kernel {
                if let Err(e) = clock.mark_synced() {
                    warn!("{e}");
                }
            }
        }));
        Ok(false)
    }

    /// The kernel is told the clock is right (see [`Clock::mark_synced`]), unless
    /// SYNC_HARDWARE_CLOCK=false; a failure is logged, never fatal: the clock itself is set.
    fn mark_synced(&self) {
        if !self.cfg.sync_hardware_clock {
            return;
        }
        if let Err(e) = self.clock.mark_synced() {
            warn!("{e}");
        }
    }

    /// Runs rounds forever (or once), sleeping on the monotonic clock in between.
    pub async fn run(mut self, once: bool) -> RoundResult {
        self.always_step |= once;
        if !self.cfg.sync_hardware_clock {
            info!("SYNC_HARDWARE_CLOCK=false: the kernel is not told the clock is synchronised, and does not copy it to the hardware clock");
            if let Err(e) = self.clock.mark_unsynced() {
                warn!("{e}");
            }
        }
        let mut failures = 0u32;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        loop {
            let result = self.round().await;
            let sleep = match &result {
                RoundResult::Success { offset, stepped } => {
                    failures = 0;
                    let sleep = schedule::after_success(&mut self.rng);
                    let how = if *stepped { "stepped" } else { "slewed" };
                    let dry = if self.clock.is_dry_run() {
                        " (dry run: not really)"
                    } else {
                        ""
                    };
                    let next = if once {
                        String::new()
                    } else {
                        format!(" Next run in {} minutes.", sleep.as_secs() / 60)
                    };
                    let outvoted = self.outvoted.map_or(String::new(), |(pool, off)| {
                        format!(
                            " Pool {pool} disagreed by {off:+.0} s and was outvoted by the \
                             other two."
                        )
                    });
                    self.set_status(
                        Icon::Success,
                        &format!(
                            "Success. Time offset {offset:+.3} s, clock {how}{dry}.{outvoted}{next}"
                        ),
                    );
                    sleep
                }
                RoundResult::Failed(why) => {
                    failures += 1;
                    let synced = self.status.first_success_exists();
                    let sleep = schedule::after_failure(failures, synced, &mut self.rng);
                    let next = if once {
                        String::new()
                    } else {
                        format!(" Retrying in {} s.", sleep.as_secs())
                    };
                    self.set_status(Icon::Error, &format!("Failed: {why}.{next}"));
                    error!("round failed: {why}");
                    sleep
                }
            };
            if once {
                return result;
            }
            let _ = self.status.sleeping(true);
            let sleep = sleep / self.sleep_divisor.max(1);
            if let Some(asleep) = self.sleep(sleep).await {
                info!("the machine was suspended for {asleep:.0} s: a round now");
                self.resumed = Some(self.resumed.unwrap_or(0.0) + asleep);
            }
        }
    }

    /// Sleeps up to `total` on the monotonic clock, feeding systemd's watchdog, and wakes
    /// early after a suspend (returning how long the machine slept).
    pub async fn sleep(&self, total: Duration) -> Option<f64> {
        let mut usec = 0u64;
        let chunk = if sd_notify::watchdog_enabled(false, &mut usec) {
            Duration::from_micros(usec / 2).clamp(Duration::from_secs(1), TICK)
        } else {
            TICK
        };
        let (b, m) = (self.boot_clocks)();
        let mut detector = SuspendDetector::new(b, m);
        let deadline = tokio::time::Instant::now() + total;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return None;
            }
            watchdog();
            tokio::time::sleep((deadline - now).min(chunk)).await;
            let (b, m) = (self.boot_clocks)();
            if let Some(asleep) = detector.observe(b, m) {
                return Some(asleep);
            }
        }
    }
}

/// The production generator: ChaCha20 seeded from the OS.
pub fn os_rng() -> ChaCha20Rng {
    use rand::SeedableRng;
    ChaCha20Rng::from_os_rng()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ClockError;
    use crate::config::{Member, Source};
    use crate::round::Answer;
    use crate::transport::FetchError;
    use rand::SeedableRng;
    use std::sync::Mutex;

    const ONION: &str = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion";

    /// Every source answers `offset` seconds ahead of the fake clock, after `delay`, except
    /// the `dead` ones (never); isolation strings are recorded.
    struct FakeTransport {
        offset: f64,
        delay: Duration,
        dead: Vec<String>,
        isolation: Mutex<Vec<String>>,
        /// The hosts asked, in order.
        asked: Mutex<Vec<String>>,
        /// What the transport says about its own consensus (None: it has none, as SOCKS).
        window: Option<Result<(i64, i64), WindowError>>,
        /// The first this many reads before a round fail (tor still bootstrapping).
        not_yet: std::sync::atomic::AtomicUsize,
        /// What a read when judging says, if not `window` (tor got a newer consensus).
        judging: Option<Result<(i64, i64), WindowError>>,
        /// Sources that know the true time: they answer it, whatever the clock says (and
        /// `offset` is ignored).
        truth: Option<f64>,
        /// Hosts that answer with another offset.
        skewed: Vec<(String, f64)>,
    }

    impl Transport for FakeTransport {
        async fn fetch(
            &self,
            s: &Source,
            isolation: &str,
            clock: &dyn Clock,
        ) -> Result<Answer, FetchError> {
            self.isolation
                .lock()
                .expect("lock")
                .push(isolation.to_owned());
            self.asked.lock().expect("lock").push(s.host.clone());
            if self.dead.contains(&s.host) {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(self.delay).await;
            let now = clock.now();
            let offset = self
                .skewed
                .iter()
                .find(|(h, _)| *h == s.host)
                .map_or(self.offset, |(_, o)| *o);
            Ok(Answer {
                remote: self.truth.unwrap_or(now + offset).floor() as i64,
                local_at_reply: now,
                round_trip: Duration::ZERO,
            })
        }

        async fn consensus_window(&self) -> Option<Result<(i64, i64), WindowError>> {
            use std::sync::atomic::Ordering;
            let left = self.not_yet.load(Ordering::SeqCst);
            if left > 0 {
                self.not_yet.store(left - 1, Ordering::SeqCst);
                return Some(Err(no_answer()));
            }
            self.window.clone()
        }

        async fn consensus_window_now(&self) -> Option<Result<(i64, i64), WindowError>> {
            self.judging.clone().or_else(|| self.window.clone())
        }
    }

    /// A window that cannot be read: a control port that did not answer.
    fn no_answer() -> WindowError {
        WindowError::ControlTimeout("127.0.0.1:9051".parse().expect("addr"))
    }

    /// Where the fake clock starts.
    const FAKE_NOW: f64 = 1_900_000_000.25;

    /// A clock that records what was done to it (and, with `moves`, is moved by its steps).
    #[derive(Default)]
    struct FakeClock {
        steps: Mutex<Vec<f64>>,
        nudges: Mutex<Vec<i64>>,
        /// Every mark_synced, with the nudges made by then.
        synced: Mutex<Vec<usize>>,
        moves: std::sync::atomic::AtomicBool,
    }

    impl Clock for FakeClock {
        fn now(&self) -> f64 {
            if !self.moves.load(std::sync::atomic::Ordering::SeqCst) {
                return FAKE_NOW;
            }
            FAKE_NOW + self.steps.lock().expect("lock").iter().sum::<f64>()
        }
        fn step(&self, offset: f64) -> Result<(), ClockError> {
            self.steps.lock().expect("lock").push(offset);
            Ok(())
        }
        fn nudge(&self, ns: i64) -> Result<(), ClockError> {
            self.nudges.lock().expect("lock").push(ns);
            Ok(())
        }
        fn mark_synced(&self) -> Result<(), ClockError> {
            let n = self.nudges.lock().expect("lock").len();
            self.synced.lock().expect("lock").push(n);
            Ok(())
        }
        fn mark_unsynced(&self) -> Result<(), ClockError> {
            self.synced.lock().expect("lock").push(usize::MAX);
            Ok(())
        }
    }

    fn config() -> Config {
        let src = Source::parse_url(&format!("http://{ONION}"), "").expect("url");
        Config {
            pools: [0, 1, 2].map(|_| vec![Member::One(src.clone())]),
            ..Config::default()
        }
    }

    /// A daemon over the fake transport and clock, its files in a fresh directory.
    fn daemon(
        tag: &str,
        offset: f64,
        window: Option<Result<(i64, i64), WindowError>>,
    ) -> (PathBuf, Arc<FakeClock>, Daemon<FakeTransport>) {
        daemon_with(tag, offset, window, false)
    }

    /// The same, as a dry run's status files (`dry`) or the daemon's.
    fn daemon_with(
        tag: &str,
        offset: f64,
        window: Option<Result<(i64, i64), WindowError>>,
        dry: bool,
    ) -> (PathBuf, Arc<FakeClock>, Daemon<FakeTransport>) {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let status = if dry {
            std::fs::create_dir_all(dir.join("run")).expect("mkdir");
            StatusDir::dry_run(dir.join("run"), dir.join("state"))
        } else {
            StatusDir::new(dir.join("run"), dir.join("state"))
        };
        status.init().expect("init");
        let clock = Arc::new(FakeClock::default());
        let transport = FakeTransport {
            offset,
            delay: Duration::ZERO,
            dead: Vec::new(),
            isolation: Mutex::new(Vec::new()),
            asked: Mutex::new(Vec::new()),
            window,
            not_yet: Default::default(),
            judging: None,
            truth: None,
            skewed: Vec::new(),
        };
        let d = Daemon::new(
            config(),
            transport,
            clock.clone(),
            status,
            ChaCha20Rng::seed_from_u64(9),
        );
        (dir, clock, d)
    }

    #[tokio::test(start_paused = true)]
    async fn first_success_steps_later_ones_slew_and_every_fetch_is_isolated() {
        let (dir, clock, mut d) = daemon("sdw-daemon", 2.0, None);

        let r = d.round().await;
        let RoundResult::Success {
            offset,
            stepped: true,
        } = r
        else {
            panic!("{r:?}")
        };
        // remote = floor(now + 2) = now + 1.75; +0.5 for the truncated Date header.
        assert!((offset - 2.25).abs() < 1e-6, "{offset}");
        assert_eq!(clock.steps.lock().expect("lock").as_slice(), &[offset]);
        // The kernel is told right after the step ...
        assert_eq!(clock.synced.lock().expect("lock").as_slice(), &[0]);

        let r = d.round().await;
        assert!(
            matches!(r, RoundResult::Success { stepped: false, .. }),
            "{r:?}"
        );
        // Let the slew run to its end (paused time advances instantly).
        tokio::time::sleep(Duration::from_secs(1000)).await;
        let nudges = clock.nudges.lock().expect("lock").clone();
        assert_eq!(nudges.iter().sum::<i64>(), 2_250_000_000);
        // ... and after a slew only once it is done.
        assert_eq!(
            clock.synced.lock().expect("lock").as_slice(),
            &[0, nudges.len()]
        );
        assert!(nudges.iter().all(|n| *n <= 5_000_000));
        assert_eq!(
            clock.steps.lock().expect("lock").len(),
            1,
            "a later success must not step"
        );

        let iso = d.transport.isolation.lock().expect("lock").clone();
        let unique: std::collections::HashSet<_> = iso.iter().collect();
        assert_eq!(
            (iso.len(), unique.len()),
            (6, 6),
            "one circuit per fetch: {iso:?}"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// SYNC_HARDWARE_CLOCK=false: the clock is stepped and slewed as usual, and the kernel is
    /// never told it is synchronised (so it never copies it to the hardware clock).
    #[tokio::test(start_paused = true)]
    async fn the_hardware_clock_switch_keeps_the_kernel_untold() {
        let (dir, clock, mut d) = daemon("sdw-hwclock", 2.0, None);
        d.cfg.sync_hardware_clock = false;
        let r = d.round().await;
        assert!(
            matches!(r, RoundResult::Success { stepped: true, .. }),
            "{r:?}"
        );
        let r = d.round().await;
        assert!(
            matches!(r, RoundResult::Success { stepped: false, .. }),
            "{r:?}"
        );
        tokio::time::sleep(Duration::from_secs(1000)).await;
        assert_eq!(clock.steps.lock().expect("lock").len(), 1);
        assert!(!clock.nudges.lock().expect("lock").is_empty());
        assert!(clock.synced.lock().expect("lock").is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");

        // The daemon takes back, at start, what an earlier run told the kernel.
        let (dir, clock, mut d) = daemon("sdw-hwclock-run", 2.0, None);
        d.cfg.sync_hardware_clock = false;
        let r = d.run(true).await;
        assert!(
            matches!(r, RoundResult::Success { stepped: true, .. }),
            "{r:?}"
        );
        assert_eq!(clock.synced.lock().expect("lock").as_slice(), &[usize::MAX]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// Section 3 of issue 27: a clock far behind Tor's consensus (a month, a day; Tor cannot
    /// work from there) is stepped forward to its valid-after, and the next success steps the
    /// rest (even with an earlier success this boot). Never backwards: a consensus replayed
    /// from a week ago does not pull a right clock into the past (the sources' answers are
    /// outside it, and the round fails with the clock untouched). And a consensus older than
    /// the replay floor moves a clock behind both only to the floor.
    #[tokio::test(start_paused = true)]
    async fn a_clock_far_behind_the_consensus_goes_forward_into_it_and_never_back() {
        const DAY: f64 = 86_400.0;
        for behind in [30.0 * DAY, DAY, 2.0 * BEHIND_CONSENSUS_S] {
            let (dir, clock, mut d) = daemon("sdw-behind", 0.0, None);
            clock.moves.store(true, std::sync::atomic::Ordering::SeqCst);
            let truth = FAKE_NOW + behind;
            let after = (truth - 1800.0) as i64;
            d.transport.window = Some(Ok((after, after + 3 * 3600)));
            d.transport.truth = Some(truth);
            // An earlier success this boot: without the consensus step the rest would be slewed.
            std::fs::create_dir_all(dir.join("run")).expect("mkdir");
            std::fs::write(dir.join("run/first_success"), "").expect("first_success");
            let r = d.round().await;
            assert!(
                matches!(r, RoundResult::Success { stepped: true, .. }),
                "{behind}: {r:?}"
            );
            let steps = clock.steps.lock().expect("lock").clone();
            assert_eq!(steps.len(), 2, "{behind}: {steps:?}");
            assert!(
                (FAKE_NOW + steps[0] - after as f64).abs() < 1e-6,
                "{behind}: {steps:?}"
            );
            assert!(
                (clock.now() - truth).abs() <= 1.0,
                "{behind}: {}",
                clock.now() - truth
            );
            // The next correction is a slew again.
            let r = d.round().await;
            assert!(
                matches!(r, RoundResult::Success { stepped: false, .. }),
                "{behind}: {r:?}"
            );
            std::fs::remove_dir_all(&dir).expect("cleanup");
        }

        // After a step into the window, a correction further forward than the window is wide
        // (pools answering beyond it could not be accepted; here the window moved on) or
        // backwards is slewed, not stepped: the step is for what the consensus explains.
        let (dir, clock, mut d) = daemon("sdw-behind-bounded", 0.0, None);
        clock.moves.store(true, std::sync::atomic::Ordering::SeqCst);
        let truth = FAKE_NOW + 30.0 * DAY;
        let after = (truth - 1800.0) as i64;
        d.transport.window = Some(Ok((after, after + 3 * 3600)));
        d.transport.judging = Some(Ok((after + 3 * 3600, after + 6 * 3600)));
        d.transport.truth = Some(truth + 4.0 * 3600.0);
        std::fs::create_dir_all(dir.join("run")).expect("mkdir");
        std::fs::write(dir.join("run/first_success"), "").expect("first_success");
        let r = d.round().await;
        assert!(
            matches!(r, RoundResult::Success { stepped: false, .. }),
            "{r:?}"
        );
        assert_eq!(
            clock.steps.lock().expect("lock").len(),
            1,
            "only the consensus step"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");

        // A consensus from after the expiry (2033) steps nothing.
        let (dir, clock, mut d) = daemon("sdw-behind-expiry", 0.0, None);
        clock.moves.store(true, std::sync::atomic::Ordering::SeqCst);
        let late = EXPIRY + 86_400;
        d.transport.window = Some(Ok((late, late + 3 * 3600)));
        d.transport.truth = Some(late as f64 + 60.0);
        let _ = d.round().await;
        assert!(clock.steps.lock().expect("lock").is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");

        // Behind, but within what Tor works with (less than BEHIND_CONSENSUS_S): the sources
        // say how far, no consensus step.
        let (dir, clock, mut d) = daemon("sdw-behind-little", 0.0, None);
        clock.moves.store(true, std::sync::atomic::Ordering::SeqCst);
        let truth = FAKE_NOW + 1200.0;
        d.transport.window = Some(Ok((truth as i64 - 60, truth as i64 + 3 * 3600)));
        d.transport.truth = Some(truth);
        let r = d.round().await;
        assert!(
            matches!(r, RoundResult::Success { stepped: true, .. }),
            "{r:?}"
        );
        assert_eq!(clock.steps.lock().expect("lock").len(), 1);
        std::fs::remove_dir_all(&dir).expect("cleanup");

        // A consensus replayed from a week ago, the clock right: not moved at all.
        let (dir, clock, mut d) = daemon("sdw-replayed", 0.0, None);
        clock.moves.store(true, std::sync::atomic::Ordering::SeqCst);
        let week_ago = (FAKE_NOW - 7.0 * DAY) as i64;
        d.transport.window = Some(Ok((week_ago, week_ago + 3 * 3600)));
        d.transport.truth = Some(FAKE_NOW);
        let r = d.round().await;
        assert!(matches!(r, RoundResult::Failed(_)), "{r:?}");
        assert!(clock.steps.lock().expect("lock").is_empty());
        assert!(clock.nudges.lock().expect("lock").is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");

        // The clock behind a replayed consensus that is itself older than the replay floor:
        // forward to the floor, never to the older consensus.
        assert_eq!(behind_consensus(1000.0, 10_000, 50_000), Some(49_000.0));
        assert_eq!(behind_consensus(1000.0, 10_000, 0), Some(9000.0));
        // Ahead of the consensus, or behind by less than the margin: nothing.
        assert_eq!(behind_consensus(20_000.0, 10_000, 0), None);
        assert_eq!(behind_consensus(9000.0, 10_000, 50_000), None);
    }

    /// The files others act on (anon-firewall's path unit, timesync-check, the next boot's
    /// floor) appear after a real success, with the time the sources agreed on, and never
    /// after a dry run's.
    #[tokio::test(start_paused = true)]
    async fn only_a_real_success_writes_what_says_synced() {
        let (dir, _clock, mut d) = daemon("sdw-files-real", 2.0, None);
        let r = d.round().await;
        let RoundResult::Success { offset, .. } = r else {
            panic!("{r:?}")
        };
        assert!(dir.join("run/success").exists() && dir.join("run/first_success").exists());
        let replay: i64 =
            std::fs::read_to_string(dir.join("state/time-replay-protection-utc-unixtime"))
                .expect("replay")
                .parse()
                .expect("a number");
        assert_eq!(replay, (FakeClock::default().now() + offset).floor() as i64);
        std::fs::remove_dir_all(&dir).expect("cleanup");

        for offset in [2.0, 3.0e6] {
            let (dir, _clock, mut d) = daemon_with("sdw-files-dry", offset, None, true);
            let _ = d.round().await;
            let mut names: Vec<String> = std::fs::read_dir(dir.join("run"))
                .expect("ls")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            assert_eq!(names, ["msg", "status"], "offset {offset}");
            assert!(!dir.join("state").exists(), "offset {offset}");
            std::fs::remove_dir_all(&dir).expect("cleanup");
        }
    }

    /// A transport with its own directory (arti): its window bounds the answers, and without
    /// it the round fails with nothing fetched and the clock untouched.
    #[tokio::test(start_paused = true)]
    async fn the_transports_consensus_window_is_used_and_required() {
        let now = FakeClock::default().now() as i64;
        for (tag, window, offset, ok) in [
            ("inside", Some(Ok((now - 60, now + 60))), 2.0, true),
            ("outside", Some(Ok((now - 60, now + 60))), 3600.0, false),
            ("missing", Some(Err(no_answer())), 2.0, false),
        ] {
            let (dir, clock, mut d) = daemon(&format!("sdw-window-{tag}"), offset, window);
            let r = d.round().await;
            assert_eq!(matches!(r, RoundResult::Success { .. }), ok, "{tag}: {r:?}");
            if !ok {
                assert!(clock.steps.lock().expect("lock").is_empty(), "{tag}");
            }
            if tag == "missing" {
                assert!(
                    matches!(&r, RoundResult::Failed(RoundError::NoConsensus(_))),
                    "{r:?}"
                );
                assert!(d.transport.isolation.lock().expect("lock").is_empty());
            }
            std::fs::remove_dir_all(&dir).expect("cleanup");
        }
    }

    fn onion(c: char) -> Source {
        let host: String = std::iter::repeat_n(c, 56).collect();
        Source::parse_url(&format!("http://{host}.onion"), "").expect("url")
    }

    /// Issue 27, section 2: one pool far from the other two (which agree) is outvoted, and
    /// the status says so; when no two pools agree, the round fails and the clock is left
    /// alone, whichever way the median would have gone.
    #[tokio::test(start_paused = true)]
    async fn a_lying_pool_is_outvoted_and_no_agreement_moves_nothing() {
        let (dir, clock, mut d) = daemon("sdw-outvoted", 2.0, None);
        d.cfg.pools = ['a', 'b', 'c'].map(|c| vec![Member::One(onion(c))]);
        d.transport.skewed = vec![(onion('b').host, 3600.0)];
        let r = d.run(true).await;
        let RoundResult::Success { offset, .. } = r else {
            panic!("{r:?}")
        };
        assert!(
            (offset - 2.25).abs() < 1e-6,
            "the honest pools' time: {offset}"
        );
        let status = std::fs::read_to_string(dir.join("run/status")).expect("status");
        assert!(
            status.contains("Pool 1 disagreed by +3598 s and was outvoted"),
            "{status}"
        );
        assert_eq!(clock.steps.lock().expect("lock").len(), 1);
        std::fs::remove_dir_all(&dir).expect("cleanup");

        let (dir, clock, mut d) = daemon("sdw-disagree", 2.0, None);
        d.cfg.pools = ['a', 'b', 'c'].map(|c| vec![Member::One(onion(c))]);
        d.transport.skewed = vec![(onion('b').host, 3600.0), (onion('c').host, -3600.0)];
        let r = d.run(true).await;
        assert!(
            matches!(r, RoundResult::Failed(RoundError::PoolsDisagree(_))),
            "{r:?}"
        );
        assert!(clock.steps.lock().expect("lock").is_empty());
        assert!(dir.join("run/fail").exists() && !dir.join("run/success").exists());
        let status = std::fs::read_to_string(dir.join("run/status")).expect("status");
        assert!(status.contains("the pools disagree"), "{status}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// Pools of three members each; the first member of every pool never answers.
    fn dead_first(d: &mut Daemon<FakeTransport>) {
        let letters = [['a', 'b', 'c'], ['d', 'e', 'f'], ['g', 'h', 'i']];
        d.cfg.pools = letters.map(|p| p.iter().map(|c| Member::One(onion(*c))).collect());
        d.cfg.max_failure_ratio = 1.0; // 9 members: 3 failures allowed
        d.transport.dead = ['a', 'd', 'g'].map(|c| onion(c).host).to_vec();
        d.transport.delay = Duration::from_secs(2);
    }

    /// The issue-27 case: one honest and one silent member per pool, every first pick silent.
    /// With a budget of 2 (6 members, MAX_FAILURE_RATIO=1) two pools are hedged at the hedge
    /// delay and the third as soon as one of them answers (before: never, and the round took
    /// the whole fetch timeout); with a budget of 3 all three at once.
    #[tokio::test(start_paused = true)]
    async fn every_slow_pool_is_hedged_when_the_budget_frees() {
        let fetch = Duration::from_secs(2);
        for (ratio, within) in [(1.0, 10 + 2 * 2 + 1), (1.5, 10 + 2 + 1)] {
            let mut all_silent_first = 0;
            for seed in 0..64 {
                let (dir, _clock, mut d) = daemon(
                    &format!("sdw-hedge-all-{seed}"),
                    2.0,
                    Some(Ok((0, i64::MAX))),
                );
                let letters = [['a', 'b'], ['c', 'd'], ['e', 'f']];
                d.cfg.pools = letters.map(|p| p.iter().map(|c| Member::One(onion(*c))).collect());
                d.cfg.max_failure_ratio = ratio;
                d.transport.dead = ['a', 'c', 'e'].map(|c| onion(c).host).to_vec();
                d.transport.delay = fetch;
                d.rng = ChaCha20Rng::seed_from_u64(seed);
                let started = tokio::time::Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(100), d.round()).await;
                let took = started.elapsed();
                let asked = d.transport.asked.lock().expect("lock").clone();
                std::fs::remove_dir_all(&dir).expect("cleanup");
                if !asked.iter().take(3).all(|h| d.transport.dead.contains(h)) {
                    continue;
                }
                all_silent_first += 1;
                assert!(
                    matches!(r, Ok(RoundResult::Success { .. })),
                    "ratio {ratio}, seed {seed}: {r:?} after {took:?}"
                );
                assert!(
                    took <= Duration::from_secs(within),
                    "ratio {ratio}, seed {seed}: {took:?}"
                );
            }
            assert!(
                all_silent_first >= 4,
                "ratio {ratio}: {all_silent_first} cases"
            );
        }
    }

    /// One dead source per pool costs a hedge delay, not the 120 s fetch timeout: a second
    /// member of the pool is asked (on its own circuit) and the round succeeds.
    #[test]
    fn status_messages_are_printable_and_bounded() {
        assert_eq!(sanitize("a\x1b[31mb\nc"), "a [31mb c");
        let long = "x".repeat(1000);
        assert_eq!(sanitize(&long).chars().count(), 303);
        assert_eq!(sanitize("Success. é"), "Success. é");
    }

    #[tokio::test(start_paused = true)]
    async fn dead_sources_are_hedged() {
        for seed in 0..20 {
            let (dir, _clock, mut d) =
                daemon(&format!("sdw-hedge-{seed}"), 2.0, Some(Ok((0, i64::MAX))));
            d.rng = ChaCha20Rng::seed_from_u64(seed);
            dead_first(&mut d);
            let started = tokio::time::Instant::now();
            let r = d.round().await;
            assert!(matches!(r, RoundResult::Success { .. }), "{seed}: {r:?}");
            let took = started.elapsed();
            assert!(took <= Duration::from_secs(14), "{seed}: {took:?}");
            let iso = d.transport.isolation.lock().expect("lock").clone();
            let unique: std::collections::HashSet<_> = iso.iter().collect();
            assert_eq!(unique.len(), iso.len(), "every fetch on its own circuit");
            std::fs::remove_dir_all(&dir).expect("cleanup");
        }
        // Without budget for it, no hedge: the round waits for the fetch (the transport's
        // own timeout ends it; here: never within 60 s).
        let (dir, _clock, mut d) = daemon("sdw-nohedge", 2.0, Some(Ok((0, i64::MAX))));
        dead_first(&mut d);
        d.cfg.max_failure_ratio = 0.0;
        d.rng = ChaCha20Rng::seed_from_u64(1); // picks a dead member first
        let r = tokio::time::timeout(Duration::from_secs(60), d.round()).await;
        let asked = d.transport.isolation.lock().expect("lock").len();
        assert!(r.is_err() && asked == 3, "{r:?}, {asked} fetches");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// A round waits for tor's consensus instead of failing at once; answers are judged by
    /// the window read when they arrive.
    #[tokio::test(start_paused = true)]
    async fn waits_for_the_consensus_and_judges_with_the_current_window() {
        let now = FakeClock::default().now() as i64;
        let (dir, clock, mut d) = daemon("sdw-wait", 2.0, Some(Ok((now - 60, now + 60))));
        d.transport.not_yet = 5.into();
        let r = d.round().await;
        assert!(matches!(r, RoundResult::Success { .. }), "{r:?}");
        // Never: the wait is bounded and the round fails with nothing fetched.
        d.transport.not_yet = 1000.into();
        d.consensus_wait = Duration::from_secs(30);
        let r = d.round().await;
        assert!(
            matches!(r, RoundResult::Failed(RoundError::NoConsensus(_))),
            "{r:?}"
        );
        // The window at judging time excludes the answers: rejected, clock untouched.
        let (dir2, clock2, mut d2) = daemon("sdw-judge", 2.0, Some(Ok((now - 60, now + 60))));
        d2.transport.judging = Some(Ok((now - 600, now - 300)));
        let r = d2.round().await;
        assert!(matches!(r, RoundResult::Failed(_)), "{r:?}");
        assert!(clock2.steps.lock().expect("lock").is_empty());
        // ... and one that cannot be read at judging time fails the round.
        d2.transport.judging = Some(Err(no_answer()));
        let r = d2.round().await;
        assert!(
            matches!(r, RoundResult::Failed(RoundError::NoConsensus(_))),
            "{r:?}"
        );
        assert_eq!(clock.steps.lock().expect("lock").len(), 1);
        for d in [dir, dir2] {
            std::fs::remove_dir_all(&d).expect("cleanup");
        }
    }

    /// A suspend (BOOTTIME jumps, MONOTONIC does not) ends the sleep at once, and the next
    /// correction is stepped even though the clock was synced before; a clock-jump request
    /// steps too.
    #[tokio::test(start_paused = true)]
    async fn suspend_and_clock_jump_step() {
        use std::sync::atomic::{AtomicI64, Ordering};
        let (dir, clock, mut d) = daemon("sdw-suspend", 30.0, None);
        let boot = Arc::new(AtomicI64::new(0));
        let b = boot.clone();
        d.boot_clocks = Arc::new(move || (i128::from(b.load(Ordering::SeqCst)), 0));
        assert!(matches!(
            d.round().await,
            RoundResult::Success { stepped: true, .. }
        ));
        assert!(matches!(
            d.round().await,
            RoundResult::Success { stepped: false, .. }
        ));
        // No suspend: the whole sleep.
        assert_eq!(d.sleep(Duration::from_secs(20)).await, None);
        // Suspended for an hour during the sleep.
        let bump = boot.clone();
        let sleeper = async {
            tokio::time::sleep(Duration::from_secs(7)).await;
            bump.store(3_600_000_000_000, Ordering::SeqCst);
            std::future::pending::<()>().await;
        };
        let started = tokio::time::Instant::now();
        let asleep = tokio::select! {
            a = d.sleep(Duration::from_secs(7200)) => a,
            _ = sleeper => None,
        };
        assert!(
            asleep.is_some_and(|a| (a - 3600.0).abs() < 1.0),
            "{asleep:?}"
        );
        assert!(
            started.elapsed() <= Duration::from_secs(11),
            "woke within a tick"
        );
        d.resumed = asleep;
        assert!(matches!(
            d.round().await,
            RoundResult::Success { stepped: true, .. }
        ));
        assert!(
            matches!(d.round().await, RoundResult::Success { stepped: false, .. }),
            "only once"
        );
        // sdwdate-clock-jump's request.
        std::fs::write(d.status.run_dir.join(crate::status::CLOCK_JUMP), "").expect("jump");
        assert!(matches!(
            d.round().await,
            RoundResult::Success { stepped: true, .. }
        ));
        assert!(!d.status.clock_jump_requested());
        assert_eq!(clock.steps.lock().expect("lock").len(), 3);
        // After an hour asleep only what the hour explains is stepped: the clock forward by
        // at most the time asleep (+ the slack). Backwards, or further forward, is slewed.
        for (offset, step) in [
            (1000.0, false), // asleep 1 s
            (-30.0, false),
            (-3000.0, false),
            (3605.0, true),
            (3600.0 + RESUME_STEP_SLACK_S + 5.0, false),
            (0.5, false),
        ] {
            let steps = clock.steps.lock().expect("lock").len();
            // (The fake clock does not move: the last round's replay floor would refuse a
            // later time below it.)
            let _ = std::fs::remove_file(d.status.replay_file());
            d.resumed = Some(if offset == 1000.0 { 1.0 } else { 3600.0 });
            d.transport.offset = offset;
            let r = d.round().await;
            assert!(
                matches!(r, RoundResult::Success { stepped, .. } if stepped == step),
                "offset {offset}: {r:?}"
            );
            assert_eq!(
                clock.steps.lock().expect("lock").len(),
                steps + usize::from(step),
                "offset {offset}"
            );
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
