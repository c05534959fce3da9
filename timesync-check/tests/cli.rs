//! Every state of a fake /run/sdwdate, --json, --wait and --tor, through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tsc-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_timesync-check"))
        .args(args)
        .output()
        .expect("run")
}

/// A live process named `sdwdate` (a copy of sleep(1)), left running for 5 minutes: readers
/// take a pid as sdwdate's only if /proc names it so.
fn fake_sdwdate() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tsc-{}-fake", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let bin = dir.join("sdwdate");
        std::fs::copy("/bin/sleep", &bin).expect("copy sleep");
        // Silent (it must not hold the test's output open) and gone within minutes.
        Command::new(&bin)
            .arg("300")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("fake sdwdate")
            .id()
    })
}

fn sdwdate_files(d: &Path, icon: &str, msg: &str, files: &[&str]) {
    std::fs::write(
        d.join("status"),
        format!(r#"{{"icon": "{icon}", "message": "{msg}"}}"#),
    )
    .expect("w");
    std::fs::write(d.join("msg"), msg).expect("w");
    // A running sdwdate: a live process of that name.
    std::fs::write(d.join("pid"), format!("{}\n", fake_sdwdate())).expect("w");
    for f in ["success", "first_success", "fail"] {
        let _ = std::fs::remove_file(d.join(f));
    }
    for f in files {
        std::fs::write(d.join(f), "").expect("w");
    }
}

#[test]
fn every_state_has_its_exit_code_and_line() {
    let d = dir("states");
    let p = d.to_str().expect("utf8");
    let out = run(&["--run-dir", "/nonexistent/sdwdate"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not running"));
    for (files, icon, code, needle) in [
        (&[][..], "busy", 1, "not synced yet; sdwdate: Running"),
        (
            &["success", "first_success"][..],
            "success",
            0,
            "clock synced by sdwdate",
        ),
        (&["first_success"][..], "busy", 0, "earlier this boot"),
        (&["fail"][..], "error", 2, "sdwdate failed: Running"),
        (
            &["fail", "first_success"][..],
            "error",
            2,
            "succeed earlier this boot",
        ),
    ] {
        sdwdate_files(&d, icon, "Running", files);
        let out = run(&["--run-dir", p]);
        assert_eq!(out.status.code(), Some(code), "{files:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(needle),
            "{files:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let j: serde_json::Value =
            serde_json::from_slice(&run(&["--run-dir", p, "--json"]).stdout).expect("json");
        assert_eq!(j["code"], code);
    }
    // Stopped or crashed: the pid file names a dead process, or is gone. Files that say it
    // synced earlier give "stopped" (4), never "synced"; without them, "not running" (3).
    let mut child = Command::new("true").spawn().expect("true");
    let dead = child.id();
    child.wait().expect("wait");
    // A live process that is not sdwdate (a pid reused after an unclean death): this test.
    let reused = std::process::id();
    for (files, pid, code, needle) in [
        (
            &["success", "first_success"][..],
            Some(reused),
            4,
            "but sdwdate is not running",
        ),
        (
            &["success", "first_success"][..],
            Some(dead),
            4,
            "but sdwdate is not running",
        ),
        (
            &["success", "first_success"][..],
            None,
            4,
            "but sdwdate is not running",
        ),
        (
            &["first_success"][..],
            Some(dead),
            4,
            "but sdwdate is not running",
        ),
        (&[][..], Some(dead), 3, "sdwdate is not running"),
        (&["fail"][..], None, 3, "sdwdate is not running"),
    ] {
        sdwdate_files(&d, "error", "Not running: sdwdate was stopped", files);
        match pid {
            Some(pid) => std::fs::write(d.join("pid"), format!("{pid}\n")).expect("w"),
            None => std::fs::remove_file(d.join("pid")).expect("rm"),
        }
        let out = run(&["--run-dir", p]);
        let line = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{files:?} {pid:?}: {line}");
        assert!(line.contains(needle), "{files:?} {pid:?}: {line}");
    }
    std::fs::remove_dir_all(&d).expect("cleanup");
}

#[test]
fn wait_returns_as_soon_as_first_success_appears() {
    let d = dir("wait");
    sdwdate_files(&d, "busy", "Fetching", &[]);
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_timesync-check"))
        .args([
            "--run-dir",
            d.to_str().expect("utf8"),
            "--wait",
            "--timeout",
            "30",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(d.join("msg"), "Success").expect("w");
    std::fs::write(d.join("first_success"), "").expect("w");
    let written = Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        written.elapsed() < Duration::from_millis(900),
        "took {:?} after first_success appeared",
        written.elapsed()
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sdwdate: Fetching"),
        "progress line"
    );
    // A timeout says pending.
    let d2 = dir("wait2");
    sdwdate_files(&d2, "busy", "Fetching", &[]);
    let out = run(&[
        "--run-dir",
        d2.to_str().expect("utf8"),
        "--wait",
        "--timeout",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("timed out waiting"));
    for x in [d, d2] {
        std::fs::remove_dir_all(&x).expect("cleanup");
    }
}

#[test]
fn tor_bounds_from_a_cached_consensus() {
    let d = dir("tor");
    sdwdate_files(&d, "success", "ok", &["success", "first_success"]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("now")
        .as_secs() as i64;
    let fmt = |t: i64| {
        let out = Command::new("date")
            .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%d %H:%M:%S"])
            .output()
            .expect("date");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let p = d.to_str().expect("utf8");
    for (after, until, code, needle) in [
        (now - 3600, now + 7200, 0, "inside Tor's consensus window"),
        (
            now - 4 * 3600,
            now - 3600,
            2,
            "after Tor's consensus valid-until (fast)",
        ),
        (
            now + 3600,
            now + 4 * 3600,
            2,
            "before Tor's consensus valid-after (slow)",
        ),
    ] {
        let c = d.join("consensus");
        std::fs::write(
            &c,
            format!("valid-after {}\nvalid-until {}\n", fmt(after), fmt(until)),
        )
        .expect("w");
        let out = run(&[
            "--run-dir",
            p,
            "--state-dir",
            p,
            "--tor",
            "--control-port",
            "127.0.0.1:9",
            "--consensus-file",
            c.to_str().expect("utf8"),
        ]);
        let line = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{line}");
        assert!(line.contains(needle), "{line}");
    }
    // No window at all (no control port, no usable consensus: missing, or a window Tor
    // could not have made): --tor fails, whatever sdwdate's files say.
    let c = d.join("consensus");
    for consensus in [
        None,
        Some(format!(
            "valid-after {}\nvalid-until {}\n",
            fmt(now - 3600),
            fmt(now + 365 * 86_400)
        )),
    ] {
        let _ = std::fs::remove_file(&c);
        if let Some(text) = &consensus {
            std::fs::write(&c, text).expect("w");
        }
        let out = run(&[
            "--run-dir",
            p,
            "--state-dir",
            p,
            "--tor",
            "--control-port",
            "127.0.0.1:9",
            "--consensus-file",
            c.to_str().expect("utf8"),
        ]);
        let line = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{consensus:?}: {line}");
        assert!(
            line.contains("no Tor consensus window to compare the clock with")
                && line.contains("127.0.0.1:9"),
            "{line}"
        );
    }
    std::fs::remove_dir_all(&d).expect("cleanup");
}

/// A typo is 64, never 2 ("failed"): scripts that branch on the verdict can trust it.
#[test]
fn usage_errors_are_64_and_every_code_is_documented() {
    anon_cli::testing::assert_exit_codes(
        Path::new(env!("CARGO_BIN_EXE_timesync-check")),
        &[
            &["--bogus"],
            &["--timeout", "soon"],
            &["--control-port", "nowhere"],
            &["extra"],
        ],
        &[0, 1, 2, 3],
    );
}
