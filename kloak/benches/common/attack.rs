//! The identification attack both kloak benchmarks run (`identify.rs` on synthetic typists,
//! `ikdd.rs` on real typing): what the observer sees after kloak, the features it profiles,
//! the nearest-profile match, and the percentile helper. One copy, so that both tables measure
//! the same attacker.

use std::collections::HashMap;

use kloak::schedule::{Event, Frame, HoldFloor, Queue, EV_KEY, EV_SYN, SYN_REPORT};
use rand_chacha::ChaCha20Rng;

/// (time_us, evdev key, value) events of one typing sample.
pub type Sample = Vec<(u64, u16, i32)>;

/// kloak's setting: None = off, else (max delay ms, hold floor).
pub type Rule = Option<(u64, Option<HoldFloor>)>;

/// What an observer sees after kloak: (key, press time, release time) per keystroke, in order;
/// the latency kloak adds to each press is pushed to `lat` (µs).
pub fn observe(
    ev: &[(u64, u16, i32)],
    rule: Rule,
    rng: &mut ChaCha20Rng,
    lat: &mut Vec<u64>,
) -> Vec<(u16, f64, f64)> {
    let emitted: Vec<(u64, u16, i32, u64)> = match rule {
        None => ev.iter().map(|e| (e.0, e.1, e.2, e.0)).collect(),
        Some((max, floor)) => {
            let mut q: Queue<u8> = Queue::with_hold_floor(max * 1000, floor, &[]);
            let mut out = Vec::new();
            let take = |out: &mut Vec<(u64, u16, i32, u64)>, fs: Vec<Frame<u8>>| {
                for f in fs {
                    let e = f.events[0];
                    out.push((f.arrived, e.code, e.value, f.release));
                }
            };
            for &(t, k, v) in ev {
                take(&mut out, q.pop_due(t));
                q.push(
                    0,
                    vec![
                        Event {
                            kind: EV_KEY,
                            code: k,
                            value: v,
                        },
                        Event {
                            kind: EV_SYN,
                            code: SYN_REPORT,
                            value: 0,
                        },
                    ],
                    t,
                    rng,
                );
            }
            take(&mut out, q.drain());
            out
        }
    };
    let mut open: HashMap<u16, f64> = HashMap::new();
    let mut strokes = Vec::new();
    for (arrived, k, v, release) in emitted {
        if v == 1 {
            lat.push(release - arrived);
            open.insert(k, release as f64 / 1000.0);
        } else if let Some(p) = open.remove(&k) {
            strokes.push((k, p, release as f64 / 1000.0));
        }
    }
    strokes.sort_by(|a, b| a.1.total_cmp(&b.1));
    strokes
}

/// Mean hold per feature key, then mean press-to-press latency per feature bigram (NaN if
/// unseen).
pub fn features(strokes: &[(u16, f64, f64)], keys: &[u16], bigrams: &[(u16, u16)]) -> Vec<f64> {
    let mut hold: HashMap<u16, (f64, u32)> = HashMap::new();
    let mut lat: HashMap<(u16, u16), (f64, u32)> = HashMap::new();
    for (i, s) in strokes.iter().enumerate() {
        let e = hold.entry(s.0).or_insert((0.0, 0));
        e.0 += s.2 - s.1;
        e.1 += 1;
        if i > 0 {
            let p = &strokes[i - 1];
            let e = lat.entry((p.0, s.0)).or_insert((0.0, 0));
            e.0 += s.1 - p.1;
            e.1 += 1;
        }
    }
    let mean = |x: Option<&(f64, u32)>| x.map_or(f64::NAN, |(s, n)| s / f64::from(*n));
    keys.iter()
        .map(|k| mean(hold.get(k)))
        .chain(bigrams.iter().map(|b| mean(lat.get(b))))
        .collect()
}

/// Nearest profile by scaled Manhattan distance: the share of `test` samples attributed to
/// the right user in `train`.
pub fn identify(train: &[Vec<f64>], test: &[(usize, Vec<f64>)]) -> f64 {
    let nf = train[0].len();
    let sd: Vec<f64> = (0..nf)
        .map(|j| {
            let v: Vec<f64> = train
                .iter()
                .map(|p| p[j])
                .filter(|x| x.is_finite())
                .collect();
            let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
            (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len().max(1) as f64)
                .sqrt()
                .max(1e-6)
        })
        .collect();
    let correct = test
        .iter()
        .filter(|(user, x)| {
            let best = train
                .iter()
                .enumerate()
                .map(|(u, p)| {
                    let d: f64 = (0..nf)
                        .filter(|j| x[*j].is_finite() && p[*j].is_finite())
                        .map(|j| (x[j] - p[j]).abs() / sd[j])
                        .sum();
                    (d, u)
                })
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, u)| u);
            best == Some(*user)
        })
        .count();
    correct as f64 / test.len() as f64
}

/// The `p` percentile of `v` (microseconds), in milliseconds.
pub fn pct(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(0) as f64
        / 1000.0
}
