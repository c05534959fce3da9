//! sdwdate's arti settings file (`ARTI_CONFIG=`, arti's own TOML on top of its defaults):
//! `transport::arti::config`, which refuses `[storage]` and unknown keys. Errors must be Err,
//! never a panic. The function reads a path, so the input is written to a private temp file.
//! Needs the `arti` feature (a very large build): `FUZZ_FEATURES=arti scripts/fuzz.sh`.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("anon-fuzz-arti-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let file = scratch().join("settings.toml");
    std::fs::write(&file, data).expect("write settings");
    let _ = sdwdate::transport::arti::config(scratch(), Some(&file));
});
