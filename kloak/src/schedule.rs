//! The pure core: when to release each input frame. No I/O, no clock: times are passed in
//! as microseconds on a monotonic clock, randomness as an `Rng`.

use std::collections::VecDeque;

use rand::Rng;

/// Microseconds on CLOCK_MONOTONIC (never wall time: upstream's stuck keys came from
/// wall-clock jumps).
pub type Micros = u64;

pub const EV_SYN: u16 = 0;
pub const EV_KEY: u16 = 1;
pub const EV_REL: u16 = 2;
pub const SYN_REPORT: u16 = 0;

/// One input event as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub kind: u16,
    pub code: u16,
    pub value: i32,
}

/// Upstream kloak's rule: `release = now + uniform[lower, max]` with
/// `lower = clamp(previous_release - now, 0, max)`. Releases never decrease, so order is kept,
/// and no delay exceeds `max`.
#[derive(Debug, Clone)]
pub struct Scheduler {
    max_delay: Micros,
    last_release: Micros,
    last_now: Micros,
}

impl Scheduler {
    pub fn new(max_delay: Micros) -> Scheduler {
        Scheduler {
            max_delay,
            last_release: 0,
            last_now: 0,
        }
    }

    pub fn max_delay(&self) -> Micros {
        self.max_delay
    }

    /// The release time of an event that arrived at `now`. A `now` earlier than one seen
    /// before (impossible on a monotonic clock, but cheap to survive) counts as the latest.
    pub fn schedule(&mut self, now: Micros, rng: &mut impl Rng) -> Micros {
        let now = now.max(self.last_now);
        self.last_now = now;
        let lower = self.last_release.saturating_sub(now).min(self.max_delay);
        let release = now + rng.random_range(lower..=self.max_delay);
        self.last_release = release;
        release
    }
}

/// A frame: the events of one device up to and including its SYN_REPORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<D> {
    pub device: D,
    pub events: Vec<Event>,
    pub arrived: Micros,
    pub release: Micros,
}

impl<D> Frame<D> {
    /// Only relative motion (and the SYN): safe to merge with the next such frame.
    fn is_motion(&self) -> bool {
        self.events
            .iter()
            .all(|e| e.kind == EV_REL || e.kind == EV_SYN)
    }
}

/// Frames waiting for their release time, in release order.
#[derive(Debug)]
pub struct Queue<D> {
    scheduler: Scheduler,
    frames: VecDeque<Frame<D>>,
}

impl<D: PartialEq + Clone> Queue<D> {
    pub fn new(max_delay: Micros) -> Queue<D> {
        Queue {
            scheduler: Scheduler::new(max_delay),
            frames: VecDeque::new(),
        }
    }

    /// Adds a frame. Mouse motion arriving while the same device's previous motion frame is
    /// still waiting is merged into it (relative motion adds up, nothing is lost), so a fast
    /// mouse does not pile up frames and the pointer never lags more than `max_delay`.
    pub fn push(
        &mut self,
        device: D,
        events: Vec<Event>,
        now: Micros,
        rng: &mut impl Rng,
    ) -> Micros {
        let incoming = Frame {
            device,
            events,
            arrived: now,
            release: 0,
        };
        if incoming.is_motion() {
            if let Some(last) = self.frames.back_mut() {
                if last.device == incoming.device && last.is_motion() {
                    merge_motion(&mut last.events, &incoming.events);
                    return last.release;
                }
            }
        }
        let release = self.scheduler.schedule(now, rng);
        self.frames.push_back(Frame {
            release,
            ..incoming
        });
        release
    }

    /// When the next frame is due.
    pub fn next_release(&self) -> Option<Micros> {
        self.frames.front().map(|f| f.release)
    }

    /// Every frame due at `now`, in order.
    pub fn pop_due(&mut self, now: Micros) -> Vec<Frame<D>> {
        let mut out = Vec::new();
        while self.frames.front().is_some_and(|f| f.release <= now) {
            out.extend(self.frames.pop_front());
        }
        out
    }

    /// Everything still queued (on exit: nothing is lost).
    pub fn drain(&mut self) -> Vec<Frame<D>> {
        self.frames.drain(..).collect()
    }

    /// Drops the frames of a device that went away.
    pub fn forget(&mut self, device: &D) {
        self.frames.retain(|f| &f.device != device);
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

fn merge_motion(into: &mut Vec<Event>, add: &[Event]) {
    for e in add.iter().filter(|e| e.kind == EV_REL) {
        match into
            .iter_mut()
            .find(|x| x.kind == EV_REL && x.code == e.code)
        {
            Some(x) => x.value = x.value.saturating_add(e.value),
            None => {
                let syn = into
                    .iter()
                    .position(|x| x.kind == EV_SYN)
                    .unwrap_or(into.len());
                into.insert(syn, *e);
            }
        }
    }
}

/// Watches for the escape combination (all its keys down at once).
#[derive(Debug, Clone)]
pub struct EscDetector {
    combo: Vec<u16>,
    down: Vec<u16>,
}

impl EscDetector {
    pub fn new(combo: Vec<u16>) -> EscDetector {
        EscDetector {
            combo,
            down: Vec::new(),
        }
    }

    /// Feeds an input event; true once every key of the combination is held.
    pub fn feed(&mut self, e: &Event) -> bool {
        if e.kind != EV_KEY {
            return false;
        }
        match e.value {
            0 => self.down.retain(|k| *k != e.code),
            _ if !self.down.contains(&e.code) => self.down.push(e.code),
            _ => {}
        }
        !self.combo.is_empty() && self.combo.iter().all(|k| self.down.contains(k))
    }
}

/// Keys held down on an output device, so that they can be released on exit.
#[derive(Debug, Default, Clone)]
pub struct KeysDown(Vec<u16>);

impl KeysDown {
    pub fn track(&mut self, events: &[Event]) {
        for e in events.iter().filter(|e| e.kind == EV_KEY) {
            if e.value == 0 {
                self.0.retain(|k| *k != e.code);
            } else if !self.0.contains(&e.code) {
                self.0.push(e.code);
            }
        }
    }

    /// The frame that releases everything still down.
    pub fn release_all(&mut self) -> Vec<Event> {
        let mut ev: Vec<Event> = self
            .0
            .drain(..)
            .map(|code| Event {
                kind: EV_KEY,
                code,
                value: 0,
            })
            .collect();
        if !ev.is_empty() {
            ev.push(Event {
                kind: EV_SYN,
                code: SYN_REPORT,
                value: 0,
            });
        }
        ev
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const MAX: Micros = 100_000;

    fn key(code: u16, value: i32) -> Vec<Event> {
        vec![
            Event {
                kind: EV_KEY,
                code,
                value,
            },
            Event {
                kind: EV_SYN,
                code: SYN_REPORT,
                value: 0,
            },
        ]
    }

    /// Random arrival times: bursts (a few µs apart), typing (50-300 ms), pauses.
    fn arrivals(rng: &mut ChaCha20Rng, n: usize) -> Vec<Micros> {
        let mut t = 1_000_000;
        (0..n)
            .map(|_| {
                t += match rng.random_range(0..10) {
                    0..=3 => rng.random_range(0..2_000),
                    4..=8 => rng.random_range(50_000..300_000),
                    _ => rng.random_range(300_000..3_000_000),
                };
                t
            })
            .collect()
    }

    #[test]
    fn releases_are_monotone_bounded_and_in_input_order() {
        for seed in 0..200 {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let times = arrivals(&mut rng, 300);
            let mut q: Queue<u8> = Queue::new(MAX);
            let mut released = Vec::new();
            for (i, t) in times.iter().enumerate() {
                // Due frames are released before the new one arrives, as in the daemon.
                released.extend(q.pop_due(*t));
                let r = q.push(0, key(30 + (i % 20) as u16, (i % 2) as i32), *t, &mut rng);
                assert!(
                    r >= *t && r - *t <= MAX,
                    "seed {seed}: delay {} > max",
                    r - *t
                );
            }
            released.extend(q.drain());
            assert_eq!(released.len(), times.len(), "no frame lost or duplicated");
            for (i, f) in released.iter().enumerate() {
                assert_eq!(f.arrived, times[i], "order kept");
                assert_eq!(
                    f.events,
                    key(30 + (i % 20) as u16, (i % 2) as i32),
                    "frames whole"
                );
            }
            assert!(
                released.windows(2).all(|w| w[0].release <= w[1].release),
                "releases never decrease"
            );
        }
    }

    #[test]
    fn fast_typing_raises_the_lower_bound() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut s = Scheduler::new(MAX);
        let first = s.schedule(1_000_000, &mut rng);
        // 1 µs later the next release cannot be earlier than the previous one.
        for i in 1..100 {
            let prev = s.last_release;
            let r = s.schedule(1_000_000 + i, &mut rng);
            assert!(r >= prev && r >= first);
        }
        // After a long pause the lower bound is back at 0: some delays are small.
        let small = (0..200).filter(|i| {
            let now = 10_000_000 + i * 1_000_000;
            s.schedule(now, &mut rng) - now < MAX / 4
        });
        assert!(small.count() > 20);
    }

    #[test]
    fn a_clock_going_backwards_changes_nothing() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut s = Scheduler::new(MAX);
        let a = s.schedule(5_000_000, &mut rng);
        // A wall-clock jump back cannot reach the core (it only sees CLOCK_MONOTONIC); even a
        // bogus earlier time keeps releases ordered and bounded.
        let b = s.schedule(1_000_000, &mut rng);
        assert!(b >= a && b <= 5_000_000 + MAX);
    }

    #[test]
    fn delays_cover_the_whole_range() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let mut s = Scheduler::new(MAX);
        let delays: Vec<u64> = (0..5000)
            .map(|i| {
                let now = i * 1_000_000;
                s.schedule(now, &mut rng) - now
            })
            .collect();
        assert!(delays.iter().any(|d| *d < 5_000) && delays.iter().any(|d| *d > 95_000));
    }

    #[test]
    fn mouse_motion_is_merged_not_lost() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut q: Queue<u8> = Queue::new(MAX);
        let rel = |x: i32, y: i32| {
            vec![
                Event {
                    kind: EV_REL,
                    code: 0,
                    value: x,
                },
                Event {
                    kind: EV_REL,
                    code: 1,
                    value: y,
                },
                Event {
                    kind: EV_SYN,
                    code: SYN_REPORT,
                    value: 0,
                },
            ]
        };
        let r1 = q.push(1, rel(3, -1), 0, &mut rng);
        assert_eq!(q.push(1, rel(2, 5), 10, &mut rng), r1);
        q.push(2, rel(1, 1), 20, &mut rng); // another device: not merged
        q.push(1, key(272, 1), 30, &mut rng); // a click: never merged
        q.push(1, rel(7, 0), 40, &mut rng);
        let out = q.drain();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].events, rel(5, 4));
        assert_eq!(out[3].events, rel(7, 0));
    }

    #[test]
    fn escape_combo_and_key_release() {
        let mut esc = EscDetector::new(vec![54, 1]); // right shift + esc
        assert!(!esc.feed(&key(54, 1)[0]));
        assert!(!esc.feed(&key(30, 1)[0]));
        assert!(esc.feed(&key(1, 1)[0]));
        assert!(!esc.feed(&key(54, 0)[0]));
        let mut down = KeysDown::default();
        down.track(&key(30, 1));
        down.track(&key(31, 1));
        down.track(&key(30, 0));
        down.track(&key(31, 2));
        assert_eq!(down.release_all(), key(31, 0));
        assert!(down.release_all().is_empty());
    }
}
