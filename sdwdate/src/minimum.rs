//! The minimum time: the clock is never set before it.

use std::path::Path;

use log::warn;

/// The build date, compiled in (SOURCE_DATE_EPOCH for reproducible builds).
pub const BUILD_UNIXTIME: i64 = match i64::from_str_radix(env!("SDWDATE_BUILD_UNIXTIME"), 10) {
    Ok(t) => t,
    Err(_) => 0,
};

/// max(build date, every readable file's 10-digit unix time). A file with other contents is
/// ignored with a warning: it cannot be fixed from here, and refusing to run would leave the
/// clock wrong.
pub fn minimum_unixtime(files: &[&Path]) -> i64 {
    let (min, bad) = tor_control::client::minimum_from_files(BUILD_UNIXTIME, files);
    for f in bad {
        warn!("{}: ignoring, not a 10-digit unix time", f.display());
    }
    min
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maximum_of_valid_files() {
        let d = std::env::temp_dir().join(format!("sdw-min-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("mkdir");
        let (a, b, c) = (d.join("a"), d.join("b"), d.join("c"));
        std::fs::write(&a, "1900000000\n").expect("w");
        std::fs::write(&b, "junk").expect("w");
        std::fs::write(&c, "99").expect("w");
        assert_eq!(
            minimum_unixtime(&[&a, &b, &c, &d.join("missing")]),
            1_900_000_000.max(BUILD_UNIXTIME)
        );
        assert_eq!(minimum_unixtime(&[]), BUILD_UNIXTIME);
        const { assert!(BUILD_UNIXTIME > 1_700_000_000, "build date compiled in") };
        std::fs::remove_dir_all(&d).expect("cleanup");
    }
}
