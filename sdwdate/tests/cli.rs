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
        assert_eq!(out.status.code(), Some(1), "{err}");
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
        assert_eq!(out.status.code(), Some(1), "{text}: {err}");
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
        assert_eq!(out.status.code(), Some(1), "check-config {text}: {err}");
        assert!(err.contains(needle), "check-config {text}: {err}");
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
        ],
        &[0, 1],
    );
}
