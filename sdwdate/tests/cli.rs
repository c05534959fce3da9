//! The command line without a network: config errors, check-config, the root refusal.

use std::process::Command;

fn sdwdate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sdwdate"))
        .args(args)
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("run sdwdate")
}

fn conf_dir(tag: &str, text: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sdwdate-cli-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(d.join("50_user.conf"), text).expect("write");
    d
}

#[test]
fn check_config_accepts_upstreams_default_pools() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/sdwdate.d");
    let out = sdwdate(&["--config-dir", dir, "check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pools of 14 / 7 / 23 members"));
}

#[test]
fn a_bad_line_is_an_error_with_file_and_line_and_nothing_runs() {
    let d = conf_dir("bad", "MAX_FAILURE_RATIO=0.34\nMAX_FAILURES=3\n");
    for args in [
        vec!["check-config"],
        vec![
            "--once",
            "--dry-run",
            "--control-port",
            "none",
            "--proxy",
            "127.0.0.1:9",
        ],
    ] {
        let mut a = vec![
            "--config-dir",
            d.to_str().expect("utf8"),
            "--run-dir",
            "/nonexistent/run",
        ];
        a.extend(args);
        let out = sdwdate(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{err}");
        assert!(
            err.contains(&format!(
                "{}:2: unknown key `MAX_FAILURES`",
                d.join("50_user.conf").display()
            )),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&d).expect("cleanup");
}

#[test]
fn refuses_to_run_as_root_without_dry_run() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("*** SKIPPED refuses_to_run_as_root_without_dry_run: not root ***");
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI runs the tests as root"
        );
        return;
    }
    let out = sdwdate(&["--once", "--config-dir", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to run as root"));
}

#[cfg(feature = "arti")]
#[test]
fn a_bad_arti_config_names_file_and_setting_and_nothing_runs() {
    let pools = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/sdwdate.d");
    let d = std::env::temp_dir().join(format!("sdwdate-cli-{}-arti", std::process::id()));
    std::fs::create_dir_all(&d).expect("mkdir");
    for (text, needle) in [
        (
            "[tor_network]\nfallback_cachez = []\n",
            "unknown arti setting(s): tor_network.fallback_cachez",
        ),
        ("[path_rules]\nipv4_subnet_family_prefix = \n", "line 2"),
        (
            "[storage]\ncache_dir = \"/tmp/x\"\n",
            "[storage] is set by sdwdate",
        ),
    ] {
        let toml = d.join("arti.toml");
        std::fs::write(&toml, text).expect("write");
        let run = d.join("run");
        let out = sdwdate(&[
            "--config-dir",
            pools,
            "--run-dir",
            run.to_str().expect("utf8"),
            "--state-dir",
            d.join("state").to_str().expect("utf8"),
            "--transport",
            "arti",
            "--arti-config",
            toml.to_str().expect("utf8"),
            "--once",
            "--dry-run",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{text}: {err}");
        assert!(
            err.contains(&toml.display().to_string()) && err.contains(needle),
            "{text}: want `{needle}` with the file name in:\n{err}"
        );
        assert!(
            !run.join("success").exists() && !err.contains("would step"),
            "{err}"
        );
        // check-config reads the arti settings too.
        let out = sdwdate(&[
            "--config-dir",
            pools,
            "--arti-config",
            toml.to_str().expect("utf8"),
            "check-config",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "check-config {text}: {err}");
        assert!(err.contains(needle), "check-config {text}: {err}");
        // As the daemon writes its files (a test's dry run that writes all): the status file
        // says it too (sdwdate-gui), and the unit would not restart (78).
        let out = Command::new(env!("CARGO_BIN_EXE_sdwdate"))
            .args(["--config-dir", pools, "--run-dir"])
            .arg(&run)
            .arg("--state-dir")
            .arg(d.join("state"))
            .args(["--transport", "arti", "--arti-config"])
            .arg(&toml)
            .args(["--dry-run", "--test-write-all"])
            .env("SDWDATE_TEST", "1")
            .env_remove("JOURNAL_STREAM")
            .output()
            .expect("run sdwdate");
        assert_eq!(out.status.code(), Some(78), "daemon {text}");
        let status = std::fs::read_to_string(run.join("status")).expect("status");
        assert!(
            status.contains("Configuration error") && status.contains(needle),
            "daemon {text}: {status}"
        );
        let _ = std::fs::remove_dir_all(&run);
    }
    std::fs::remove_dir_all(&d).expect("cleanup");
}

/// A SOCKS-only build (`--no-default-features`) refuses the arti transport with a clear error.
#[cfg(not(feature = "arti"))]
#[test]
fn a_socks_only_build_refuses_arti() {
    let d = conf_dir("socks-only", "TRANSPORT=arti\n");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/etc/sdwdate.d/30_default.conf"),
        d.join("30_default.conf"),
    )
    .expect("copy the default pools");
    let out = sdwdate(&["--config-dir", d.to_str().expect("utf8"), "check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("built without arti"), "{err}");
    std::fs::remove_dir_all(&d).expect("cleanup");
}

/// A typo is 64, never 1 ("the round failed"), and nothing runs.
#[test]
fn usage_errors_are_64_and_every_code_is_documented() {
    anon_cli::testing::assert_exit_codes(
        std::path::Path::new(env!("CARGO_BIN_EXE_sdwdate")),
        &[
            &["--bogus"],
            &["--transport", "carrier-pigeon", "--once", "--dry-run"],
            &["--control-port", "nowhere", "--once", "--dry-run"],
            &["--proxy", "9050", "--once", "--dry-run"],
            &["--soak-sleep-divisor", "10", "--once"],
            &["--soak-sleep-divisor", "0", "--once", "--dry-run"],
            &["check-config", "extra"],
            // Test-only: refused without SDWDATE_TEST=1.
            &["--test-write-all", "--once", "--dry-run"],
        ],
        &[0, 1, 78],
    );
}

/// A bad line in the daemon's configuration: exit 78 (the unit does not restart on it), the
/// file and line on stderr (the journal) and in the status file (sdwdate-gui), no round run.
/// (`--test-write-all` gives a root test the daemon's status files.)
#[test]
fn a_bad_config_line_stops_the_daemon_and_says_where() {
    let d = conf_dir("typo", "MAX_FAILURE_RATIO=0.3\nNO_SUCH_KEY=1\n");
    let run = d.join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_sdwdate"))
        .args(["--config-dir", d.to_str().expect("utf8")])
        .args(["--run-dir", run.to_str().expect("utf8")])
        .args(["--state-dir", d.join("state").to_str().expect("utf8")])
        .args(["--dry-run", "--test-write-all"])
        .env("SDWDATE_TEST", "1")
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("run sdwdate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("50_user.conf:2") && err.contains("NO_SUCH_KEY"),
        "{err}"
    );
    let status = std::fs::read_to_string(run.join("status")).expect("status");
    assert!(
        status.starts_with(r#"{"icon": "error", "message": "Configuration error: "#)
            && status.contains("50_user.conf:2"),
        "{status}"
    );
    assert!(!run.join("pid").exists() && !run.join("fail").exists());
    // A dry run (a person at a terminal) only prints it.
    let run2 = d.join("run2");
    std::fs::create_dir_all(&run2).expect("mkdir");
    let out = sdwdate(&[
        "--config-dir",
        d.to_str().expect("utf8"),
        "--run-dir",
        run2.to_str().expect("utf8"),
        "--dry-run",
        "--once",
    ]);
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(std::fs::read_dir(&run2).expect("ls").count(), 0);
    std::fs::remove_dir_all(&d).expect("cleanup");
}

/// Root testing with `--dry-run` beside the daemon: a round that fails (no Tor here) writes
/// nothing into directories that are the daemon's (another user's), and never creates them.
#[test]
fn a_dry_run_as_root_leaves_nothing_in_the_daemons_directories() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "*** SKIPPED a_dry_run_as_root_leaves_nothing_in_the_daemons_directories: not root ***"
        );
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI runs the tests as root"
        );
        return;
    }
    let pools = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/sdwdate.d");
    let d = std::env::temp_dir().join(format!("sdwdate-cli-{}-dryroot", std::process::id()));
    let (run, state) = (d.join("run"), d.join("state"));
    for dir in [&run, &state] {
        std::fs::create_dir_all(dir).expect("mkdir");
        nix::unistd::chown(dir, Some(nix::unistd::Uid::from_raw(64_123)), None).expect("chown");
    }
    let out = sdwdate(&[
        "--config-dir",
        pools,
        "--run-dir",
        run.to_str().expect("utf8"),
        "--state-dir",
        state.to_str().expect("utf8"),
        "--transport",
        "socks",
        "--proxy",
        "127.0.0.1:9",
        "--control-port",
        "none",
        "--timeout",
        "2",
        "--once",
        "--dry-run",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nothing written"), "{err}");
    for dir in [&run, &state] {
        assert_eq!(
            std::fs::read_dir(dir).expect("ls").count(),
            0,
            "{}",
            dir.display()
        );
    }
    // A missing run directory is not created either.
    let missing = d.join("missing");
    let out = sdwdate(&[
        "--config-dir",
        pools,
        "--run-dir",
        missing.to_str().expect("utf8"),
        "--state-dir",
        state.to_str().expect("utf8"),
        "--proxy",
        "127.0.0.1:9",
        "--control-port",
        "none",
        "--timeout",
        "2",
        "--once",
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!missing.exists());
    std::fs::remove_dir_all(&d).expect("cleanup");
}

/// wait-sync (sdwdate-wait-sync.service, which time-sync.target follows) returns once
/// `first_success` appears, not before, and gives up with 1 after its timeout.
#[test]
fn wait_sync_returns_on_the_first_success_and_not_before() {
    let d = conf_dir("wait-sync", "");
    let run = d.join("run");
    std::fs::create_dir_all(&run).expect("mkdir");
    // Files that do not say synced do not end the wait.
    for f in ["status", "msg", "fail", "success"] {
        std::fs::write(run.join(f), "").expect("write");
    }
    let t0 = std::time::Instant::now();
    let out = sdwdate(&[
        "--run-dir",
        run.to_str().expect("utf8"),
        "wait-sync",
        "--timeout",
        "2",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t0.elapsed() >= std::time::Duration::from_secs(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no first success after 2 s"));

    let child = Command::new(env!("CARGO_BIN_EXE_sdwdate"))
        .args([
            "--run-dir",
            run.to_str().expect("utf8"),
            "wait-sync",
            "--timeout",
            "60",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut child = Killer(child);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        child.0.try_wait().expect("wait").is_none(),
        "wait-sync returned before the first success"
    );
    std::fs::write(run.join("first_success"), "").expect("write");
    let t1 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t1.elapsed() < std::time::Duration::from_secs(10),
            "wait-sync did not return after the first success"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    std::fs::remove_dir_all(&d).expect("cleanup");
}

/// Kills the child if the test fails while it runs.
struct Killer(std::process::Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
