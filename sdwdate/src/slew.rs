//! Gradual clock adjustment, as upstream's sclockadj: move the wall clock by at most 5 ms each
//! second, so a correction of N seconds takes 200·N seconds and nothing sees a jump.

use std::time::Duration;

pub const STEP_NS: i64 = 5_000_000;
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The remaining correction; `next()` gives the next step in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slew {
    remaining_ns: i64,
}

impl Slew {
    pub fn plan(offset_ns: i64) -> Slew {
        Slew {
            remaining_ns: offset_ns,
        }
    }
    pub fn remaining_ns(&self) -> i64 {
        self.remaining_ns
    }
    /// How long the whole slew takes.
    pub fn duration(&self) -> Duration {
        let steps = self.remaining_ns.unsigned_abs().div_ceil(STEP_NS as u64);
        INTERVAL * u32::try_from(steps).unwrap_or(u32::MAX)
    }
}

impl Iterator for Slew {
    type Item = i64;
    fn next(&mut self) -> Option<i64> {
        if self.remaining_ns == 0 {
            return None;
        }
        let step = self.remaining_ns.clamp(-STEP_NS, STEP_NS);
        self.remaining_ns -= step;
        Some(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_bounded_and_add_up() {
        for offset in [
            0,
            1,
            -1,
            4_999_999,
            5_000_000,
            5_000_001,
            -12_345_678_901,
            987_654_321,
        ] {
            let steps: Vec<i64> = Slew::plan(offset).collect();
            assert_eq!(steps.iter().sum::<i64>(), offset);
            assert!(steps
                .iter()
                .all(|s| s.abs() <= STEP_NS && *s != 0 && s.signum() == offset.signum()));
            assert_eq!(Slew::plan(offset).duration(), INTERVAL * steps.len() as u32);
        }
        assert_eq!(
            Slew::plan(1_000_000_000).duration(),
            Duration::from_secs(200)
        );
    }
}
