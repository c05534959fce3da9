//! The binary's promises to scripts and units: usage errors exit 64 (nothing is loaded, no
//! lockdown either: a typo is not a failure of the firewall), every exit code is documented.

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
