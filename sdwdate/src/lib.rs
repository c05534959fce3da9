#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

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
