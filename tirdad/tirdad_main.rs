// SPDX-License-Identifier: GPL-2.0
//! tirdad: random TCP initial sequence numbers.
//!
//! The stock ISN is `siphash(4-tuple) + ktime_ns / 64`: for a fixed 4-tuple consecutive ISNs
//! reveal the host's clock and its skew. tirdad replaces the return value of the kernel's ISN
//! generator with numbers from the kernel's CSPRNG. The hook itself (a kretprobe) lives in
//! `tirdad_shim.c`, because the 6.12 `kernel` crate has no kprobe abstraction and its bindings
//! do not include `struct kretprobe`; everything else is here.

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::prelude::*;

module! {
    type: Tirdad,
    name: "tirdad",
    author: "anon-daemons",
    description: "Random TCP initial sequence numbers and timestamp offsets",
    license: "GPL",
}

extern "C" {
    fn tirdad_shim_register() -> core::ffi::c_int;
    fn tirdad_shim_unregister();
}

/// ISNs replaced since load; read through /sys/module/tirdad/parameters/replaced.
static REPLACED: AtomicU64 = AtomicU64::new(0);

fn random_u32() -> u32 {
    // SAFETY: get_random_u32 has no preconditions and may be called from any context; the
    // CSPRNG was seeded before the hook was installed (see `init`).
    unsafe { kernel::bindings::get_random_u32() }
}

/// New return value of `secure_tcp{,v6}_seq_and_ts_off()`: `union tcp_seq_and_ts_off`
/// returned in one 64-bit register, `seq` in the low half, `ts_off` in the high half. The
/// timestamp offset is randomized too when the kernel computed one (timestamps on); when it
/// is 0 (timestamps off) it stays 0.
#[no_mangle]
pub extern "C" fn tirdad_new_seq_and_ts_off(old: u64) -> u64 {
    REPLACED.fetch_add(1, Ordering::Relaxed);
    let ts_off = if old >> 32 != 0 { u64::from(random_u32()) } else { 0 };
    (ts_off << 32) | u64::from(random_u32())
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

struct Tirdad;

impl kernel::Module for Tirdad {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // Random ISNs from an unseeded RNG would be worse than the stock ones.
        // SAFETY: may sleep; module init runs in process context.
        kernel::error::to_result(unsafe { kernel::bindings::wait_for_random_bytes() })?;
        // SAFETY: called once; undone in `drop`.
        kernel::error::to_result(unsafe { tirdad_shim_register() })?;
        pr_info!("random TCP ISNs enabled\n");
        Ok(Tirdad)
    }
}

impl Drop for Tirdad {
    fn drop(&mut self) {
        // SAFETY: registered in `init`; unregistering waits for running handlers.
        unsafe { tirdad_shim_unregister() };
        pr_info!("random TCP ISNs disabled after replacing {} ISNs\n", REPLACED.load(Ordering::Relaxed));
    }
}
