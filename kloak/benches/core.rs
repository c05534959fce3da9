//! The core's cost per 10,000 events and the delay distribution it adds, for typing-like
//! input at several max delays. Prints figures, never fails on speed.

use std::time::Instant;

use kloak::schedule::{Event, Queue, EV_KEY, EV_SYN, SYN_REPORT};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn pct(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    // Typing: 8-12 keys per second with bursts, press/release frames.
    let mut t = 0u64;
    let arrivals: Vec<u64> = (0..200_000)
        .map(|_| {
            t += if rng.random_bool(0.3) {
                rng.random_range(0..15_000)
            } else {
                rng.random_range(40_000..200_000)
            };
            t
        })
        .collect();
    let frame = |i: usize| {
        vec![
            Event {
                kind: EV_KEY,
                code: 30 + (i % 26) as u16,
                value: (i % 2) as i32,
            },
            Event {
                kind: EV_SYN,
                code: SYN_REPORT,
                value: 0,
            },
        ]
    };
    println!(
        "{:<14} {:>18} {:>9} {:>9} {:>9}",
        "max delay", "CPU per 10k events", "p50", "p99", "max"
    );
    for max_ms in [50u64, 100, 200] {
        let mut q: Queue<u8> = Queue::new(max_ms * 1000);
        let mut delays = Vec::with_capacity(arrivals.len());
        let started = Instant::now();
        for (i, at) in arrivals.iter().enumerate() {
            for f in q.pop_due(*at) {
                delays.push(f.release - f.arrived);
            }
            q.push(0, frame(i), *at, &mut rng);
        }
        for f in q.drain() {
            delays.push(f.release - f.arrived);
        }
        let per_10k =
            started.elapsed().as_secs_f64() * 1e6 / (arrivals.len() as f64 * 2.0) * 10_000.0;
        delays.sort_unstable();
        println!(
            "{:<14} {:>15.0} us {:>6.1} ms {:>6.1} ms {:>6.1} ms",
            format!("{max_ms} ms"),
            per_10k,
            pct(&delays, 0.5) as f64 / 1000.0,
            pct(&delays, 0.99) as f64 / 1000.0,
            *delays.last().unwrap_or(&0) as f64 / 1000.0
        );
    }
}
