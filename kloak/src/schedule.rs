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
pub const EV_ABS: u16 = 3;
pub const EV_MSC: u16 = 4;
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
    /// A key release held back by the hold floor (may be pulled forward, see `Queue`).
    pub held: bool,
}

impl<D> Frame<D> {
    /// Only relative motion (and the SYN): safe to merge with the next such frame.
    fn is_motion(&self) -> bool {
        self.events
            .iter()
            .all(|e| e.kind == EV_REL || e.kind == EV_SYN)
    }
}

/// The hold-time rule: the release of an ordinary key is emitted no earlier than its emitted
/// press plus a floor drawn from `[min, max]`, so every short tap looks the same length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldFloor {
    pub min: Micros,
    pub max: Micros,
}

/// Keys whose events keep upstream's rule (their releases are not held): Shift,
/// Ctrl, Alt, AltGr, Meta, CapsLock, and the level-shift keys of common layouts: the ISO
/// 102nd key (level 3/5 in some layouts) and Compose/Menu (level 3 in others) (plus any the
/// user names).
pub const MODIFIERS: [u16; 11] = [42, 54, 29, 97, 56, 100, 125, 126, 58, 86, 127];

/// Frames waiting for their release time, in release order.
#[derive(Debug)]
pub struct Queue<D> {
    scheduler: Scheduler,
    frames: VecDeque<Frame<D>>,
    floor: Option<HoldFloor>,
    modifiers: Vec<u16>,
    /// Emitted press time of each key that is down, per device.
    pressed: Vec<(D, u16, Micros)>,
    /// Modifiers held with no other key event scheduled since their press: a tap of one alone
    /// is a shortcut of its own (see `push_frame`).
    lone: Vec<(D, u16)>,
}

/// Splits a frame with several key events (a USB keyboard reports every key change of one HID
/// report in one frame: "y up, x down" together, chords, rollover) into one frame per key
/// event, in order, each with the events that came before it (its scan code) and its own
/// SYN_REPORT; events after the last key go with the last frame. A frame with at most one key
/// event is returned as it is. The hold-floor rule works per key, so every key event must be
/// a frame of its own, or a held release could pass its key's next press (which the kernel
/// then drops) or be taken for a plain event.
pub fn split_keys(events: Vec<Event>) -> Vec<Vec<Event>> {
    if events.iter().filter(|e| e.kind == EV_KEY).count() <= 1 {
        return vec![events];
    }
    let syn = Event {
        kind: EV_SYN,
        code: SYN_REPORT,
        value: 0,
    };
    let mut out: Vec<Vec<Event>> = Vec::new();
    let mut pending = Vec::new();
    for e in events {
        if e.kind == EV_SYN && e.code == SYN_REPORT {
            continue;
        }
        pending.push(e);
        if e.kind == EV_KEY {
            pending.push(syn);
            out.push(std::mem::take(&mut pending));
        }
    }
    if let Some(last) = out.last_mut() {
        // Events after the last key (rare): before that frame's SYN.
        let at = last.len() - 1;
        last.splice(at..at, pending);
    }
    out
}

/// The key of a frame that carries exactly one key event (scan codes may come along).
fn single_key(events: &[Event]) -> Option<(u16, i32)> {
    let mut keys = events.iter().filter(|e| e.kind == EV_KEY);
    let k = keys.next()?;
    keys.next().is_none().then_some((k.code, k.value))
}

impl<D: PartialEq + Clone> Queue<D> {
    /// Upstream's rule only.
    pub fn new(max_delay: Micros) -> Queue<D> {
        Queue::with_hold_floor(max_delay, None, &[])
    }

    /// Upstream's rule for presses and modifiers, and the hold floor for the releases of
    /// ordinary keys. `extra_modifiers` are treated like Shift.
    pub fn with_hold_floor(
        max_delay: Micros,
        floor: Option<HoldFloor>,
        extra_modifiers: &[u16],
    ) -> Queue<D> {
        let mut modifiers = MODIFIERS.to_vec();
        modifiers.extend_from_slice(extra_modifiers);
        Queue {
            scheduler: Scheduler::new(max_delay),
            frames: VecDeque::new(),
            floor,
            modifiers,
            pressed: Vec::new(),
            lone: Vec::new(),
        }
    }

    fn is_ordinary(&self, code: u16) -> bool {
        // Keyboard keys only: mouse and touch buttons (0x100 and up) keep upstream's rule.
        code < 0x100 && !self.modifiers.contains(&code)
    }

    /// Inserts after every frame released at or before `at`.
    fn insert(&mut self, frame: Frame<D>) {
        let i = self
            .frames
            .iter()
            .position(|f| f.release > frame.release)
            .unwrap_or(self.frames.len());
        self.frames.insert(i, frame);
    }

    /// Pulls held releases matching `pick` forward to `at` (just before a frame released then).
    fn pull_forward(&mut self, at: Micros, pick: impl Fn(&D, u16) -> bool) {
        let mut moved = Vec::new();
        let mut i = 0;
        while i < self.frames.len() {
            let f = &self.frames[i];
            let key = single_key(&f.events).map(|(c, _)| c);
            if f.release > at && f.held && key.is_some_and(|c| pick(&f.device, c)) {
                moved.extend(self.frames.remove(i));
            } else {
                i += 1;
            }
        }
        for mut f in moved {
            f.release = at;
            self.insert(f);
        }
    }

    /// Adds a frame and returns its release time. Mouse motion arriving while the same
    /// device's previous motion frame is still waiting is merged into it (relative motion adds
    /// up, nothing is lost), so a fast mouse does not pile up frames and the pointer never lags
    /// more than `max_delay`.
    ///
    /// A frame with several key events is split first (see [`split_keys`]); the release time
    /// of its last part is returned.
    pub fn push(
        &mut self,
        device: D,
        events: Vec<Event>,
        now: Micros,
        rng: &mut impl Rng,
    ) -> Micros {
        // Only keyboard frames with the hold floor on are split: a touchpad's BTN_TOUCH and
        // BTN_TOOL_FINGER, a tablet's pen and touch, a mouse chord belong together, and without
        // the floor nothing is held.
        let keyboard = events.iter().any(|e| e.kind == EV_KEY && e.code < 0x100)
            && !events.iter().any(|e| e.kind == EV_ABS);
        if self.floor.is_none() || !keyboard {
            return self.push_frame(device, events, now, rng);
        }
        let mut release = 0;
        for part in split_keys(events) {
            release = self.push_frame(device.clone(), part, now, rng);
        }
        release
    }

    fn push_frame(
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
            held: false,
        };
        if incoming.is_motion() {
            if let Some(last) = self.frames.back_mut() {
                if last.device == incoming.device && last.is_motion() {
                    merge_motion(&mut last.events, &incoming.events);
                    return last.release;
                }
            }
        }
        let key = single_key(&incoming.events);
        if let (Some(floor), Some((code, 0))) = (self.floor, key) {
            if self.is_ordinary(code) {
                // max(real release + U[0, max], emitted press + U[floor]).
                let now = now.max(self.scheduler.last_now);
                let mut release = now + rng.random_range(0..=self.scheduler.max_delay);
                if let Some(i) = self
                    .pressed
                    .iter()
                    .position(|(d, k, _)| *d == incoming.device && *k == code)
                {
                    let (_, _, pressed) = self.pressed.remove(i);
                    release = release.max(pressed + rng.random_range(floor.min..=floor.max));
                }
                // Never before a frame that arrived earlier: a release that overtook a
                // modifier press would turn "a held, Meta tapped" into a lone Meta tap (KWin
                // and mutter open the launcher). Only later frames may be passed, and this
                // bound is not raised for them: the order-preserving lower bound of presses
                // stays their own.
                release = release.max(self.scheduler.last_release);
                // Never before the same key's frames still queued (its press, its autorepeats):
                // the input core passes on a repeat of a key that is up, and the console types
                // it.
                let dev = &incoming.device;
                if let Some(last) = self
                    .frames
                    .iter()
                    .filter(|f| {
                        &f.device == dev && single_key(&f.events).is_some_and(|(c, _)| c == code)
                    })
                    .map(|f| f.release)
                    .max()
                {
                    release = release.max(last);
                }
                self.insert(Frame {
                    release,
                    held: true,
                    ..incoming
                });
                return release;
            }
        }
        let release = self.scheduler.schedule(now, rng);
        if let Some((code, value)) = key.filter(|(_, v)| *v != 2) {
            let me = (incoming.device.clone(), code);
            let was_lone = self.lone.contains(&me);
            // Any other key event cancels a lone modifier tap, for the desktop as for us.
            self.lone.retain(|m| *m == me);
            if self.modifiers.contains(&code) {
                if value == 1 && !was_lone {
                    self.lone.push(me);
                } else if value == 0 && was_lone {
                    self.lone.clear();
                    // A lone tap as scheduled, but keys were released during it: their held
                    // releases (they arrived after the press, which pulled every earlier one)
                    // go before the modifier's release, as they came, so that the desktop
                    // does not see a lone tap ("a down, Meta down, a up, Meta up" must not
                    // open the launcher). Their floor is lost only in this rare case: a
                    // capital's release after "Shift down, A down" keeps it.
                    self.pull_forward(release, |_, _| true);
                }
            }
        }
        if let Some((code, 1)) = key {
            if self.modifiers.contains(&code) {
                // A modifier press: every held release goes first, so that none lands between
                // the modifier's press and its release ("tap Shift alone" switches input
                // methods in fcitx5 and rime; a lone Meta or Super tap opens the launcher in
                // KWin and mutter: any other key event in between cancels them). Releases
                // and repeats of modifiers pull nothing: a capital's release may follow the
                // Shift release and keep its floor.
                self.pull_forward(release, |_, _| true);
            }
            // The same key again: its held release goes first (double letters stay double).
            let dev = incoming.device.clone();
            self.pull_forward(release, |d, k| *d == dev && k == code);
            self.pressed
                .retain(|(d, k, _)| !(*d == incoming.device && *k == code));
            self.pressed.push((incoming.device.clone(), code, release));
        }
        self.insert(Frame {
            release,
            ..incoming
        });
        release
    }

    /// Keeps the floor below `limit` (a keyboard's autorepeat delay): a held release must not
    /// make the desktop see an autorepeat that was never typed. Returns the new floor if it
    /// had to change.
    pub fn clamp_floor(&mut self, limit: Micros) -> Option<HoldFloor> {
        let f = self.floor.as_mut()?;
        if f.max < limit {
            return None;
        }
        f.max = limit;
        f.min = f.min.min(limit);
        Some(*f)
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

    /// The `n` frames due first, out of turn (a flood: memory stays bounded, nothing lost).
    pub fn pop_oldest(&mut self, n: usize) -> Vec<Frame<D>> {
        let n = n.min(self.frames.len());
        self.frames.drain(..n).collect()
    }

    /// Everything still queued (on exit: nothing is lost).
    pub fn drain(&mut self) -> Vec<Frame<D>> {
        self.pressed.clear();
        self.lone.clear();
        self.frames.drain(..).collect()
    }

    /// Takes out the frames of a device that went away, in order, to be emitted at once:
    /// what was typed before the unplug is not lost.
    pub fn forget(&mut self, device: &D) -> Vec<Frame<D>> {
        let (gone, kept): (Vec<_>, Vec<_>) =
            self.frames.drain(..).partition(|f| &f.device == device);
        self.frames = kept.into();
        self.pressed.retain(|(d, _, _)| d != device);
        self.lone.retain(|(d, _)| d != device);
        gone
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

    /// One key event and its SYN_REPORT: the frame a keyboard sends for a press or release.
    pub(super) fn key(code: u16, value: i32) -> Vec<Event> {
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
    fn only_keyboard_frames_are_split() {
        let ev = |kind, code, value| Event { kind, code, value };
        let syn = ev(EV_SYN, SYN_REPORT, 0);
        let floor = Some(HoldFloor {
            min: 120_000,
            max: 150_000,
        });
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        // A touchpad's first touch and a mouse chord stay one frame each.
        let touch = vec![
            ev(EV_KEY, 0x14a, 1),
            ev(EV_KEY, 0x145, 1),
            ev(EV_ABS, 0, 500),
            syn,
        ];
        let chord = vec![ev(EV_KEY, 0x110, 1), ev(EV_KEY, 0x111, 1), syn];
        // Two keys of one keyboard report are split.
        let keys = vec![ev(EV_KEY, 21, 0), ev(EV_KEY, 45, 1), syn];
        let mut q: Queue<u8> = Queue::with_hold_floor(MAX, floor, &[]);
        q.push(0, touch.clone(), 1_000, &mut rng);
        q.push(1, chord.clone(), 1_000, &mut rng);
        assert_eq!(q.len(), 2);
        q.push(2, keys.clone(), 1_000, &mut rng);
        assert_eq!(q.len(), 4);
        let out = q.drain();
        assert!(out.iter().any(|f| f.events == touch) && out.iter().any(|f| f.events == chord));
        // Without the floor nothing is held, and frames stay whole.
        let mut q: Queue<u8> = Queue::new(MAX);
        q.push(2, keys, 1_000, &mut rng);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn an_unplugged_device_gives_back_its_frames_in_order() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut q: Queue<u8> = Queue::new(MAX);
        for (i, dev) in [0u8, 1, 1, 0, 1].into_iter().enumerate() {
            q.push(dev, key(30 + i as u16, 1), 1_000 + i as u64, &mut rng);
        }
        let gone = q.forget(&1);
        let codes: Vec<u16> = gone.iter().map(|f| f.events[0].code).collect();
        assert_eq!(codes, [31, 32, 34]);
        assert!(gone.windows(2).all(|w| w[0].release <= w[1].release));
        assert_eq!(q.len(), 2);
        assert!(q.drain().iter().all(|f| f.device == 0));
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

    #[test]
    fn a_device_going_away_takes_only_its_keys_out_of_the_escape_combination() {
        // Right Shift held on the keyboard, a button held on the mouse; the mouse goes away:
        // its releases (what the daemon feeds the detector) leave Right Shift held.
        let mut esc = EscDetector::new(vec![54, 1]);
        let (mut keyboard, mut mouse) = (KeysDown::default(), KeysDown::default());
        for (down, e) in [(&mut keyboard, key(54, 1)), (&mut mouse, key(0x110, 1))] {
            assert!(!esc.feed(&e[0]));
            down.track(&e);
        }
        for e in &mouse.release_all() {
            assert!(!esc.feed(e));
        }
        assert!(
            esc.feed(&key(1, 1)[0]),
            "Right Shift + Esc still ends kloak"
        );
    }
}

#[cfg(test)]
mod hold_floor_tests {
    use super::tests::key;
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const MAX: Micros = 100_000;
    const FLOOR: HoldFloor = HoldFloor {
        min: 120_000,
        max: 150_000,
    };
    const SHIFT: u16 = 42;
    const CTRL: u16 = 29;
    const CAPS: u16 = 58;
    const SPACE: u16 = 57;
    const LETTERS: &[(u16, char)] = &[
        (16, 'q'),
        (17, 'w'),
        (18, 'e'),
        (19, 'r'),
        (20, 't'),
        (21, 'y'),
        (22, 'u'),
        (23, 'i'),
        (24, 'o'),
        (25, 'p'),
        (30, 'a'),
        (31, 's'),
        (32, 'd'),
        (33, 'f'),
        (34, 'g'),
        (35, 'h'),
        (36, 'j'),
        (37, 'k'),
        (38, 'l'),
        (44, 'z'),
        (45, 'x'),
        (46, 'c'),
        (47, 'v'),
        (48, 'b'),
        (49, 'n'),
        (50, 'm'),
    ];

    /// A key-to-character model with Shift, CapsLock and Ctrl: the text and the shortcuts
    /// that a sequence of key events produces (characters come from presses and repeats).
    fn model(events: &[(u16, i32)]) -> (String, Vec<String>) {
        let (mut text, mut shortcuts) = (String::new(), Vec::new());
        let (mut shift, mut ctrl, mut caps) = (false, false, false);
        for &(code, value) in events {
            match (code, value) {
                (SHIFT, v) => shift = v != 0,
                (CTRL, v) => ctrl = v != 0,
                (CAPS, 1) => caps = !caps,
                (SPACE, 1 | 2) => text.push(' '),
                (c, 1 | 2) => {
                    if let Some((_, ch)) = LETTERS.iter().find(|(k, _)| *k == c) {
                        if ctrl {
                            shortcuts.push(format!("C-{ch}"));
                        } else if shift ^ caps {
                            text.push(ch.to_ascii_uppercase());
                        } else {
                            text.push(*ch);
                        }
                    }
                }
                _ => {}
            }
        }
        (text, shortcuts)
    }

    /// Random typing with rollover, double letters, Shift (released before or after the
    /// letter), Ctrl shortcuts and CapsLock: (time, code, value), physically possible.
    fn typing(rng: &mut ChaCha20Rng, actions: usize) -> Vec<(Micros, u16, i32)> {
        struct Keys {
            ev: Vec<(Micros, u16, i32)>,
            free_at: std::collections::HashMap<u16, Micros>,
        }
        impl Keys {
            /// Presses `code` at `at` (or once it is up again) and releases it after `hold`.
            fn press(&mut self, code: u16, at: Micros) -> Micros {
                let at = at.max(self.free_at.get(&code).copied().unwrap_or(0) + 1);
                self.ev.push((at, code, 1));
                self.free_at.insert(code, Micros::MAX);
                at
            }
            fn release(&mut self, code: u16, at: Micros) {
                self.ev.push((at, code, 0));
                self.free_at.insert(code, at);
            }
            fn tap(&mut self, code: u16, at: Micros, hold: Micros) -> Micros {
                let at = self.press(code, at);
                self.release(code, at + hold);
                at
            }
        }
        let mut k = Keys {
            ev: Vec::new(),
            free_at: std::collections::HashMap::new(),
        };
        let mut t: Micros = 1_000_000;
        for _ in 0..actions {
            let letter = LETTERS[rng.random_range(0..LETTERS.len())].0;
            let hold = rng.random_range(15_000..200_000);
            match rng.random_range(0..11) {
                0 => {
                    // Shift + letter; Shift released before or after the letter.
                    let s = k.press(SHIFT, t);
                    let l = k.tap(letter, s + rng.random_range(5_000..60_000), hold);
                    let up = if rng.random_bool(0.5) {
                        l + hold / 2
                    } else {
                        l + hold + rng.random_range(1_000..50_000)
                    };
                    k.release(SHIFT, up);
                    t = up.max(l + hold) + rng.random_range(1_000..80_000);
                }
                1 => {
                    let c = k.press(CTRL, t);
                    let l = k.tap(letter, c + 30_000, hold);
                    k.release(CTRL, l + hold + 10_000);
                    t = l + hold + 20_000;
                }
                2 => {
                    t = k.tap(CAPS, t, rng.random_range(30_000..120_000))
                        + rng.random_range(130_000..250_000)
                }
                3 => {
                    // A double letter, fast.
                    let a = k.tap(letter, t, rng.random_range(15_000..60_000));
                    t = k.tap(letter, a + rng.random_range(70_000..130_000), hold)
                        + rng.random_range(10_000..80_000);
                }
                4 => t = k.tap(SPACE, t, hold) + rng.random_range(20_000..150_000),
                // A chord: three different keys pressed in one report, released in one report
                // (rollover of 3+ keys).
                6 => {
                    let mut keys = Vec::new();
                    while keys.len() < 3 {
                        let c = LETTERS[rng.random_range(0..LETTERS.len())].0;
                        if !keys.contains(&c) {
                            keys.push(c);
                        }
                    }
                    let at = keys.iter().fold(t, |at, c| {
                        at.max(k.free_at.get(c).copied().unwrap_or(0) + 1)
                    });
                    let up = at + rng.random_range(40_000..120_000);
                    for c in &keys {
                        k.press(*c, at);
                    }
                    for c in &keys {
                        k.release(*c, up);
                    }
                    t = up + rng.random_range(10_000..100_000);
                }
                // Held past the autorepeat delay (the keyboard repeats it), then released.
                5 => {
                    let hold = rng.random_range(300_000..700_000);
                    t = k.tap(letter, t, hold) + hold + rng.random_range(1_000..100_000)
                }
                // Ordinary letters with rollover: the next press may come before this release.
                _ => t = k.tap(letter, t, hold) + rng.random_range(5_000..150_000),
            }
        }
        k.ev.sort_by_key(|e| e.0);
        k.ev
    }

    /// Runs events through a queue the way the daemon does; returns (emitted events with
    /// their release times).
    fn run(
        ev: &[(Micros, u16, i32)],
        floor: Option<HoldFloor>,
        seed: u64,
    ) -> Vec<(Micros, u16, i32, Micros)> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut q: Queue<u8> = Queue::with_hold_floor(MAX, floor, &[]);
        let mut out = Vec::new();
        let take = |out: &mut Vec<(Micros, u16, i32, Micros)>, frames: Vec<Frame<u8>>| {
            for f in frames {
                let (c, v) = single_key(&f.events).expect("one key per frame");
                out.push((f.arrived, c, v, f.release));
            }
        };
        for &(at, code, value) in ev {
            take(&mut out, q.pop_due(at));
            q.push(0, key(code, value), at, &mut rng);
        }
        take(&mut out, q.drain());
        out
    }

    #[test]
    fn text_and_shortcuts_are_identical_and_presses_bounded() {
        for seed in 0..300 {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let ev = typing(&mut rng, 60);
            let out = run(&ev, Some(FLOOR), seed);
            assert_eq!(
                out.len(),
                ev.len(),
                "seed {seed}: events lost or duplicated"
            );
            let input: Vec<(u16, i32)> = ev.iter().map(|e| (e.1, e.2)).collect();
            let emitted: Vec<(u16, i32)> = out.iter().map(|e| (e.1, e.2)).collect();
            assert_eq!(
                model(&emitted),
                model(&input),
                "seed {seed}: typed text or shortcuts changed"
            );
            assert!(!model(&input).0.is_empty());
            assert_eq!(
                lone_taps(&emitted),
                lone_taps(&input),
                "seed {seed}: lone modifier taps changed"
            );
            assert!(
                out.windows(2).all(|w| w[0].3 <= w[1].3),
                "emitted in release order"
            );
            for (arrived, code, value, release) in &out {
                if *value != 0 || MODIFIERS.contains(code) {
                    assert!(
                        release - arrived <= MAX,
                        "seed {seed}: press latency {} > max",
                        release - arrived
                    );
                }
            }
            // No release that came in before a modifier's press goes out between that
            // modifier's press and release (a lone Shift or Meta tap must stay alone:
            // input-method switches, launchers).
            for (i, (m_at, m, v, _)) in out.iter().enumerate() {
                if *v != 1 || !MODIFIERS.contains(m) {
                    continue;
                }
                for (at, c, v, _) in out[i + 1..].iter().take_while(|e| !(e.1 == *m && e.2 == 0)) {
                    assert!(
                        !(*v == 0 && at < m_at && !MODIFIERS.contains(c)),
                        "seed {seed}: key {c} released inside the tap of modifier {m}"
                    );
                }
            }
            // Every key is released after it is pressed, and each press/release pair stays paired.
            let mut down = std::collections::HashSet::new();
            for (_, code, value, _) in &out {
                match value {
                    1 => assert!(down.insert(*code), "seed {seed}: key {code} pressed twice"),
                    0 => assert!(
                        down.remove(code),
                        "seed {seed}: key {code} released while up"
                    ),
                    _ => {}
                }
            }
        }
    }

    /// The modifier taps a desktop takes as shortcuts of their own (a lone Shift switches
    /// input methods in fcitx5 and rime, a lone Meta opens KWin's and mutter's launcher): a
    /// modifier's press and its release with no other key event between them (repeats aside).
    fn lone_taps(events: &[(u16, i32)]) -> Vec<u16> {
        let mut open = None;
        let mut taps = Vec::new();
        for &(code, value) in events.iter().filter(|e| e.1 != 2) {
            if value == 1 && MODIFIERS.contains(&code) {
                open = Some(code);
                continue;
            }
            if value == 0 && open == Some(code) {
                taps.push(code);
            }
            open = None;
        }
        taps
    }

    #[test]
    fn a_release_during_a_modifier_tap_stays_inside_it() {
        // A letter held while a modifier is tapped, released before, during or after the tap,
        // sometimes followed by another letter: the desktop must see the same lone taps (none
        // where a key event came between, one where nothing did), and the same text.
        const META: u16 = 125;
        let floors = [
            FLOOR,
            HoldFloor {
                min: 150_000,
                max: 200_000,
            },
        ];
        let mut inside = 0;
        for seed in 0..3000u64 {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let m = [SHIFT, CTRL, META][rng.random_range(0..3)];
            let letter = LETTERS[rng.random_range(0..LETTERS.len())].0;
            let t_m = rng.random_range(10_000..300_000);
            let t_m_up = t_m + rng.random_range(30_000..300_000);
            let t_up = match rng.random_range(0..3) {
                0 => rng.random_range(1_000..t_m),
                1 => rng.random_range(t_m + 1..t_m_up),
                _ => t_m_up + rng.random_range(1..200_000),
            };
            inside += usize::from(t_up > t_m && t_up < t_m_up);
            let mut ev = vec![
                (0, letter, 1),
                (t_m, m, 1),
                (t_m_up, m, 0),
                (t_up, letter, 0),
            ];
            if rng.random_bool(0.5) {
                let t = t_m_up.max(t_up) + rng.random_range(1..100_000);
                ev.push((t, 48, 1));
                ev.push((t + rng.random_range(1..150_000), 48, 0));
            }
            ev.sort_by_key(|e| e.0);
            let input: Vec<(u16, i32)> = ev.iter().map(|e| (e.1, e.2)).collect();
            for floor in floors {
                let out = run(&ev, Some(floor), seed);
                let emitted: Vec<(u16, i32)> = out.iter().map(|e| (e.1, e.2)).collect();
                assert_eq!(
                    lone_taps(&emitted),
                    lone_taps(&input),
                    "seed {seed}: lone modifier taps changed: {input:?} -> {emitted:?}"
                );
                assert_eq!(model(&emitted), model(&input), "seed {seed}: text changed");
            }
        }
        assert!(
            inside > 500,
            "the case that matters was generated {inside} times"
        );
    }

    #[test]
    fn short_taps_are_emitted_with_a_hold_inside_the_floor() {
        // Letters only (nothing pulls a release forward): every short tap looks the same.
        let mut checked = 0;
        for seed in 0..100 {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let mut t = 1_000_000;
            let mut ev = Vec::new();
            for i in 0..80 {
                let code = LETTERS[i % LETTERS.len()].0;
                let hold = rng.random_range(10_000..20_000);
                ev.push((t, code, 1));
                ev.push((t + hold, code, 0));
                t += rng.random_range(40_000..200_000);
            }
            ev.sort_by_key(|e| e.0);
            let out = run(&ev, Some(FLOOR), seed);
            let mut pressed = std::collections::HashMap::new();
            for (_, code, value, release) in &out {
                if *value == 1 {
                    pressed.insert(*code, *release);
                } else if let Some(p) = pressed.remove(code) {
                    let hold = release - p;
                    assert!(
                        (FLOOR.min..=FLOOR.max).contains(&hold),
                        "seed {seed}: emitted hold {hold} outside the floor"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 7000);
        // Off: holds stay close to the real ones (0..max plus the real 10-20 ms).
        let ev = vec![(1_000_000, 30, 1), (1_015_000, 30, 0)];
        let out = run(&ev, None, 1);
        assert!(out[1].3 - out[0].3 <= MAX + 15_000);
    }

    /// What the kernel's input core lets through to readers: a press of a key that is down or
    /// a release of a key that is up is dropped; an autorepeat is passed on even for a key
    /// that is up (the console then types it). Also returns the keys still down at the end.
    fn kernel(events: &[(u16, i32)]) -> (Vec<(u16, i32)>, Vec<u16>) {
        let mut down: Vec<u16> = Vec::new();
        let mut out = Vec::new();
        for &(code, value) in events {
            let is_down = down.contains(&code);
            match value {
                1 if !is_down => {
                    down.push(code);
                    out.push((code, 1));
                }
                0 if is_down => {
                    down.retain(|k| *k != code);
                    out.push((code, 0));
                }
                2 => out.push((code, 2)),
                _ => {}
            }
        }
        (out, down)
    }

    /// The first key (of `a`'s) whose presses, repeats and releases differ between `a` and
    /// `b`, with both sequences.
    fn key_mismatch(a: &[(u16, i32)], b: &[(u16, i32)]) -> Option<(u16, Vec<i32>, Vec<i32>)> {
        let per = |v: &[(u16, i32)], code: u16| -> Vec<i32> {
            v.iter().filter(|e| e.0 == code).map(|e| e.1).collect()
        };
        let codes: std::collections::BTreeSet<u16> = a.iter().map(|e| e.0).collect();
        codes
            .into_iter()
            .map(|c| (c, per(a, c), per(b, c)))
            .find(|(_, x, y)| x != y)
    }

    /// `typing()` as a USB keyboard reports it: every change within one 8 ms HID report in
    /// one frame (scan code before each key event, then SYN_REPORT), and the kernel's
    /// autorepeat (after 250 ms, every 33 ms) as frames of their own.
    fn usb_frames(ev: &[(Micros, u16, i32)]) -> Vec<(Micros, Vec<Event>)> {
        let mut timed: Vec<(Micros, u16, i32)> = ev.to_vec();
        // Autorepeat while a key is held long enough.
        // The kernel repeats the last key pressed, until it is released or another is pressed.
        let mut pressed_at = std::collections::HashMap::new();
        for &(t, c, v) in ev {
            if v == 1 {
                pressed_at.insert(c, t);
            } else if v == 0 {
                if let Some(p) = pressed_at.remove(&c) {
                    let next_press = ev
                        .iter()
                        .filter(|e| e.2 == 1 && e.0 > p && e.1 != c)
                        .map(|e| e.0)
                        .min()
                        .unwrap_or(Micros::MAX);
                    let mut r = p + 250_000;
                    while r < t && r < next_press {
                        timed.push((r, c, 2));
                        r += 33_000;
                    }
                }
            }
        }
        timed.sort_by_key(|e| (e.0, e.2 == 2));
        let mut frames: Vec<(Micros, Vec<Event>)> = Vec::new();
        for (t, code, value) in timed {
            let report = t / 8_000 * 8_000 + 8_000;
            let key = [
                Event {
                    kind: EV_MSC,
                    code: 4,
                    value: 0x70000 + i32::from(code),
                },
                Event {
                    kind: EV_KEY,
                    code,
                    value,
                },
            ];
            match frames.last_mut() {
                // Same report, and not an autorepeat (the kernel sends those alone).
                Some((rt, f)) if *rt == report && value != 2 && f[f.len() - 2].value != 2 => {
                    let syn = f.pop();
                    f.extend(key);
                    f.extend(syn);
                }
                _ => {
                    let mut f = key.to_vec();
                    f.push(Event {
                        kind: EV_SYN,
                        code: SYN_REPORT,
                        value: 0,
                    });
                    frames.push((report, f));
                }
            }
        }
        frames
    }

    #[test]
    fn split_keeps_every_event_in_order_with_its_scan_code() {
        let f = vec![
            Event {
                kind: EV_MSC,
                code: 4,
                value: 21,
            },
            Event {
                kind: EV_KEY,
                code: 21,
                value: 0,
            },
            Event {
                kind: EV_MSC,
                code: 4,
                value: 45,
            },
            Event {
                kind: EV_KEY,
                code: 45,
                value: 1,
            },
            Event {
                kind: EV_SYN,
                code: SYN_REPORT,
                value: 0,
            },
        ];
        let parts = split_keys(f.clone());
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0][..2], f[..2]);
        assert_eq!(parts[1][..2], f[2..4]);
        assert!(parts.iter().all(|p| p.last() == f.last()));
        let one = vec![f[2], f[3], f[4]];
        assert_eq!(split_keys(one.clone()), vec![one]);
    }

    #[test]
    fn two_keyboards_an_unplug_and_a_flood_lose_nothing() {
        // Two USB keyboards typing at once; the second is unplugged at a random moment (its
        // queued frames are taken out and written at once, then what it leaves down is
        // released, as the daemon does); now and then the queue is cut short as under a flood
        // (the oldest frames written early). Per twin, through the input core's key state:
        // every key's sequence as typed (up to the unplug for the second), nothing left down.
        for seed in 0..300 {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let mut frames: Vec<(Micros, u8, Vec<Event>)> = Vec::new();
            for dev in [0u8, 1] {
                let ev = typing(&mut rng, 40);
                frames.extend(usb_frames(&ev).into_iter().map(|(t, f)| (t, dev, f)));
            }
            frames.sort_by_key(|f| f.0);
            let unplug = frames[rng.random_range(frames.len() / 4..frames.len())].0;
            let mut q: Queue<u8> = Queue::with_hold_floor(MAX, Some(FLOOR), &[]);
            let mut out: [Vec<(u16, i32)>; 2] = [Vec::new(), Vec::new()];
            let mut input: [Vec<(u16, i32)>; 2] = [Vec::new(), Vec::new()];
            let mut twin_down = [KeysDown::default(), KeysDown::default()];
            let emit =
                |fs: Vec<Frame<u8>>, out: &mut [Vec<(u16, i32)>; 2], down: &mut [KeysDown; 2]| {
                    for f in fs {
                        let d = usize::from(f.device);
                        down[d].track(&f.events);
                        out[d].extend(
                            f.events
                                .iter()
                                .filter(|e| e.kind == EV_KEY)
                                .map(|e| (e.code, e.value)),
                        );
                    }
                };
            let mut gone = false;
            for (t, dev, f) in frames {
                if !gone && t >= unplug {
                    gone = true;
                    emit(q.forget(&1), &mut out, &mut twin_down);
                    let release = twin_down[1].release_all();
                    out[1].extend(
                        release
                            .iter()
                            .filter(|e| e.kind == EV_KEY)
                            .map(|e| (e.code, e.value)),
                    );
                    let (_, left) = kernel(&input[1]);
                    input[1].extend(left.iter().map(|k| (*k, 0)));
                }
                if gone && dev == 1 {
                    continue;
                }
                emit(q.pop_due(t), &mut out, &mut twin_down);
                if rng.random_range(0..50) == 0 {
                    let n = rng.random_range(0..=q.len());
                    emit(q.pop_oldest(n), &mut out, &mut twin_down);
                }
                input[usize::from(dev)].extend(
                    f.iter()
                        .filter(|e| e.kind == EV_KEY)
                        .map(|e| (e.code, e.value)),
                );
                q.push(dev, f, t, &mut rng);
            }
            emit(q.drain(), &mut out, &mut twin_down);
            for d in 0..2 {
                let (seen_in, _) = kernel(&input[d]);
                let (seen_out, down_out) = kernel(&out[d]);
                assert_eq!(
                    down_out,
                    Vec::<u16>::new(),
                    "seed {seed}: keys left down on twin {d}"
                );
                assert_eq!(
                    key_mismatch(&seen_in, &seen_out),
                    None,
                    "seed {seed}: twin {d}, a key's events differ"
                );
            }
        }
    }

    /// Multi-key frames (rollover, "y up + x down" in one report, chords) and autorepeat:
    /// through the queue and the kernel's key state, nothing is lost, duplicated, typed twice
    /// or left down, and the text and shortcuts are the same as without kloak.
    #[test]
    fn usb_frames_and_autorepeat_type_exactly() {
        let mut repeats = 0;
        for seed in 0..400 {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let ev = typing(&mut rng, 60);
            let frames = usb_frames(&ev);
            let input: Vec<(u16, i32)> = frames
                .iter()
                .flat_map(|(_, f)| {
                    f.iter()
                        .filter(|e| e.kind == EV_KEY)
                        .map(|e| (e.code, e.value))
                })
                .collect();
            let mut q: Queue<u8> = Queue::with_hold_floor(MAX, Some(FLOOR), &[]);
            let mut out = Vec::new();
            let mut max_press_latency = 0;
            let mut emit = |frames: Vec<Frame<u8>>, out: &mut Vec<(u16, i32)>| {
                for f in frames {
                    for e in f.events.iter().filter(|e| e.kind == EV_KEY) {
                        if e.value != 0 {
                            max_press_latency = max_press_latency.max(f.release - f.arrived);
                        }
                        out.push((e.code, e.value));
                    }
                }
            };
            for (t, f) in &frames {
                emit(q.pop_due(*t), &mut out);
                q.push(0, f.clone(), *t, &mut rng);
            }
            emit(q.drain(), &mut out);
            let (seen_in, down_in) = kernel(&input);
            let (seen_out, down_out) = kernel(&out);
            assert!(down_in.is_empty());
            assert_eq!(down_out, Vec::<u16>::new(), "seed {seed}: keys left down");
            assert_eq!(
                out.len(),
                input.len(),
                "seed {seed}: events lost or duplicated"
            );
            assert_eq!(
                seen_out.len(),
                seen_in.len(),
                "seed {seed}: the kernel dropped events"
            );
            assert_eq!(
                model(&seen_out),
                model(&seen_in),
                "seed {seed}: text or shortcuts changed"
            );
            // Per key, the same sequence of presses, repeats and releases.
            assert_eq!(
                key_mismatch(&seen_in, &seen_out),
                None,
                "seed {seed}: a key's events differ"
            );
            assert!(
                max_press_latency <= MAX,
                "seed {seed}: press latency {max_press_latency}"
            );
            repeats += input.iter().filter(|e| e.1 == 2).count();
        }
        assert!(
            repeats > 1000,
            "the test must exercise autorepeat: {repeats}"
        );
    }
}
