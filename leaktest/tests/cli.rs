//! The binary's promises to scripts: a usage error is 64, never 2 ("could not test") or 1
//! ("a leak"), and every exit code is documented.

use std::path::Path;

#[test]
fn usage_errors_are_64_and_every_code_is_documented() {
    anon_cli::testing::assert_exit_codes(
        Path::new(env!("CARGO_BIN_EXE_leaktest")),
        &[
            &["--bogus"],
            &["--role", "router"],
            &["--observer", "gateway"],
            &["--only", "dns"],
            &["--me", "10.0.0.1,nope"],
            &["observer", "--capture", "eth0"],
        ],
        &[0, 1, 2],
    );
}
