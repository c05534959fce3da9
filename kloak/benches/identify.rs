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

use std::collections::BTreeMap;

use kloak::schedule::HoldFloor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

#[path = "common/attack.rs"]
mod attack;
use attack::{features, identify, observe, pct, Rule, Sample};

const USERS: usize = 100;

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

/// The evdev code a key index is typed as: keys 0..27 -> 30.. (all ordinary keys).
fn code(k: usize) -> u16 {
    30 + k as u16
}

fn text(rng: &mut ChaCha20Rng, chars: usize) -> Vec<usize> {
    let mut s = String::new();
    while s.len() < chars {
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        s.push(' ');
    }
    s.chars().take(chars).map(key_index).collect()
}

/// (time_us, evdev code, value) for one typing sample.
fn sample(
    t: &Typist,
    base: &BTreeMap<(usize, usize), f64>,
    keys: &[usize],
    rng: &mut ChaCha20Rng,
) -> Sample {
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
        ev.push((now as u64, code(k), 1));
        ev.push(((now + hold) as u64, code(k), 0));
        free[k] = now + hold;
        prev = Some(k);
    }
    ev.sort_by_key(|e| e.0);
    ev
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
    let bigrams: Vec<(u16, u16)> = common
        .iter()
        .take(40)
        .map(|c| (code(c.0 .0), code(c.0 .1)))
        .collect();
    let keys: Vec<u16> = (0..27).map(code).collect();
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
            .map(|(e, _)| features(&observe(e, rule, &mut r, &mut lat), &keys, &bigrams))
            .collect();
        let test: Vec<(usize, Vec<f64>)> = samples
            .iter()
            .enumerate()
            .flat_map(|(u, (_, ts))| ts.iter().map(|s| (u, s.clone())).collect::<Vec<_>>())
            .map(|(u, s)| {
                (
                    u,
                    features(&observe(&s, rule, &mut r, &mut lat), &keys, &bigrams),
                )
            })
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
