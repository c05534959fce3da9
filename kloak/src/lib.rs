#![doc = include_str!("../README.md")]

pub mod daemon;
pub mod devices;
pub mod schedule;
pub mod simulate;
pub mod twin;
