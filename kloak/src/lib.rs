#![doc = include_str!("../README.md")]
// `unsafe` lives only in `twin` (uinput's ioctls and the LED reader's AsyncFd).
#![deny(unsafe_code)]

pub mod daemon;
pub mod devices;
pub mod schedule;
pub mod simulate;
#[allow(unsafe_code)]
pub mod twin;
