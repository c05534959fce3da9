//! Time to the first successful round and peak RSS of `sdwdate --once --dry-run` over the
//! local Tor network, side by side for the SOCKS transport (a warm tor client) and the
//! embedded arti client (a fresh state directory every run, and the same one reused: the
//! restart case), measured with GNU time; and the release binary's size. Prints figures,
//! never fails on speed. Run by scripts/bench.sh.

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
    let net = match TorNet::start(&[Behaviour::Offset(30); 3], Duration::from_secs(150)) {
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
    let arti_toml = dir.join("arti.toml");
    std::fs::write(&arti_toml, net.arti_toml()).expect("write");
    let bin = env!("CARGO_BIN_EXE_sdwdate");
    println!("{:<34} {:>12} {:>14}", "sdwdate --once", "wall", "peak RSS");
    for (name, args, fresh) in [
        (
            "SOCKS (warm tor client)",
            vec![
                "--transport".to_owned(),
                "socks".into(),
                "--proxy".into(),
                net.socks.to_string(),
                "--control-port".into(),
                net.control.to_string(),
            ],
            true,
        ),
        (
            "arti, fresh state",
            vec![
                "--transport".to_owned(),
                "arti".into(),
                "--arti-config".into(),
                arti_toml.display().to_string(),
            ],
            true,
        ),
        (
            "arti, state kept (restart)",
            vec![
                "--transport".to_owned(),
                "arti".into(),
                "--arti-config".into(),
                arti_toml.display().to_string(),
            ],
            false,
        ),
    ] {
        for run in 1..=10 {
            let state = if fresh {
                dir.join(format!("state-{name}-{run}"))
            } else {
                dir.join(format!("state-{name}"))
            };
            let out = Command::new("/usr/bin/time")
                .arg("-v")
                .arg(bin)
                .arg("--config-dir")
                .arg(dir.join("conf"))
                .arg("--run-dir")
                .arg(dir.join(format!("run-{name}-{run}")))
                .arg("--state-dir")
                .arg(state)
                .args(&args)
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
            println!(
                "{:<34} {:>12} {:>11} KB{ok}",
                format!("{name}: run {run}"),
                field(&report, "Elapsed (wall clock) time (h:mm:ss or m:ss):"),
                field(&report, "Maximum resident set size (kbytes):")
            );
        }
    }
    // One binary carries both transports; the package ships it stripped.
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / 1e6;
    let stripped = dir.join("sdwdate.stripped");
    let strip_ok = Command::new("strip")
        .args(["--strip-all", "-o"])
        .arg(&stripped)
        .arg(bin)
        .status()
        .is_ok_and(|s| s.success());
    println!(
        "binary: {bin} ({:.1} MB, stripped {})",
        size(std::path::Path::new(bin)),
        if strip_ok {
            format!("{:.1} MB", size(&stripped))
        } else {
            "?".into()
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
}
