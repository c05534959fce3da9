//! kloak's scheduler, fed arbitrary input. A first byte of 0xFF selects structured frames
//! (built with `arbitrary`) driven through `schedule::Queue` the way the daemon drives it
//! (due frames popped before each push, everything drained at the end); anything else is the
//! text of `kloak simulate` (`simulate::parse`, then `simulate::run`).
//!
//! Invariants asserted on the output (see schedule.rs):
//! - nothing lost or duplicated: the multiset of output events equals the input's, except
//!   EV_SYN (split_keys adds a SYN_REPORT to each part of a split frame, motion merging drops
//!   the merged frame's SYN) and EV_REL (merged motion adds up: the sum per device and code
//!   is compared instead);
//! - key presses (EV_KEY, value 1) come out in the order they came in;
//! - releases in the output are monotone in time, and no frame is released before it
//!   arrived;
//! - every frame is released within arrival + max_delay, except a key release held by the
//!   hold floor, which is released within max(arrival + max_delay, emitted press of the same
//!   key + floor.max) (its "never before the same key's queued frames" rule stays inside
//!   that bound too).
#![no_main]

use std::collections::HashMap;

use arbitrary::{Arbitrary, Unstructured};
use kloak::schedule::{Event, Frame, HoldFloor, Queue, EV_ABS, EV_KEY, EV_MSC, EV_REL, EV_SYN, SYN_REPORT};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

#[derive(Debug, Arbitrary)]
struct In {
    seed: u64,
    max_delay_ms: u8,
    floor: Option<(u8, u8)>,
    frames: Vec<FrameIn>,
}

#[derive(Debug, Arbitrary)]
struct FrameIn {
    /// Microseconds since the previous frame.
    delta: u16,
    device: bool,
    events: Vec<(u8, u8, i8)>,
}

fn event(kind: u8, code: u8, value: i8) -> Event {
    match kind % 5 {
        // Keys: a small set of codes so that the same key comes back; a few mouse buttons
        // and modifiers (Shift 42); values press/release/repeat.
        0 | 1 => Event {
            kind: EV_KEY,
            code: match code % 16 {
                12 => 42,
                13 => 0x110,
                14 => 29,
                c => 16 + u16::from(c),
            },
            value: i32::from(value.rem_euclid(3)),
        },
        2 => Event { kind: EV_REL, code: u16::from(code % 4), value: i32::from(value) },
        3 => Event { kind: EV_MSC, code: 4, value: i32::from(value) },
        _ => Event { kind: EV_ABS, code: u16::from(code % 2), value: i32::from(value) },
    }
}

/// (time, device, event) in, rows (device, event, arrived, release, held) out.
fn check(
    input: &[(u64, u8, Event)],
    out: &[(u8, Event, u64, u64, bool)],
    max_delay: u64,
    floor: Option<HoldFloor>,
) {
    // Multisets.
    let mut want: HashMap<(u8, u16, u16, i32), i64> = HashMap::new();
    let mut rel: HashMap<(u8, u16), i64> = HashMap::new();
    for &(_, d, e) in input {
        match e.kind {
            EV_SYN => {}
            EV_REL => *rel.entry((d, e.code)).or_default() += i64::from(e.value),
            _ => *want.entry((d, e.kind, e.code, e.value)).or_default() += 1,
        }
    }
    for &(d, e, ..) in out {
        match e.kind {
            EV_SYN => {}
            EV_REL => *rel.entry((d, e.code)).or_default() -= i64::from(e.value),
            _ => *want.entry((d, e.kind, e.code, e.value)).or_default() -= 1,
        }
    }
    want.retain(|_, n| *n != 0);
    assert!(want.is_empty(), "events lost (+) or duplicated (-): {want:?}");
    rel.retain(|_, n| *n != 0);
    assert!(rel.is_empty(), "motion lost: {rel:?}");
    // Press order.
    let presses = |v: Vec<(u8, Event)>| -> Vec<(u8, Event)> {
        v.into_iter().filter(|(_, e)| e.kind == EV_KEY && e.value == 1).collect()
    };
    assert_eq!(
        presses(input.iter().map(|&(_, d, e)| (d, e)).collect()),
        presses(out.iter().map(|&(d, e, ..)| (d, e)).collect()),
        "presses reordered"
    );
    // Time.
    let mut last = 0;
    // Press release times by arrival order, to bound held releases.
    let mut presses_by_key: HashMap<(u8, u16), Vec<(u64, u64)>> = HashMap::new();
    for &(d, e, arrived, release, _) in out {
        if e.kind == EV_KEY && e.value == 1 {
            presses_by_key.entry((d, e.code)).or_default().push((arrived, release));
        }
    }
    for &(d, e, arrived, release, held) in out {
        assert!(release >= last, "releases go back in time: {release} after {last}");
        last = release;
        assert!(release >= arrived, "released before it arrived");
        if held {
            let fl = floor.expect("held without a floor");
            // Events that came in the held release's frame (a scan code, anything after the
            // last key of a split frame) share its time; only the key itself is bounded.
            let press = presses_by_key
                .get(&(d, e.code))
                .and_then(|v| v.iter().filter(|(a, _)| *a <= arrived).map(|(_, r)| *r).max())
                .unwrap_or(0);
            let bound = (arrived + max_delay).max(press + fl.max);
            if e.kind == EV_KEY {
                assert!(release <= bound, "held release {e:?} at {release} beyond {bound}");
            }
        } else {
            assert!(
                release - arrived <= max_delay,
                "{e:?} delayed {} > {max_delay}",
                release - arrived
            );
        }
    }
}

fn structured(data: &[u8]) {
    let Ok(inp) = In::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let max_delay = u64::from(inp.max_delay_ms) * 1000;
    let floor = inp.floor.map(|(a, b)| {
        let (a, b) = (u64::from(a.min(b)) * 1000, u64::from(a.max(b)) * 1000);
        HoldFloor { min: a, max: b }
    });
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(inp.seed);
    let mut q: Queue<u8> = Queue::with_hold_floor(max_delay, floor, &[]);
    let mut t = 0u64;
    let mut input = Vec::new();
    let mut out = Vec::new();
    let take = |out: &mut Vec<(u8, Event, u64, u64, bool)>, frames: Vec<Frame<u8>>| {
        for f in frames {
            out.extend(f.events.iter().map(|e| (f.device, *e, f.arrived, f.release, f.held)));
        }
    };
    for f in inp.frames.iter().take(2048) {
        t += u64::from(f.delta);
        let dev = u8::from(f.device);
        let mut evs: Vec<Event> = f.events.iter().take(8).map(|&(k, c, v)| event(k, c, v)).collect();
        evs.push(Event { kind: EV_SYN, code: SYN_REPORT, value: 0 });
        input.extend(evs.iter().map(|e| (t, dev, *e)));
        take(&mut out, q.pop_due(t));
        q.push(dev, evs, t, &mut rng);
    }
    take(&mut out, q.drain());
    check(&input, &out, max_delay, floor);
}

fn text(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(events) = kloak::simulate::parse(s) else {
        return;
    };
    if events.len() > 4096 {
        return;
    }
    for t in events.windows(2) {
        assert!(t[0].0 <= t[1].0, "parse let time go back");
    }
    let input: Vec<(u64, u8, Event)> = events.iter().map(|&(t, e)| (t, 0, e)).collect();
    for floor in [None, Some(HoldFloor { min: 50_000, max: 150_000 })] {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(data.len() as u64);
        let rows = kloak::simulate::run(&events, 100_000, floor, &mut rng);
        let out: Vec<(u8, Event, u64, u64, bool)> = rows
            .iter()
            .map(|r| {
                // Rows do not carry `held`: only key releases of ordinary keys can be held.
                let held = floor.is_some() && r.release - r.arrived > 100_000;
                (0, r.event, r.arrived, r.release, held)
            })
            .collect();
        check(&input, &out, 100_000, floor);
        let _ = kloak::simulate::render(&rows);
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0xFF, rest)) => structured(rest),
        _ => text(data),
    }
});
