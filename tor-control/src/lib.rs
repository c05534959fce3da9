//! What sdwdate shares with the programs around it, written once: the Tor control protocol
//! that yields the consensus window ([`proto`], sans I/O), the time rules an answer or a clock
//! is judged by ([`time`]), and the `/run/sdwdate` contract ([`run_dir`]). The daemons stay
//! separate programs and packages; sdwdate, timesync-check and leaktest use this crate.
//!
//! The core has no I/O. The `client` feature (default) adds the thin blocking shell that
//! connects to tor and reads files ([`client`]).

#![forbid(unsafe_code)]

pub mod proto;
pub mod run_dir;
pub mod time;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod whonix;

#[cfg(feature = "client")]
pub use client::{consensus_window, ControlAddr, ControlError};
pub use time::parse_time;
