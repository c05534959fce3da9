#![doc = include_str!("../README.md")]

pub mod observer;
pub mod probes;
pub mod verdict;
