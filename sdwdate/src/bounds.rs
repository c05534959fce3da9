//! Which remote times are plausible at all: the rules live in the shared contract crate, so
//! that timesync-check judges the clock by the same ones.

/// Tor's `YYYY-MM-DD HH:MM:SS` (UTC), parsed as the control port and consensus write it.
pub use tor_control::time::parse_time as parse_tor_time;
pub use tor_control::time::{utc, Bounds, OutOfBounds, EXPIRY};
