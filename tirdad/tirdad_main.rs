// SPDX-License-Identifier: GPL-2.0
//! tirdad: random TCP initial sequence numbers.
//!
//! The stock ISN is `siphash(4-tuple) + ktime_ns / 64`: for a fixed 4-tuple consecutive ISNs
//! reveal the host's clock and its skew. tirdad replaces the return value of the kernel's ISN
//! generator with numbers from the kernel's CSPRNG. This is the module for kernels with
//! CONFIG_RUST; the logic is in `isn.rs` (shared with the build for stock kernels), the hook
//! itself (a kretprobe) in `tirdad_shim.c`, because the 6.12 `kernel` crate has no kprobe
//! abstraction and its bindings do not include `struct kretprobe`.
//!
//! As in `samples/rust/rust_minimal.rs`, the module is a struct that owns its state: a
//! [`Probes`] registration, made in `init` and undone when the module is dropped.

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

/// The registered kretprobes on the kernel's ISN generators (their `struct kretprobe`s live in
/// the C shim). A value exists exactly while the probes are registered: [`Probes::register`]
/// is the only way to make one, and dropping it unregisters them.
struct Probes {
    /// Keeps the struct from being built anywhere but in [`Probes::register`].
    _registered: (),
}

impl Probes {
    fn register() -> Result<Self> {
        // SAFETY: the shim's probe structs are statics only this function and `drop` touch;
        // a `Probes` is made nowhere else and the module holds one, so they are registered
        // at most once at a time. On failure the shim has undone any partial registration.
        kernel::error::to_result(unsafe { tirdad_shim_register() })?;
        pr_info!("random TCP ISNs enabled\n");
        Ok(Probes { _registered: () })
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        // SAFETY: `self` exists only after a successful registration and is dropped once;
        // unregister_kretprobe waits for running handlers, so none outlives the module.
        unsafe { tirdad_shim_unregister() };
        pr_info!(
            "random TCP ISNs disabled after replacing {} ISNs\n",
            isn::tirdad_replaced()
        );
    }
}

struct Tirdad {
    _probes: Probes,
}

impl kernel::Module for Tirdad {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // Random ISNs from an unseeded RNG would be worse than the stock ones.
        // SAFETY: wait_for_random_bytes has no preconditions but a sleepable context, and
        // module init runs in process context.
        kernel::error::to_result(unsafe { kernel::bindings::wait_for_random_bytes() })?;
        Ok(Tirdad {
            _probes: Probes::register()?,
        })
    }
}
