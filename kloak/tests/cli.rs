//! The binary's promises to scripts and units: usage errors exit 64 before anything is
//! grabbed, and every exit code is documented.

use std::path::Path;

#[test]
fn usage_errors_are_64_and_every_code_is_documented() {
    anon_cli::testing::assert_exit_codes(
        Path::new(env!("CARGO_BIN_EXE_kloak")),
        &[
            &["--bogus"],
            &["-d", "soon"],
            &["--hold-floor", "200-150"],
            &["--hold-floor", "150"],
            &["--hold-floor", "150-3600001"],
            &["-d", "3600001"],
            &["-d", "18446744073709552"],
            &["-k", "KEY_RIGHTSHIFT,KEY_NOPE"],
            &["--modifiers", "SCROLLLOCK"],
            &["simulate", "--seed", "x"],
        ],
        &[0, 1],
    );
}
