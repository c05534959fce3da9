//! sdwdate's pool configuration (`/etc/sdwdate.d/*.conf`): the text parser (`merge_str`),
//! the check for empty pools, and the pick of one onion per group. Errors must be Err, never
//! a panic; every accepted source must print as a URL that parses back to itself.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use sdwdate::config::{Config, Member, Source};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut cfg = Config::default();
    if cfg
        .merge_str(Path::new("/etc/sdwdate.d/50_user.conf"), &text)
        .is_err()
    {
        return;
    }
    // A second file on top (a user file adding to shipped pools) must work the same way.
    let mut twice = cfg.clone();
    let _ = twice.merge_str(Path::new("/etc/sdwdate.d/60_more.conf"), &text);
    for m in cfg.pools.iter().flatten() {
        let sources: &[Source] = match m {
            Member::One(s) => std::slice::from_ref(s),
            Member::Group(g) => {
                assert!(!g.is_empty(), "an empty group was accepted");
                g
            }
        };
        for s in sources {
            let again = Source::parse_url(&s.to_string(), &s.comment);
            assert_eq!(again.as_ref(), Ok(s), "{s} does not parse back");
            assert_eq!(s.onion().len(), 56);
        }
    }
    if cfg.validate().is_ok() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(data.len() as u64);
        let pools = sdwdate::pools::Pools::pick(&cfg, &mut rng);
        for (p, members) in pools.0.iter().zip(&cfg.pools) {
            assert_eq!(p.len(), members.len());
        }
        let n = cfg.total_members();
        let budget = sdwdate::pools::allowed_failures(n, cfg.max_failure_ratio);
        if (0.0..=1.0).contains(&cfg.max_failure_ratio) {
            assert!(budget <= n, "failure budget {budget} above {n} members");
        }
    }
});
