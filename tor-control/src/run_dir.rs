//! The `/run/sdwdate` contract between sdwdate (the writer) and its readers: timesync-check,
//! leaktest, anon-firewall's timesync unit and Whonix's sdwdate-gui and systemcheck. Names and
//! formats are upstream sdwdate's, byte for byte.

/// `{"icon": "...", "message": "..."}`, rewritten in place (readers watch the file itself).
pub const STATUS: &str = "status";
/// The message alone.
pub const MSG: &str = "msg";
/// Exists after a successful round, removed by a failed one.
pub const SUCCESS: &str = "success";
/// Exists after the first success since boot: from then on the clock is slewed, not stepped.
pub const FIRST_SUCCESS: &str = "first_success";
/// Exists after a failed round, removed when the next round starts.
pub const FAIL: &str = "fail";
/// The running daemon's pid (not upstream's): written at start, removed when it stops
/// (by itself on a signal, by the unit's stop hook after any exit, a crash included), so
/// that a stopped sdwdate is not taken for one that keeps the clock right.
pub const PID: &str = "pid";

/// sdwdate's icon in `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icon {
    Success,
    Busy,
    Error,
}

impl Icon {
    pub fn as_str(self) -> &'static str {
        match self {
            Icon::Success => "success",
            Icon::Busy => "busy",
            Icon::Error => "error",
        }
    }
}

/// Upstream's `json.dump({"icon": ..., "message": ...})`: same key order, same separators,
/// non-ASCII escaped as Python does by default.
pub fn status_json(icon: Icon, message: &str) -> String {
    let mut m = String::with_capacity(message.len() + 2);
    m.push('"');
    for c in message.chars() {
        match c {
            '"' => m.push_str("\\\""),
            '\\' => m.push_str("\\\\"),
            '\n' => m.push_str("\\n"),
            '\r' => m.push_str("\\r"),
            '\t' => m.push_str("\\t"),
            '\u{8}' => m.push_str("\\b"),
            '\u{c}' => m.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    m.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => m.push(c),
        }
    }
    m.push('"');
    format!("{{\"icon\": \"{}\", \"message\": {m}}}", icon.as_str())
}

/// A snapshot of the directory, as a reader sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Files {
    pub status: Option<String>,
    pub msg: Option<String>,
    pub success: bool,
    pub first_success: bool,
    pub fail: bool,
    /// `pid` names a live process (another user's counts: readers need not see it).
    pub running: bool,
}

impl Files {
    /// The icon in `status`.
    pub fn icon(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(self.status.as_deref()?).ok()?;
        v.get("icon")?.as_str().map(str::to_owned)
    }
}

/// What the files say about the clock. The numbers are timesync-check's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    Synced = 0,
    Pending = 1,
    Failed = 2,
    NotRunning = 3,
    /// sdwdate set the clock earlier, but it is not running now: nothing keeps it right.
    Stopped = 4,
}

impl Sync {
    pub fn code(self) -> u8 {
        self as u8
    }
    pub fn name(self) -> &'static str {
        match self {
            Sync::Synced => "synced",
            Sync::Pending => "pending",
            Sync::Failed => "failed",
            Sync::NotRunning => "not-running",
            Sync::Stopped => "stopped",
        }
    }
}

/// The verdict: state and a line for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub state: Sync,
    pub line: String,
}

pub fn judge(f: &Files) -> Verdict {
    let msg = f
        .msg
        .as_deref()
        .filter(|m| !m.is_empty())
        .unwrap_or("no message");
    // tmpfiles creates an empty `status` at boot (for sdwdate-gui's watch): not running yet.
    let (state, line) = if f.status.as_deref().is_none_or(|s| s.trim().is_empty()) {
        (
            Sync::NotRunning,
            "sdwdate is not running (no /run/sdwdate/status)".to_owned(),
        )
    } else if !f.running {
        if f.success || f.first_success {
            (
                Sync::Stopped,
                format!("the clock was synced by sdwdate, but sdwdate is not running: {msg}"),
            )
        } else {
            (Sync::NotRunning, format!("sdwdate is not running: {msg}"))
        }
    } else if f.success {
        (Sync::Synced, format!("clock synced by sdwdate: {msg}"))
    } else if f.fail {
        let earlier = if f.first_success {
            " (it did succeed earlier this boot)"
        } else {
            ""
        };
        (Sync::Failed, format!("sdwdate failed{earlier}: {msg}"))
    } else if f.first_success {
        (
            Sync::Synced,
            format!("clock synced by sdwdate earlier this boot; now: {msg}"),
        )
    } else {
        (Sync::Pending, format!("not synced yet; sdwdate: {msg}"))
    };
    Verdict { state, line }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_byte_compatible_with_python() {
        // python3 -c 'import json,sys; json.dump({"icon":"busy","message":"a \"b\"\n\u00e9\x7f"}, sys.stdout)'
        assert_eq!(
            status_json(Icon::Busy, "a \"b\"\né\u{7f}"),
            r#"{"icon": "busy", "message": "a \"b\"\n\u00e9\u007f"}"#
        );
        assert_eq!(
            status_json(Icon::Success, "ok"),
            r#"{"icon": "success", "message": "ok"}"#
        );
        let f = Files {
            status: Some(status_json(Icon::Error, "x")),
            ..Files::default()
        };
        assert_eq!(f.icon().as_deref(), Some("error"));
    }

    fn files(success: bool, first: bool, fail: bool) -> Files {
        Files {
            status: Some(status_json(Icon::Busy, "Running")),
            msg: Some("Running".into()),
            success,
            first_success: first,
            fail,
            running: true,
        }
    }

    #[test]
    fn every_state() {
        assert_eq!(judge(&Files::default()).state, Sync::NotRunning);
        let empty = Files {
            status: Some(String::new()),
            ..Files::default()
        };
        assert_eq!(
            judge(&empty).state,
            Sync::NotRunning,
            "tmpfiles' empty file"
        );
        assert_eq!(judge(&files(false, false, false)).state, Sync::Pending);
        assert_eq!(judge(&files(true, true, false)).state, Sync::Synced);
        assert_eq!(judge(&files(false, true, false)).state, Sync::Synced);
        assert_eq!(judge(&files(false, false, true)).state, Sync::Failed);
        let v = judge(&files(false, true, true));
        assert_eq!(v.state, Sync::Failed);
        assert!(v.line.contains("earlier this boot"));
        // Stopped or crashed: never "synced", whatever files it left.
        let gone = |success, first| Files {
            running: false,
            ..files(success, first, false)
        };
        for (success, first) in [(true, true), (false, true)] {
            let v = judge(&gone(success, first));
            assert_eq!(v.state, Sync::Stopped, "{v:?}");
            assert!(v.line.contains("not running"), "{v:?}");
        }
        assert_eq!(judge(&gone(false, false)).state, Sync::NotRunning);
        assert_eq!(
            [
                Sync::Synced,
                Sync::Pending,
                Sync::Failed,
                Sync::NotRunning,
                Sync::Stopped
            ]
            .map(Sync::code),
            [0, 1, 2, 3, 4]
        );
    }
}
