// SPDX-License-Identifier: GPL-2.0
//! tirdad's logic, shared by both builds: the Rust-for-Linux module (`tirdad_main.rs`, kernels
//! with CONFIG_RUST) and the `#![no_std]` object linked beside a C shim (`tirdad_isn.rs`,
//! Debian's stock kernels). It uses nothing from `core` that is not inlined and calls only
//! `get_random_u32`, so the object links into any kernel of the supported range.
//!
//! Only the sequence number is replaced. The kernel's timestamp offset (the high half of
//! `secure_tcp_seq_and_ts_off()`'s result) is a keyed hash of the 4-tuple with no clock in
//! it, and `cookie_v4_check`/`cookie_v6_check` call the function a second time to recover the
//! offset used in a SYN cookie's SYN-ACK: a random offset there broke SYN-cookie connections
//! with timestamps on (wrong window scale and SACK, or a rejected ACK, and a jumping TSval).
//! SYN-cookie ISNs themselves are not made here (`cookie_init_sequence` has its own keyed
//! hash with a minute counter in its top 8 bits, which the peer's ACK must bring back): they
//! keep that counter, and tirdad does not change them.

use core::sync::atomic::{AtomicU64, Ordering};

extern "C" {
    /// The kernel's CSPRNG (drivers/char/random.c), exported to modules.
    fn get_random_u32() -> u32;
}

/// ISNs replaced since load; read through /sys/module/tirdad/parameters/replaced.
static REPLACED: AtomicU64 = AtomicU64::new(0);

fn random_u32() -> u32 {
    // SAFETY: get_random_u32 has no preconditions and may be called from any context; module
    // init waited for the CSPRNG to be seeded before the hook was installed.
    unsafe { get_random_u32() }
}

/// The combined value with a new sequence number: `seq` is the low half, the kernel's
/// `ts_off` (high half) is kept.
pub const fn with_seq(old: u64, seq: u32) -> u64 {
    (old & 0xffff_ffff_0000_0000) | seq as u64
}

/// New return value of `secure_tcp{,v6}_seq_and_ts_off()`: `union tcp_seq_and_ts_off`,
/// returned in one 64-bit register.
#[no_mangle]
pub extern "C" fn tirdad_new_seq_and_ts_off(old: u64) -> u64 {
    REPLACED.fetch_add(1, Ordering::Relaxed);
    with_seq(old, random_u32())
}

/// New return value of `secure_tcp{,v6}_seq()` (kernels before the combined function).
#[no_mangle]
pub extern "C" fn tirdad_new_seq() -> u32 {
    REPLACED.fetch_add(1, Ordering::Relaxed);
    random_u32()
}

#[no_mangle]
pub extern "C" fn tirdad_replaced() -> u64 {
    REPLACED.load(Ordering::Relaxed)
}
