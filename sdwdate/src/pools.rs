//! Pools after start-up: each organisation group reduced to the one onion picked for this run.

use rand::Rng;

use crate::config::{Config, Member, Source};

/// The three pools of concrete sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pools(pub [Vec<Source>; 3]);

impl Pools {
    /// Picks one onion of every `[` ... `]` group at random (upstream does this once at start).
    pub fn pick(cfg: &Config, rng: &mut impl Rng) -> Pools {
        let pick_pool = |members: &Vec<Member>, rng: &mut dyn rand::RngCore| -> Vec<Source> {
            members
                .iter()
                .map(|m| match m {
                    Member::One(s) => s.clone(),
                    Member::Group(g) => g[rng.random_range(0..g.len())].clone(),
                })
                .collect()
        };
        Pools([
            pick_pool(&cfg.pools[0], rng),
            pick_pool(&cfg.pools[1], rng),
            pick_pool(&cfg.pools[2], rng),
        ])
    }
}

/// Upstream's failure budget per round: `int(members x ratio / 3)`.
pub fn allowed_failures(total_members: usize, ratio: f64) -> usize {
    (total_members as f64 * ratio / 3.0).floor() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scheme;
    use rand::SeedableRng;

    fn src(n: u8) -> Source {
        Source {
            scheme: Scheme::Http,
            host: format!("{n}"),
            port: 80,
            path: "/".into(),
            comment: String::new(),
        }
    }

    #[test]
    fn upstream_budget() {
        assert_eq!(allowed_failures(44, 0.34), 4);
        assert_eq!(allowed_failures(3, 0.34), 0);
        assert_eq!(allowed_failures(9, 1.0), 3);
    }

    #[test]
    fn groups_yield_one_member_each_and_every_member_gets_picked() {
        let mut cfg = Config::default();
        cfg.pools[0] = vec![
            Member::One(src(1)),
            Member::Group(vec![src(2), src(3), src(4)]),
        ];
        cfg.pools[1] = vec![Member::One(src(5))];
        cfg.pools[2] = vec![Member::One(src(6))];
        let mut seen = std::collections::HashSet::new();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        for _ in 0..200 {
            let p = Pools::pick(&cfg, &mut rng);
            assert_eq!(p.0[0].len(), 2);
            assert_eq!(p.0[0][0], src(1));
            seen.insert(p.0[0][1].host.clone());
        }
        assert_eq!(
            seen.len(),
            3,
            "every group member must be reachable: {seen:?}"
        );
    }
}
