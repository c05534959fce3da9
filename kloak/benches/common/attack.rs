//! The identification attack both kloak benchmarks run (`identify.rs` on synthetic typists,
//! `ikdd.rs` on real typing), and their percentile helper: one copy, so that both tables
//! measure the same attacker.

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
