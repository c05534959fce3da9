// SPDX-License-Identifier: GPL-2.0
//! The crate root of tirdad's logic for kernels without CONFIG_RUST (Debian's stock kernels):
//! compiled by rustc alone into one object with the kernel's code generation flags (see
//! Kbuild) and linked into the module beside `tirdad_stock.c` and `tirdad_shim.c`.
#![no_std]

#[path = "isn.rs"]
mod isn;
