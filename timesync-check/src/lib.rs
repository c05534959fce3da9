#![doc = include_str!("../README.md")]

pub mod state;
pub mod tor;
