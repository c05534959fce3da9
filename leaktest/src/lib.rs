#![doc = include_str!("../README.md")]
// The one `unsafe` (binding the observer's packet socket) allows itself where it is.
#![deny(unsafe_code)]

pub mod marker;
pub mod observer;
pub mod probes;
pub mod verdict;
