//! Time to the first successful round and peak RSS of `sdwdate --once --dry-run` over the
//! local Tor network, side by side for the SOCKS transport (a warm tor client) and the
//! embedded arti client (a fresh state directory every run, and the same one reused: the
//! restart case), measured with GNU time; the same with one hung source (takes the request,
//! never answers) in every pool, with sdwdate's defaults (hedge after 10 s); the floor: `curl
//! --socks5-hostname` to one of the same onions through the same tor, a new circuit each
//! time; and the release binary's size. Prints figures, never fails on speed. Run by
//! scripts/bench.sh.

use std::process::Command;
use std::time::Duration;

use anon_tornet::{Behaviour, TorNet};

fn field<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(name))
        .map_or("?", str::trim)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists; nothing to list here
    }
    // Sources 0..6 honest, 6..9 hung.
    let mut behaviours = vec![Behaviour::Offset(30); 6];
    behaviours.extend([Behaviour::Slow(Duration::from_secs(600)); 3]);
    let net = match TorNet::start(&behaviours, Duration::from_secs(150)) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("first_round: cannot start the Tor network: {e}");
            std::process::exit(1);
        }
    };
    let dir = std::env::temp_dir().join(format!("sdwdate-bench-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("conf")).expect("mkdir");
    let pools: String = ["SDWDATE_POOL_ZERO", "SDWDATE_POOL_ONE", "SDWDATE_POOL_TWO"]
        .iter()
        .zip(&net.sources)
        .map(|(p, s)| format!("{p}=(\n\"{} # bench\"\n)\n", s.url()))
        .collect();
    std::fs::write(dir.join("conf/30.conf"), pools).expect("write");
    // A hung source and two honest ones per pool; MAX_FAILURE_RATIO=1 gives a budget of 3.
    std::fs::create_dir_all(dir.join("conf-hung")).expect("mkdir");
    let hung: String = ["SDWDATE_POOL_ZERO", "SDWDATE_POOL_ONE", "SDWDATE_POOL_TWO"]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let m = [6 + i, i, 3 + i].map(|j| format!("\"{} # bench\"\n", net.sources[j].url()));
            format!("{p}=(\n{})\n", m.concat())
        })
        .collect();
    std::fs::write(
        dir.join("conf-hung/30.conf"),
        format!("MAX_FAILURE_RATIO=1\n{hung}"),
    )
    .expect("write");
    let arti_toml = dir.join("arti.toml");
    std::fs::write(&arti_toml, net.arti_toml()).expect("write");
    let bin = env!("CARGO_BIN_EXE_sdwdate");
    // The SOCKS-only build (`--no-default-features`, built by scripts/bench.sh into a target
    // directory of its own), side by side with the packaged pair: sdwdate in SOCKS mode must
    // be as light, since it maps nothing of arti (sdwdate-arti is exec'd only for arti).
    let socks_only = std::env::var("SDWDATE_SOCKS_ONLY_BIN").ok();
    println!("{:<34} {:>12} {:>14}", "sdwdate --once", "wall", "peak RSS");
    let socks = vec![
        "--transport".to_owned(),
        "socks".into(),
        "--proxy".into(),
        net.socks.to_string(),
        "--control-port".into(),
        net.control.to_string(),
        "--control-cookie".into(),
        net.cookie.display().to_string(),
    ];
    let arti = vec![
        "--transport".to_owned(),
        "arti".into(),
        "--arti-config".into(),
        arti_toml.display().to_string(),
    ];
    let mut rows = vec![(
        bin.to_owned(),
        "SOCKS (warm tor client)",
        &socks,
        true,
        "conf",
        10,
    )];
    if let Some(b) = &socks_only {
        rows.push((
            b.clone(),
            "SOCKS-only build, SOCKS",
            &socks,
            true,
            "conf",
            10,
        ));
    } else {
        eprintln!("first_round: SDWDATE_SOCKS_ONLY_BIN unset: no SOCKS-only row (scripts/bench.sh sets it)");
    }
    for (bin, name, args, fresh, conf, runs) in rows.into_iter().chain([
        (bin.to_owned(), "arti, fresh state", &arti, true, "conf", 10),
        (
            bin.to_owned(),
            "arti, state kept (restart)",
            &arti,
            false,
            "conf",
            10,
        ),
        (
            bin.to_owned(),
            "SOCKS, a hung source per pool",
            &socks,
            true,
            "conf-hung",
            5,
        ),
        (
            bin.to_owned(),
            "arti kept, a hung source per pool",
            &arti,
            false,
            "conf-hung",
            5,
        ),
    ]) {
        for run in 1..=runs {
            let state = if fresh {
                dir.join(format!("state-{name}-{run}"))
            } else {
                dir.join(format!("state-{name}"))
            };
            let out = Command::new("/usr/bin/time")
                .arg("-v")
                .arg(&bin)
                .arg("--config-dir")
                .arg(dir.join(conf))
                .arg("--run-dir")
                .arg(dir.join(format!("run-{name}-{run}")))
                .arg("--state-dir")
                .arg(state)
                .args(args)
                .args(["--once", "--dry-run"])
                .env_remove("JOURNAL_STREAM")
                .output()
                .expect("/usr/bin/time (Debian package `time`)");
            let report = String::from_utf8_lossy(&out.stderr);
            let ok = if out.status.success() {
                ""
            } else {
                " (round FAILED)"
            };
            if !out.status.success() {
                // sdwdate's own lines say why (arti's small-network warnings left out).
                report
                    .lines()
                    .filter(|l| l.starts_with("sdwdate: ") && !l.contains("tor_netdir"))
                    .for_each(|l| eprintln!("  {l}"));
            }
            let hedges = report.matches("; asking ").count();
            println!(
                "{:<44} {:>12} {:>11} KB{ok}{}",
                format!("{name}: run {run}"),
                field(&report, "Elapsed (wall clock) time (h:mm:ss or m:ss):"),
                field(&report, "Maximum resident set size (kbytes):"),
                if hedges > 0 {
                    format!(" ({hedges} hedged)")
                } else {
                    String::new()
                }
            );
        }
    }
    // The floor: curl through the same tor to one of the same onions, a new circuit each
    // time (a new SOCKS username, as sdwdate does).
    for run in 1..=10 {
        let out = Command::new("/usr/bin/time")
            .arg("-v")
            .args([
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "60",
            ])
            .arg("--socks5-hostname")
            .arg(net.socks.to_string())
            .arg("--proxy-user")
            .arg(format!("bench-{run}-{}:x", std::process::id()))
            .arg(net.sources[0].url())
            .output();
        let Ok(out) = out else {
            println!("curl floor: curl is not installed");
            break;
        };
        let report = String::from_utf8_lossy(&out.stderr);
        println!(
            "{:<44} {:>12} {:>11} KB (HTTP {})",
            format!("curl --socks5-hostname: run {run}"),
            field(&report, "Elapsed (wall clock) time (h:mm:ss or m:ss):"),
            field(&report, "Maximum resident set size (kbytes):"),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // sdwdate (SOCKS, exec's sdwdate-arti for arti), sdwdate-arti, and the SOCKS-only build;
    // the package ships them stripped.
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / 1e6;
    let arti_bin = std::path::Path::new(bin).with_file_name("sdwdate-arti");
    let mut bins = vec![std::path::PathBuf::from(bin), arti_bin];
    bins.extend(socks_only.iter().map(std::path::PathBuf::from));
    for b in bins {
        let stripped = dir.join("stripped");
        let strip_ok = Command::new("strip")
            .args(["--strip-all", "-o"])
            .arg(&stripped)
            .arg(&b)
            .status()
            .is_ok_and(|s| s.success());
        println!(
            "binary: {} ({:.1} MB, stripped {})",
            b.display(),
            size(&b),
            if strip_ok {
                format!("{:.1} MB", size(&stripped))
            } else {
                "?".into()
            }
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
