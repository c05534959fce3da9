// SPDX-License-Identifier: GPL-2.0
//! tirdad: random TCP initial sequence numbers.
//!
//! The stock ISN is `siphash(4-tuple) + ktime_ns / 64`: for a fixed 4-tuple consecutive ISNs
//! reveal the host's clock and its skew. tirdad replaces the return value of the kernel's ISN
//! generator with numbers from the kernel's CSPRNG. This is the module for kernels with
//! CONFIG_RUST; the logic is in `isn.rs` (shared with the build for stock kernels), the hook
//! itself (a kretprobe) in `tirdad_shim.c`, because the 6.12 `kernel` crate has no kprobe
//! abstraction and its bindings do not include `struct kretprobe`.

use kernel::prelude::*;

module! {
    type: Tirdad,
    name: "tirdad",
    author: "anon-daemons",
    description: "Random TCP initial sequence numbers",
    license: "GPL",
}

extern "C" {
    fn tirdad_shim_register() -> core::ffi::c_int;
    fn tirdad_shim_unregister();
}

#[path = "isn.rs"]
mod isn;

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
        pr_info!("random TCP ISNs disabled after replacing {} ISNs\n", isn::tirdad_replaced());
    }
}
