//! What sdwdate's files mean: the `/run/sdwdate` contract, shared with sdwdate (the writer)
//! and leaktest through the `tor-control` crate.

pub use tor_control::client::read_run_dir;
pub use tor_control::run_dir::{judge, Files, Sync, Verdict};
