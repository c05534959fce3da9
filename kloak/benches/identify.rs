//! How much anonymity each setting buys: a standard keystroke-dynamics identification attack
//! (per-user profile of the mean hold time per key and the mean press-to-press latency per
//! common bigram; nearest profile by scaled Manhattan distance) against 100 synthetic typists,
//! with kloak off, with upstream's rule, and with the hold-floor rule. Prints accuracy (chance:
//! 1%) and the press latency kloak adds. Never fails.
//!
//! The typists are generated (so this runs everywhere; `ikdd.rs` runs the same attack on real
//! typing when the IKDD dataset is at hand): each has a base hold time, per-key hold habits, an overall speed and
//! per-bigram timing habits, with trial-to-trial noise, in the ranges reported for free-text
//! typing (holds ~70-130 ms, press-to-press ~100-350 ms).

use std::collections::{BTreeMap, HashMap};

use kloak::schedule::{Event, Frame, HoldFloor, Queue, EV_KEY, EV_SYN, SYN_REPORT};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

#[path = "common/attack.rs"]
mod attack;
use attack::{identify, pct};

const USERS: usize = 100;

/// (time_us, key, value) events of one typing sample.
type Sample = Vec<(u64, usize, i32)>;

/// kloak's setting: None = off, else (max delay ms, hold floor).
type Rule = Option<(u64, Option<HoldFloor>)>;
const LETTERS: &str = "abcdefghijklmnopqrstuvwxyz ";
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
    "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "time", "people", "into",
    "only", "other", "new", "some", "could", "these", "two", "may", "first", "then", "do", "any",
    "like", "my", "now", "over", "such", "our", "man", "me", "even", "most", "made", "after",
    "also", "did", "many", "before", "must",
];

fn normal(rng: &mut ChaCha20Rng, mean: f64, sd: f64) -> f64 {
    // Box-Muller.
    let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random_range(0.0..1.0));
    mean + sd * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

struct Typist {
    hold: Vec<f64>,                        // per key, ms
    speed: f64,                            // scales the shared bigram base
    bigram: BTreeMap<(usize, usize), f64>, // personal offset, ms
}

fn key_index(c: char) -> usize {
    LETTERS.find(c).unwrap_or(26)
}

fn text(rng: &mut ChaCha20Rng, chars: usize) -> Vec<usize> {
    let mut s = String::new();
    while s.len() < chars {
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        s.push(' ');
    }
    s.chars().take(chars).map(key_index).collect()
}

/// (time_us, key, value) for one typing sample.
fn sample(
    t: &Typist,
    base: &BTreeMap<(usize, usize), f64>,
    keys: &[usize],
    rng: &mut ChaCha20Rng,
) -> Vec<(u64, usize, i32)> {
    let mut ev = Vec::new();
    let mut now = 1_000_000.0;
    let mut free = [0.0f64; 27];
    let mut prev = None;
    // Session-to-session drift: nobody types the same way every day.
    let (speed_drift, hold_drift) = (normal(rng, 1.0, 0.06), normal(rng, 1.0, 0.06));
    for &k in keys {
        if let Some(p) = prev {
            let b = base.get(&(p, k)).copied().unwrap_or(200.0);
            let lat = (b * t.speed * speed_drift + t.bigram.get(&(p, k)).copied().unwrap_or(0.0))
                * normal(rng, 1.0, 0.35).clamp(0.3, 3.0);
            now += lat.max(15.0) * 1000.0;
        }
        now = now.max(free[k] + 1000.0);
        let hold =
            (t.hold[k] * hold_drift * normal(rng, 1.0, 0.25).clamp(0.4, 2.5)).max(20.0) * 1000.0;
        ev.push((now as u64, k, 1));
        ev.push(((now + hold) as u64, k, 0));
        free[k] = now + hold;
        prev = Some(k);
    }
    ev.sort_by_key(|e| e.0);
    ev
}

/// What an observer sees after kloak: (key, press time, release time) per keystroke, in order.
fn observe(
    ev: &[(u64, usize, i32)],
    rule: Option<(u64, Option<HoldFloor>)>,
    rng: &mut ChaCha20Rng,
    lat: &mut Vec<u64>,
) -> Vec<(usize, f64, f64)> {
    // Codes: keys 0..27 -> 30.. (all ordinary keys).
    let emitted: Vec<(u64, u16, i32, u64)> = match rule {
        None => ev.iter().map(|e| (e.0, e.1 as u16, e.2, e.0)).collect(),
        Some((max, floor)) => {
            let mut q: Queue<u8> = Queue::with_hold_floor(max * 1000, floor, &[]);
            let mut out = Vec::new();
            let take = |out: &mut Vec<(u64, u16, i32, u64)>, fs: Vec<Frame<u8>>| {
                for f in fs {
                    let e = f.events[0];
                    out.push((f.arrived, e.code - 30, e.value, f.release));
                }
            };
            for &(t, k, v) in ev {
                take(&mut out, q.pop_due(t));
                q.push(
                    0,
                    vec![
                        Event {
                            kind: EV_KEY,
                            code: 30 + k as u16,
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
            strokes.push((k as usize, p, release as f64 / 1000.0));
        }
    }
    strokes.sort_by(|a, b| a.1.total_cmp(&b.1));
    strokes
}

/// Mean hold per key, then mean press-to-press latency per common bigram (NaN if unseen).
fn features(strokes: &[(usize, f64, f64)], bigrams: &[(usize, usize)]) -> Vec<f64> {
    let mut hold = vec![(0.0, 0u32); 27];
    let mut lat: HashMap<(usize, usize), (f64, u32)> = HashMap::new();
    for (i, s) in strokes.iter().enumerate() {
        hold[s.0].0 += s.2 - s.1;
        hold[s.0].1 += 1;
        if i > 0 {
            let p = &strokes[i - 1];
            let e = lat.entry((p.0, s.0)).or_insert((0.0, 0));
            e.0 += s.1 - p.1;
            e.1 += 1;
        }
    }
    let mut f: Vec<f64> = hold
        .iter()
        .map(|(s, n)| if *n > 0 { s / f64::from(*n) } else { f64::NAN })
        .collect();
    f.extend(
        bigrams
            .iter()
            .map(|b| lat.get(b).map_or(f64::NAN, |(s, n)| s / f64::from(*n))),
    );
    f
}

fn main() {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let mut base = BTreeMap::new();
    for a in 0..27 {
        for b in 0..27 {
            base.insert((a, b), rng.random_range(110.0..280.0));
        }
    }
    let typists: Vec<Typist> = (0..USERS)
        .map(|_| {
            let h0 = normal(&mut rng, 95.0, 14.0).clamp(60.0, 140.0);
            Typist {
                hold: (0..27)
                    .map(|_| (h0 + normal(&mut rng, 0.0, 9.0)).max(30.0))
                    .collect(),
                speed: rng.random_range(0.85..1.25),
                bigram: base
                    .keys()
                    .map(|k| (*k, normal(&mut rng, 0.0, 12.0)))
                    .collect(),
            }
        })
        .collect();
    // Common bigrams of the corpus.
    let corpus = text(&mut rng, 20_000);
    let mut counts: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for w in corpus.windows(2) {
        *counts.entry((w[0], w[1])).or_default() += 1;
    }
    let mut common: Vec<_> = counts.into_iter().collect();
    common.sort_by_key(|c| std::cmp::Reverse(c.1));
    let bigrams: Vec<(usize, usize)> = common.iter().take(40).map(|c| c.0).collect();
    // Samples: one enrollment and two test texts per user.
    let samples: Vec<(Sample, Vec<Sample>)> = typists
        .iter()
        .map(|t| {
            let enroll = sample(t, &base, &text(&mut rng, 800), &mut rng);
            let tests = (0..2)
                .map(|_| sample(t, &base, &text(&mut rng, 300), &mut rng))
                .collect();
            (enroll, tests)
        })
        .collect();
    let floor = Some(HoldFloor {
        min: 150_000,
        max: 200_000,
    });
    let rules: Vec<(String, Rule)> = vec![
        ("kloak off".into(), None),
        ("upstream rule, 25 ms".into(), Some((25, None))),
        ("upstream rule, 50 ms".into(), Some((50, None))),
        ("upstream rule, 100 ms".into(), Some((100, None))),
        ("hold floor 150-200, 25 ms".into(), Some((25, floor))),
        ("hold floor 150-200, 50 ms".into(), Some((50, floor))),
        ("hold floor 150-200, 100 ms".into(), Some((100, floor))),
    ];
    println!("{USERS} synthetic typists, nearest-profile identification (chance 1%)");
    println!(
        "{:<28} {:>10} {:>14} {:>14}",
        "setting", "identified", "press lat p50", "press lat p99"
    );
    for (name, rule) in rules {
        let mut lat = Vec::new();
        let mut r = ChaCha20Rng::seed_from_u64(7);
        // The attacker enrolls users on observed typing (kloak applied to enrollment as well).
        let train: Vec<Vec<f64>> = samples
            .iter()
            .map(|(e, _)| features(&observe(e, rule, &mut r, &mut lat), &bigrams))
            .collect();
        let test: Vec<(usize, Vec<f64>)> = samples
            .iter()
            .enumerate()
            .flat_map(|(u, (_, ts))| ts.iter().map(|s| (u, s.clone())).collect::<Vec<_>>())
            .map(|(u, s)| (u, features(&observe(&s, rule, &mut r, &mut lat), &bigrams)))
            .collect();
        let acc = identify(&train, &test);
        println!(
            "{name:<28} {:>9.1}% {:>11.1} ms {:>11.1} ms",
            acc * 100.0,
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99)
        );
    }
}
