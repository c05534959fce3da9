//! The probes' marker: a random number the observer looks for in what leaves the host, so
//! that a packet of this run is told from anything else on the wire.

use std::num::NonZeroU64;

/// A fresh marker from the operating system's CSPRNG (through `rand`'s thread generator,
/// seeded from getrandom), as 16 lowercase hex digits.
pub fn marker() -> String {
    marker_from(rand::random::<u64>)
}

/// The marker from `draw`: drawn again while it gives zero, so that a marker is never
/// `0000000000000000` (what a failed or missing random source would give).
pub fn marker_from(mut draw: impl FnMut() -> u64) -> String {
    let n = loop {
        if let Some(n) = NonZeroU64::new(draw()) {
            break n;
        }
    };
    format!("{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_hex_digits_never_zero() {
        let mut draws = [0u64, 0, 0x2a].into_iter();
        assert_eq!(
            marker_from(|| draws.next().unwrap_or(7)),
            "000000000000002a"
        );
        assert_eq!(marker_from(|| u64::MAX), "ffffffffffffffff");
        let m = marker();
        assert_eq!(m.len(), 16, "{m}");
        assert!(
            m.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{m}"
        );
        assert_ne!(m, "0".repeat(16));
        // Two markers of one run differ (a collision has probability 2^-64).
        assert_ne!(marker(), marker());
        // The observer reads it back as the 8 bytes the probes send.
        assert_eq!(crate::observer::hex(&m).len(), 8);
    }
}
