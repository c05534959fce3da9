//! What a Tor control port (or whoever bound it first) answers, and the other text the
//! tor-control crate reads: the first byte picks
//! 0: the blocking shell `client::converse` on a stream that sends the rest (ReplyReader with
//!    its line bound, the Handshake, the cookie read), policy from the second byte;
//! 1: `proto::run_transcript_with` on the rest as CRLF lines (asking for tor's SOCKS
//!    listeners or not);
//! 2: ReplyReader alone, fed line by line: never more than MAX_REPLY_LINES lines a reply;
//! 3: time parsing (`parse_time`, `parse_minimum`, `window_from_consensus`): a parsed time
//!    prints (`utc`) as a string that parses back to it; a minimum is 10 digits;
//! 4: the /run/sdwdate contract timesync-check reads (`run_dir::judge`, `Files::icon`) on
//!    arbitrary file contents (never "synced" without a running sdwdate), and `status_json`
//!    on an arbitrary message: valid JSON that gives the icon and the message back.
#![no_main]

use std::io::{self, Read, Write};
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tor_control::proto::{AuthPolicy, ReplyReader, MAX_REPLY_LINES};
use tor_control::run_dir::{self, Files, Icon};
use tor_control::time;

struct Peer<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Peer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.data.len().min(buf.len()).min(self.chunk);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

impl Write for Peer<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn policy(b: u8) -> AuthPolicy {
    AuthPolicy {
        cookie_file: (b & 1 != 0).then(|| "/run/tor/control.authcookie".into()),
        cookie_configured: b & 2 != 0,
        allow_plain_cookie: b & 4 != 0,
        allow_null: b & 8 != 0,
    }
}

fn cookie_of(b: u8) -> Vec<u8> {
    // Mostly the right length; sometimes not.
    vec![7u8; if b & 0x30 == 0x30 { usize::from(b) % 40 } else { 32 }]
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => {
            let Some((&p, rest)) = rest.split_first() else {
                return;
            };
            let cookie = cookie_of(p);
            let read = |_: &Path| -> io::Result<Vec<u8>> { Ok(cookie.clone()) };
            let peer = Peer {
                data: rest,
                chunk: usize::from(p >> 6) * 64 + 1,
            };
            if let Ok((a, u)) =
                tor_control::client::converse(peer, "fuzz", policy(p), [1; 32], &read)
            {
                assert!(a >= time::days_from_civil(1, 1, 1) * 86_400 && u >= time::days_from_civil(1, 1, 1) * 86_400);
                assert!(a < u && (time::MIN_WINDOW_S..=time::MAX_WINDOW_S).contains(&(u - a)), "{a} {u}");
            }
        }
        1 => {
            let Some((&p, rest)) = rest.split_first() else {
                return;
            };
            let text = String::from_utf8_lossy(rest);
            let cookie = cookie_of(p);
            let socks = p & 0x40 != 0;
            let (sent, result) = tor_control::proto::run_transcript_with(
                policy(p),
                [1; 32],
                &text,
                &|_: &Path| Some(cookie.clone()),
                socks,
            );
            // Listeners only when asked for, each one quoted string without quotes inside.
            if let Ok((_, listeners)) = &result {
                assert_eq!(listeners.is_some(), socks);
                for l in listeners.iter().flatten() {
                    assert!(!l.contains('"'), "{l:?}");
                    let _ = tor_control::proto::is_tor_socks(
                        std::slice::from_ref(l),
                        "127.0.0.1:9050".parse().expect("addr"),
                    );
                }
            }
            // One command per reply at most, plus the first.
            assert!(sent.len() <= text.split("\r\n").count() + 1);
            for s in &sent {
                assert!(s.ends_with("\r\n") && !s[..s.len() - 2].contains(['\r', '\n']), "{s:?}");
            }
        }
        2 => {
            let text = String::from_utf8_lossy(rest);
            let mut r = ReplyReader::default();
            for line in text.split('\n') {
                match r.line(line) {
                    Ok(Some(reply)) => assert!(reply.lines.len() <= MAX_REPLY_LINES),
                    Ok(None) => {}
                    Err(_) => r = ReplyReader::default(),
                }
            }
        }
        3 => {
            let text = String::from_utf8_lossy(rest);
            for line in text.lines().chain(std::iter::once(&*text)) {
                if let Some(t) = time::parse_time(line) {
                    // Year 10000 (9999-12-31 24:00 by leap second) cannot print back.
                    if t < time::days_from_civil(10_000, 1, 1) * 86_400 {
                        assert_eq!(time::parse_time(&time::utc(t)), Some(t), "{line:?}");
                    }
                }
                if let Some(m) = time::parse_minimum(line) {
                    assert!((1_000_000_000..10_000_000_000).contains(&m));
                }
            }
            // Only a window Tor could have made comes out.
            if let Some((a, u)) = time::window_from_consensus(&text) {
                assert!(a < u && (time::MIN_WINDOW_S..=time::MAX_WINDOW_S).contains(&(u - a)), "{a} {u}");
            }
        }
        _ => {
            let Some((&flags, rest)) = rest.split_first() else {
                return;
            };
            let text = String::from_utf8_lossy(rest);
            let (status, msg) = text.split_once('\0').unwrap_or((&text, ""));
            let files = Files {
                status: (flags & 1 != 0).then(|| status.to_owned()),
                msg: (flags & 2 != 0).then(|| msg.to_owned()),
                success: flags & 4 != 0,
                first_success: flags & 8 != 0,
                fail: flags & 16 != 0,
                running: flags & 32 != 0,
            };
            let v = run_dir::judge(&files);
            assert!(v.state.code() <= 4 && !v.line.is_empty());
            // A stopped or crashed sdwdate is never "synced", whatever files it left.
            assert!(files.running || v.state != run_dir::Sync::Synced, "{files:?}");
            let _ = files.icon();
            for icon in [Icon::Success, Icon::Busy, Icon::Error] {
                let json = run_dir::status_json(icon, &text);
                assert!(json.is_ascii(), "{json}");
                let parsed: serde_json::Value =
                    serde_json::from_str(&json).expect("status_json is JSON");
                assert_eq!(parsed["message"].as_str(), Some(&*text));
                let f = Files {
                    status: Some(json),
                    ..Files::default()
                };
                assert_eq!(f.icon().as_deref(), Some(icon.as_str()));
            }
        }
    }
});
