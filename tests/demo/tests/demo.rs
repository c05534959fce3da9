//! The README's first command must keep working: run the demo and require every check to pass.

use std::path::PathBuf;

#[test]
fn the_demo_passes_every_check() {
    if !anon_netns::require_root("the_demo_passes_every_check")
        || !anon_tornet::require_tor("the_demo_passes_every_check")
    {
        return;
    }
    let demo = PathBuf::from(env!("CARGO_BIN_EXE_whonix-in-a-box"));
    // `cargo test --workspace` builds the other packages' binaries next to this one.
    let dir = demo.parent().expect("target dir").to_path_buf();
    let (firewall, sdwdate, leaktest) = (
        dir.join("anon-firewall"),
        dir.join("sdwdate"),
        dir.join("leaktest"),
    );
    for b in [&firewall, &sdwdate, &leaktest] {
        assert!(
            b.exists(),
            "{} is missing: run `cargo test --workspace` (or build it first)",
            b.display()
        );
    }
    let out = std::process::Command::new(&demo)
        .arg("--firewall")
        .arg(&firewall)
        .arg("--sdwdate")
        .arg(&sdwdate)
        .arg("--leaktest")
        .arg(&leaktest)
        .output()
        .expect("run the demo");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("All checks passed.") && !report.contains("[FAIL]"),
        "{report}"
    );
    assert_eq!(report.matches("[PASS]").count(), 14, "{report}");
}
