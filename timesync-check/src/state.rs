//! The pure core: what sdwdate's files mean.

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    Synced = 0,
    Pending = 1,
    Failed = 2,
    NotRunning = 3,
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
        }
    }
}

/// A snapshot of /run/sdwdate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Files {
    pub status: Option<String>,
    pub msg: Option<String>,
    pub success: bool,
    pub first_success: bool,
    pub fail: bool,
}

impl Files {
    pub fn read(dir: &Path) -> Files {
        let text = |n: &str| std::fs::read_to_string(dir.join(n)).ok();
        Files {
            status: text("status"),
            msg: text("msg").map(|m| m.trim().to_owned()),
            success: dir.join("success").exists(),
            first_success: dir.join("first_success").exists(),
            fail: dir.join("fail").exists(),
        }
    }

    /// sdwdate's icon from `status` (`{"icon": "...", "message": "..."}`).
    pub fn icon(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(self.status.as_deref()?).ok()?;
        v.get("icon")?.as_str().map(str::to_owned)
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
    let (state, line) = if f.status.is_none() {
        (
            Sync::NotRunning,
            "sdwdate is not running (no /run/sdwdate/status)".to_owned(),
        )
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

    fn files(success: bool, first: bool, fail: bool) -> Files {
        Files {
            status: Some(r#"{"icon": "busy", "message": "Running"}"#.into()),
            msg: Some("Running".into()),
            success,
            first_success: first,
            fail,
        }
    }

    #[test]
    fn every_state() {
        assert_eq!(judge(&Files::default()).state, Sync::NotRunning);
        assert_eq!(judge(&files(false, false, false)).state, Sync::Pending);
        assert_eq!(judge(&files(true, true, false)).state, Sync::Synced);
        assert_eq!(judge(&files(false, true, false)).state, Sync::Synced);
        assert_eq!(judge(&files(false, false, true)).state, Sync::Failed);
        let v = judge(&files(false, true, true));
        assert_eq!(v.state, Sync::Failed);
        assert!(v.line.contains("earlier this boot"));
        assert_eq!(files(false, false, false).icon().as_deref(), Some("busy"));
        assert_eq!(
            [Sync::Synced, Sync::Pending, Sync::Failed, Sync::NotRunning].map(Sync::code),
            [0, 1, 2, 3]
        );
    }
}
