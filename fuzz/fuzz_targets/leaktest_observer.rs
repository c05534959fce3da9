//! leaktest's observer: the captured frames it parses (`observer::parse`, Ethernet/IPv4/IPv6/
//! TCP/UDP/ICMP from the wire, i.e. from anyone on the uplink) and the control-channel
//! requests it answers (`observer::answer`, one JSON line each, from the workstation).
//!
//! Input: a first byte n; then n % 8 frames, each a 2-byte big-endian length and its bytes;
//! the rest is request lines. Properties: a parsed packet keeps at most 512 payload bytes;
//! `hex` gives len/2 bytes at most; every answer is a JSON object with `packets`, `ok` or
//! `error`, and a report lists only captured packets.
#![no_main]

use std::sync::Mutex;

use leaktest::observer::{self, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, mut rest)) = data.split_first() else {
        return;
    };
    let mut packets: Vec<Packet> = Vec::new();
    for _ in 0..n % 8 {
        if rest.len() < 2 {
            break;
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let frame = &rest[2..2 + len];
        rest = &rest[2 + len..];
        if let Some(p) = observer::parse(frame) {
            assert!(p.payload.len() <= 512);
            assert!(!p.describe(&p.payload).is_empty());
            packets.push(p);
        }
    }
    let captured = packets.len();
    let packets = Mutex::new(packets);
    let text = String::from_utf8_lossy(rest);
    for line in text.lines().take(16) {
        let a = observer::answer(line, "10.152.152.11", &packets);
        let obj = a.as_object().expect("answers are objects");
        if let Some(list) = obj.get("packets") {
            let list = list.as_array().expect("packets is a list");
            assert!(list.len() <= captured, "more packets reported than captured");
        } else {
            assert!(obj.contains_key("ok") || obj.contains_key("error"), "{a}");
        }
        // The line goes out as one line.
        assert!(!a.to_string().contains('\n'));
        if let Ok(req) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(m) = req["marker"].as_str() {
                assert!(observer::hex(m).len() <= m.len() / 2);
            }
        }
    }
});
