//! The binary's promises to scripts and units: usage errors exit 64 and every exit code is
//! documented. Run by hand, a usage error changes nothing (no rules loaded, no lockdown); under
//! anon-firewall.service it is still a failure of the unit, so its ExecStopPost= and
//! OnFailure= lock the host down, as for any other error (so no SuccessExitStatus=64 there).

use std::path::Path;

#[test]
fn usage_errors_are_64_and_every_code_is_documented() {
    anon_cli::testing::assert_exit_codes(
        Path::new(env!("CARGO_BIN_EXE_anon-firewall")),
        &[
            &["--bogus", "status"],
            &[],
            &["--config-dir"],
            &["apply", "--role", "router"],
            &["dry-run", "--format", "yaml"],
            &["unload"],
            &["watch", "--timeout", "soon"],
            &["--gateway-marker", "/nonexistent", "status"],
        ],
        &[0, 1, 3],
    );
}
