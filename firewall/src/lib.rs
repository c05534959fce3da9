#![doc = include_str!("../README.md")]
// `unsafe` lives only in `apply::set_down` (the last-resort SIOCSIFFLAGS ioctl).
#![deny(unsafe_code)]

pub mod apply;
pub mod config;
pub mod hostnet;
pub mod ruleset;
pub mod validate;

pub use apply::Host;
pub use config::{Config, Mode, Role};
pub use ruleset::{Facts, Ruleset};
pub use validate::{Markers, ValidationError};
