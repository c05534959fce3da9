#![doc = include_str!("../README.md")]
// One small module may use unsafe: adjtimex(2), which nix does not wrap (clock.rs).
#![deny(unsafe_code)]

pub mod bounds;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod http;
pub mod minimum;
pub mod pools;
pub mod round;
pub mod schedule;
pub mod slew;
pub mod status;
pub mod transport;
