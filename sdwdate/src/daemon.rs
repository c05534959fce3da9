//! The shell around the core: fetch, decide, set the clock, write the status files, sleep.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use log::{error, info, warn};
use rand::Rng;
use rand_chacha::ChaCha20Rng;

use crate::bounds::{Bounds, EXPIRY};
use crate::clock::Clock;
use crate::config::Config;
use crate::control::ControlPort;
use crate::minimum::minimum_unixtime;
use crate::pools::{allowed_failures, Pools};
use crate::round::{check_floor, Outcome, Round, Verdict};
use crate::schedule;
use crate::slew::{Slew, INTERVAL};
use crate::status::{Icon, StatusDir};
use crate::transport::Transport;

/// What one round gave.
#[derive(Debug, Clone, PartialEq)]
pub enum RoundResult {
    /// The clock was (or, in a dry run, would have been) corrected by `offset` seconds.
    Success {
        offset: f64,
        stepped: bool,
    },
    Failed(String),
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
    pools: Pools,
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

impl<T: Transport> Daemon<T> {
    /// Picks one onion of each organisation group for the daemon's lifetime, as upstream.
    pub fn new(
        cfg: Config,
        transport: T,
        clock: Arc<dyn Clock>,
        status: StatusDir,
        mut rng: ChaCha20Rng,
    ) -> Daemon<T> {
        let pools = Pools::pick(&cfg, &mut rng);
        Daemon {
            cfg,
            transport,
            clock,
            status,
            control: None,
            minimum_files: Vec::new(),
            rng,
            always_step: false,
            pools,
            slew: None,
        }
    }

    fn set_status(&self, icon: Icon, message: &str) {
        if let Err(e) = self.status.status(icon, message) {
            error!("cannot write {}: {e}", self.status.run_dir.display());
        }
        notify(&format!("STATUS={message}"));
    }

    /// The bounds an answer must fall in. A transport that holds Tor's directory itself
    /// (arti) must deliver the consensus window, else the round fails: with arti there is no
    /// reason to go without it. With a tor daemon the control port must answer too: a control
    /// port that is stopped, unreadable or without a consensus fails the round (upstream
    /// sdwdate also waits for tor's consensus); only `CONTROL_PORT=none` goes without it.
    async fn bounds(&self) -> Result<Bounds, String> {
        let replay = self.status.replay_file();
        let mut files: Vec<&std::path::Path> = vec![&replay];
        files.extend(self.minimum_files.iter().map(PathBuf::as_path));
        let consensus = match (self.transport.consensus_window().await, &self.control) {
            (Some(Ok(w)), _) => Some(w),
            (Some(Err(e)), _) => return Err(format!("no Tor consensus window: {e}")),
            (None, None) => None,
            (None, Some(c)) => match c.consensus_window().await {
                Ok(w) => Some(w),
                Err(e) => return Err(format!("no Tor consensus window: {e}")),
            },
        };
        Ok(Bounds {
            minimum: minimum_unixtime(&files),
            expiry: EXPIRY,
            consensus,
        })
    }

    /// Asks the pools until one valid answer per pool or the round fails.
    pub async fn fetch_round(&mut self) -> Result<f64, String> {
        let bounds = self.bounds().await?;
        if let Some((a, u)) = bounds.consensus {
            info!(
                "Tor consensus window: {} .. {}",
                crate::bounds::utc(a),
                crate::bounds::utc(u)
            );
        }
        let budget = allowed_failures(self.cfg.total_members(), self.cfg.max_failure_ratio);
        let mut round = Round::new(self.pools.clone(), budget, bounds);
        let outcome = loop {
            if let Some(o) = round.outcome() {
                break o;
            }
            let reqs = round.next_requests(&mut self.rng);
            let isolation: Vec<String> = reqs
                .iter()
                .map(|_| format!("sdwdate-{:032x}", self.rng.random::<u128>()))
                .collect();
            let fetch = |i: usize| {
                let (req, iso) = (reqs.get(i), isolation.get(i));
                let (transport, clock) = (&self.transport, self.clock.as_ref());
                async move {
                    match (req, iso) {
                        (Some(r), Some(iso)) => Some(transport.fetch(&r.source, iso, clock).await),
                        _ => None,
                    }
                }
            };
            let (a, b, c) = tokio::join!(fetch(0), fetch(1), fetch(2));
            for (req, res) in reqs.iter().zip([a, b, c].into_iter().flatten()) {
                match round.answer(req, res) {
                    Verdict::Accepted { diff } => info!(
                        "pool {}: {}: accepted, offset {diff:+.3} s",
                        req.pool, req.source
                    ),
                    Verdict::Rejected(why) => {
                        warn!("pool {}: {}: rejected: {why}", req.pool, req.source)
                    }
                }
            }
        };
        match outcome {
            Outcome::Failed(why) => Err(why),
            Outcome::Success { diffs, median } => {
                info!(
                    "offsets {:+.3} / {:+.3} / {:+.3} s, median {median:+.3} s",
                    diffs[0], diffs[1], diffs[2]
                );
                let mut offset = median;
                if self.cfg.randomize_time {
                    offset += self.rng.random_range(-1.0..1.0);
                }
                check_floor(self.clock.now(), offset, bounds.minimum)?;
                Ok(offset)
            }
        }
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
                    Err(e) => RoundResult::Failed(e),
                }
            }
        };
        let written = match &result {
            RoundResult::Success { .. } => self
                .status
                .succeeded()
                .and_then(|()| self.status.write_replay_protection(true_now.floor() as i64)),
            RoundResult::Failed(_) => self.status.failed(),
        };
        if let Err(e) = written {
            error!("cannot write the status files: {e}");
        }
        result
    }

    /// The first success since boot steps the clock; later ones slew it.
    fn set_clock(&mut self, offset: f64) -> Result<bool, String> {
        if self.always_step || !self.status.first_success_exists() {
            self.clock.step(offset)?;
            info!("clock stepped by {offset:+.3} s");
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
        self.slew = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            for step in plan {
                tick.tick().await;
                if let Err(e) = clock.nudge(step) {
                    error!("slew stopped: {e}");
                    return;
                }
            }
        }));
        Ok(false)
    }

    /// Runs rounds forever (or once), sleeping on the monotonic clock in between.
    pub async fn run(mut self, once: bool) -> RoundResult {
        self.always_step |= once;
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
                    self.set_status(
                        Icon::Success,
                        &format!("Success. Time offset {offset:+.3} s, clock {how}{dry}.{next}"),
                    );
                    sleep
                }
                RoundResult::Failed(why) => {
                    failures += 1;
                    let sleep = schedule::after_failure(failures, &mut self.rng);
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
            sleep_with_watchdog(sleep).await;
        }
    }
}

/// Sleeps, keeping systemd's watchdog fed when it is enabled.
async fn sleep_with_watchdog(total: Duration) {
    let mut usec = 0u64;
    let chunk = if sd_notify::watchdog_enabled(false, &mut usec) {
        Duration::from_micros(usec / 2).max(Duration::from_secs(1))
    } else {
        total
    };
    let deadline = tokio::time::Instant::now() + total;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return;
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        tokio::time::sleep((deadline - now).min(chunk)).await;
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
    use crate::config::{Member, Source};
    use crate::round::Answer;
    use rand::SeedableRng;
    use std::sync::Mutex;

    const ONION: &str = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion";

    /// Every source answers `offset` seconds ahead of the fake clock; isolation strings are recorded.
    struct FakeTransport {
        offset: f64,
        isolation: Mutex<Vec<String>>,
        /// What the transport says about its own consensus (None: it has none, as SOCKS).
        window: Option<Result<(i64, i64), String>>,
    }

    impl Transport for FakeTransport {
        async fn fetch(
            &self,
            _s: &Source,
            isolation: &str,
            clock: &dyn Clock,
        ) -> Result<Answer, String> {
            self.isolation
                .lock()
                .map_err(|e| e.to_string())?
                .push(isolation.to_owned());
            let now = clock.now();
            Ok(Answer {
                remote: (now + self.offset).floor() as i64,
                local_at_reply: now,
                round_trip: Duration::ZERO,
            })
        }

        async fn consensus_window(&self) -> Option<Result<(i64, i64), String>> {
            self.window.clone()
        }
    }

    /// A clock that records what was done to it.
    #[derive(Default)]
    struct FakeClock {
        steps: Mutex<Vec<f64>>,
        nudges: Mutex<Vec<i64>>,
    }

    impl Clock for FakeClock {
        fn now(&self) -> f64 {
            1_900_000_000.25
        }
        fn step(&self, offset: f64) -> Result<(), String> {
            self.steps.lock().map_err(|e| e.to_string())?.push(offset);
            Ok(())
        }
        fn nudge(&self, ns: i64) -> Result<(), String> {
            self.nudges.lock().map_err(|e| e.to_string())?.push(ns);
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
        window: Option<Result<(i64, i64), String>>,
    ) -> (PathBuf, Arc<FakeClock>, Daemon<FakeTransport>) {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let status = StatusDir {
            run_dir: dir.join("run"),
            state_dir: dir.join("state"),
        };
        status.init().expect("init");
        let clock = Arc::new(FakeClock::default());
        let transport = FakeTransport {
            offset,
            isolation: Mutex::new(Vec::new()),
            window,
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

        let r = d.round().await;
        assert!(
            matches!(r, RoundResult::Success { stepped: false, .. }),
            "{r:?}"
        );
        // Let the slew run to its end (paused time advances instantly).
        tokio::time::sleep(Duration::from_secs(1000)).await;
        let nudges = clock.nudges.lock().expect("lock").clone();
        assert_eq!(nudges.iter().sum::<i64>(), 2_250_000_000);
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

    /// A transport with its own directory (arti): its window bounds the answers, and without
    /// it the round fails with nothing fetched and the clock untouched.
    #[tokio::test(start_paused = true)]
    async fn the_transports_consensus_window_is_used_and_required() {
        let now = FakeClock::default().now() as i64;
        for (tag, window, offset, ok) in [
            ("inside", Some(Ok((now - 60, now + 60))), 2.0, true),
            ("outside", Some(Ok((now - 60, now + 60))), 3600.0, false),
            (
                "missing",
                Some(Err("arti: not bootstrapped".into())),
                2.0,
                false,
            ),
        ] {
            let (dir, clock, mut d) = daemon(&format!("sdw-window-{tag}"), offset, window);
            let r = d.round().await;
            assert_eq!(matches!(r, RoundResult::Success { .. }), ok, "{tag}: {r:?}");
            if !ok {
                assert!(clock.steps.lock().expect("lock").is_empty(), "{tag}");
            }
            if tag == "missing" {
                assert!(
                    matches!(&r, RoundResult::Failed(w) if w.contains("no Tor consensus window")),
                    "{r:?}"
                );
                assert!(d.transport.isolation.lock().expect("lock").is_empty());
            }
            std::fs::remove_dir_all(&dir).expect("cleanup");
        }
    }
}
