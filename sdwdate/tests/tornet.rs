//! sdwdate end to end over a private Tor network on loopback (Debian's tor), through SOCKS,
//! with the consensus bound from the client's ControlPort. Every run is `--once --dry-run`:
//! this machine's clock is never touched (the real clock changes are tested in the VM).

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anon_tornet::{require_tor, Behaviour, TorNet};

/// What the honest sources say: the local clock is 30 s slow.
const HONEST: f64 = 30.0;

// Indices of the time sources started below.
const H: [usize; 6] = [0, 1, 2, 11, 12, 13];
const LIAR: [usize; 3] = [3, 4, 5];
const DEAD: [usize; 2] = [6, 7];
const MALFORMED: usize = 8;
const OVERSIZED: usize = 9;
const SLOW: usize = 10;

struct Run {
    out: Output,
    dir: std::path::PathBuf,
}

impl Run {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn offset(&self) -> Option<f64> {
        let stdout = String::from_utf8_lossy(&self.out.stdout);
        stdout
            .split("offset ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
    fn file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(name)).ok()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sdwdate(net: &TorNet, pools: [&[usize]; 3], timeout_s: u64, tag: &str) -> Run {
    let dir = std::env::temp_dir().join(format!("sdwdate-e2e-{}-{tag}", std::process::id()));
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    let mut text = String::from("MAX_FAILURE_RATIO=1\n");
    for (name, members) in ["SDWDATE_POOL_ZERO", "SDWDATE_POOL_ONE", "SDWDATE_POOL_TWO"]
        .iter()
        .zip(pools)
    {
        text += &format!("{name}=(\n");
        for m in members {
            text += &format!("    \"{} # source {m}\"\n", net.sources[*m].url());
        }
        text += ")\n";
    }
    std::fs::write(conf.join("30_test.conf"), text).expect("write conf");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sdwdate"))
        .arg("--config-dir")
        .arg(&conf)
        .arg("--run-dir")
        .arg(dir.join("run"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args([
            "--proxy",
            &net.socks.to_string(),
            "--control-port",
            &net.control.to_string(),
        ])
        .args(["--timeout", &timeout_s.to_string(), "--once", "--dry-run"])
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("run sdwdate");
    Run { out, dir }
}

fn assert_success(r: &Run, what: &str) {
    let err = r.stderr();
    assert!(r.out.status.success(), "{what}: sdwdate failed:\n{err}");
    let off = r.offset().unwrap_or_else(|| {
        panic!(
            "{what}: no offset in {:?}",
            String::from_utf8_lossy(&r.out.stdout)
        )
    });
    assert!(
        (off - HONEST).abs() < 2.0,
        "{what}: offset {off} is not within 2 s of {HONEST}\n{err}"
    );
    assert!(
        err.contains("dry-run: would step the clock by"),
        "{what}: {err}"
    );
    let status = r.file("run/status").expect("status");
    assert!(
        status.starts_with(r#"{"icon": "success", "message": "Success. Time offset +"#),
        "{status}"
    );
    assert!(
        r.file("run/success").is_some()
            && r.file("run/first_success").is_some()
            && r.file("run/fail").is_none()
    );
    let replay: i64 = r
        .file("state/time-replay-protection-utc-unixtime")
        .expect("replay")
        .parse()
        .expect("10 digits");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("now")
        .as_secs() as i64;
    // Replay protection records the time the sources agreed on (now + 30 s), not the
    // uncorrected clock.
    assert!(
        (replay - (now + HONEST as i64)).abs() <= 3,
        "replay-protection time {replay} vs now {now} + {HONEST}"
    );
}

fn assert_failure(r: &Run, what: &str, needle: &str) {
    let err = r.stderr();
    assert_eq!(r.out.status.code(), Some(1), "{what}: must fail\n{err}");
    assert!(
        err.contains(needle),
        "{what}: the log must say `{needle}`:\n{err}"
    );
    assert!(
        !err.contains("would step") && !err.contains("slewing"),
        "{what}: the clock must stay put\n{err}"
    );
    assert!(
        r.file("run/fail").is_some() && r.file("run/success").is_none(),
        "{what}: fail file"
    );
    assert!(r
        .file("run/status")
        .expect("status")
        .starts_with(r#"{"icon": "error", "message": "Failed: "#));
    assert!(
        r.file("state/time-replay-protection-utc-unixtime")
            .is_none(),
        "{what}: no replay update"
    );
}

#[test]
fn end_to_end_over_a_local_tor_network() {
    if !require_tor("end_to_end_over_a_local_tor_network") {
        return;
    }
    let mut behaviours = vec![Behaviour::Offset(30); 3];
    behaviours.extend([Behaviour::Offset(86_400); 3]);
    behaviours.extend([
        Behaviour::Dead,
        Behaviour::Dead,
        Behaviour::Malformed,
        Behaviour::Oversized,
    ]);
    behaviours.push(Behaviour::Slow(Duration::from_secs(30)));
    behaviours.extend(vec![Behaviour::Offset(30); 3]);
    let net = TorNet::start(&behaviours, Duration::from_secs(150))
        .unwrap_or_else(|e| panic!("tor network: {e}"));

    // Three honest pools: success, status files, an offset within 2 s of the truth. Meanwhile
    // timesync-check --wait (another package, reading only the files) waits for it.
    let tsc = std::env::current_exe()
        .expect("exe")
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("timesync-check");
    assert!(
        tsc.exists(),
        "{} is missing: run `cargo test --workspace`",
        tsc.display()
    );
    let run_dir =
        std::env::temp_dir().join(format!("sdwdate-e2e-{}-honest/run", std::process::id()));
    let waiter = std::process::Command::new(&tsc)
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["--wait", "--timeout", "120"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("timesync-check --wait");
    let r = sdwdate(
        &net,
        [&[H[0], H[3]], &[H[1], H[4]], &[H[2], H[5]]],
        30,
        "honest",
    );
    assert_success(&r, "honest pools");
    assert!(
        r.stderr().contains("Tor consensus window"),
        "the consensus bound must be used:\n{}",
        r.stderr()
    );
    let waited = waiter.wait_with_output().expect("wait");
    assert_eq!(
        waited.status.code(),
        Some(0),
        "timesync-check --wait: {}",
        String::from_utf8_lossy(&waited.stdout)
    );
    let out = std::process::Command::new(&tsc)
        .arg("--run-dir")
        .arg(&run_dir)
        .arg("--state-dir")
        .arg(r.dir.join("state"))
        .args([
            "--tor",
            "--control-port",
            &net.control.to_string(),
            "--consensus-file",
            "/nonexistent",
        ])
        .output()
        .expect("timesync-check --tor");
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{line}");
    assert!(line.contains("inside Tor's consensus window"), "{line}");
    drop(r);

    // A lying source (+1 day) in every pool: rejected as "fast", another member asked, the
    // result still right. Which member is asked first is random, so run a few rounds.
    let pools: [&[usize]; 3] = [
        &[LIAR[0], H[0], H[3]],
        &[LIAR[1], H[1], H[4]],
        &[LIAR[2], H[2], H[5]],
    ];
    let mut liar_hits = 0;
    for i in 0..4 {
        let before: usize = LIAR.iter().map(|l| net.sources[*l].hits()).sum();
        let r = sdwdate(&net, pools, 30, &format!("liar{i}"));
        assert_success(&r, "with liars");
        let after: usize = LIAR.iter().map(|l| net.sources[*l].hits()).sum();
        if after > before {
            assert!(
                r.stderr().contains("(fast)"),
                "a liar answered but was not rejected:\n{}",
                r.stderr()
            );
        }
        liar_hits += after - before;
    }
    assert!(
        liar_hits > 0,
        "no liar was asked in 4 rounds (odds 1 in 4096)"
    );
    // Alone in its pool, the liar fails the round.
    assert_failure(
        &sdwdate(&net, [&[H[0]], &[LIAR[1]], &[H[2]]], 30, "liar-alone"),
        "liar alone",
        "(fast)",
    );

    // A dead source: the next member is asked.
    let r = sdwdate(
        &net,
        [&[DEAD[0], H[0]], &[DEAD[1], H[1]], &[H[2], H[5]]],
        30,
        "dead",
    );
    assert_success(&r, "dead sources");
    // All members of a pool dead: the round fails, `fail` is written, the clock stays put.
    // (Six members at MAX_FAILURE_RATIO=1 allow two failures, so the pool runs out first.)
    let r = sdwdate(
        &net,
        [&[H[0], H[3]], &[DEAD[0], DEAD[1]], &[H[2], H[4]]],
        30,
        "pool-dead",
    );
    assert_failure(&r, "dead pool", "pool 1: every member was tried");

    // Malformed, oversized and slow answers are rejected with a clear log line.
    assert_failure(
        &sdwdate(&net, [&[MALFORMED], &[H[1]], &[H[2]]], 30, "malformed"),
        "malformed",
        "malformed Date header",
    );
    assert_failure(
        &sdwdate(&net, [&[H[0]], &[OVERSIZED], &[H[2]]], 30, "oversized"),
        "oversized",
        "(oversized)",
    );
    let r = sdwdate(&net, [&[H[0]], &[H[1]], &[SLOW]], 4, "slow");
    assert_failure(&r, "slow", "no answer within 4 s (slow)");
    assert!(Path::new(&net.dir).exists());
}
