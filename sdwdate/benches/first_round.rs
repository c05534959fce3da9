//! Time to the first successful round and peak RSS of `sdwdate --once --dry-run` over the
//! local Tor network (SOCKS transport), measured with GNU time. Prints figures, never fails
//! on speed. Run by scripts/bench.sh.

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
    println!(
        "{:<34} {:>12} {:>14}",
        "sdwdate --once (SOCKS)", "wall", "peak RSS"
    );
    let bin = env!("CARGO_BIN_EXE_sdwdate");
    for run in 1..=5 {
        let out = Command::new("/usr/bin/time")
            .arg("-v")
            .arg(bin)
            .arg("--config-dir")
            .arg(dir.join("conf"))
            .arg("--run-dir")
            .arg(dir.join(format!("run{run}")))
            .arg("--state-dir")
            .arg(dir.join(format!("state{run}")))
            .args([
                "--proxy",
                &net.socks.to_string(),
                "--control-port",
                &net.control.to_string(),
                "--once",
                "--dry-run",
            ])
            .env_remove("JOURNAL_STREAM")
            .output()
            .expect("/usr/bin/time (Debian package `time`)");
        let report = String::from_utf8_lossy(&out.stderr);
        let ok = if out.status.success() {
            ""
        } else {
            " (round FAILED)"
        };
        println!(
            "{:<34} {:>12} {:>11} KB{ok}",
            format!("run {run}"),
            field(&report, "Elapsed (wall clock) time (h:mm:ss or m:ss):"),
            field(&report, "Maximum resident set size (kbytes):")
        );
    }
    let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    println!("binary: {bin} ({:.1} MB)", size as f64 / 1e6);
    let _ = std::fs::remove_dir_all(&dir);
}
