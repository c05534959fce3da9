//! Median time to build each ruleset (pure core, including JSON serialisation) and to apply
//! it with one `nft -j -f -` transaction inside a private network namespace. Prints figures;
//! never fails on speed. Run as root: `scripts/bench.sh`.

use std::path::Path;
use std::time::{Duration, Instant};

use anon_firewall::{ruleset, Config, Facts, Host, Role, Ruleset};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn facts() -> Facts {
    Facts {
        tor_uid: 107,
        no_nat_uids: vec![],
        sdwdate_uid: Some(108),
        vpn_uid: None,
        time_synced: true,
    }
}

fn main() {
    let cfg = Config::default();
    println!(
        "{:<28} {:>14} {:>14}",
        "ruleset", "build (median)", "apply (median)"
    );
    let scratch = std::env::temp_dir().join(format!("afw-bench-{}", std::process::id()));
    let root = nix::unistd::geteuid().is_root();
    for (name, role, text) in [
        ("gateway (full)", Role::Gateway, ""),
        (
            "gateway (timesync)",
            Role::Gateway,
            "mode = \"timesync-fail-closed\"",
        ),
        ("workstation (full)", Role::Workstation, ""),
    ] {
        let mut c = cfg.clone();
        c.merge_str(Path::new("bench.toml"), text)
            .expect("bench config");
        let f = Facts {
            time_synced: text.is_empty(),
            ..facts()
        };
        let build: Vec<Duration> = (0..2000)
            .map(|_| {
                let t = Instant::now();
                let rs = Ruleset::build(&c, role, &f);
                std::hint::black_box(serde_json::to_string(&rs.nftables).expect("json"));
                t.elapsed()
            })
            .collect();
        let apply = if root {
            let cfg_dir = scratch.join(name.replace(' ', "_"));
            std::fs::create_dir_all(&cfg_dir).expect("mkdir");
            std::fs::write(
                cfg_dir.join("50.toml"),
                format!("role = \"{role}\"\ntor_user = 107\n{text}\n"),
            )
            .expect("write");
            let host = Host {
                config_dir: cfg_dir.clone(),
                run_dir: cfg_dir.join("run"),
                sdwdate_run_dir: cfg_dir.join("sdw"),
                ..Host::default()
            };
            let ns = anon_netns::Netns::new(&format!("afw-bench-{}", std::process::id()))
                .expect("netns");
            let times = ns
                .enter(|| {
                    (0..50)
                        .map(|_| {
                            let t = Instant::now();
                            host.apply(None).expect("apply");
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
                .expect("enter netns");
            format!("{:.2} ms", median(times).as_secs_f64() * 1e3)
        } else {
            "(needs root)".into()
        };
        println!(
            "{name:<28} {:>11.1} us {apply:>14}",
            median(build).as_secs_f64() * 1e6
        );
    }
    let lock: Vec<Duration> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(serde_json::to_string(&ruleset::lockdown()).expect("json"));
            t.elapsed()
        })
        .collect();
    println!(
        "{:<28} {:>11.1} us",
        "lockdown",
        median(lock).as_secs_f64() * 1e6
    );
    let _ = std::fs::remove_dir_all(&scratch);
}
