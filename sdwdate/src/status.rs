//! The files other tools read, byte-compatible with upstream sdwdate:
//! `/run/sdwdate/{status,msg,success,first_success,fail}` and the replay-protection file.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icon {
    Success,
    Busy,
    Error,
}

impl Icon {
    fn as_str(self) -> &'static str {
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
            c if (c as u32) < 0x20 || (c as u32) > 0x7f => {
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

#[derive(Debug, Clone)]
pub struct StatusDir {
    pub run_dir: PathBuf,
    pub state_dir: PathBuf,
}

fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

fn touch(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
}

fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl StatusDir {
    pub fn init(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.run_dir)
    }

    pub fn status(&self, icon: Icon, message: &str) -> io::Result<()> {
        write_atomic(
            &self.run_dir.join("status"),
            status_json(icon, message).as_bytes(),
        )?;
        write_atomic(&self.run_dir.join("msg"), message.as_bytes())
    }

    pub fn first_success_exists(&self) -> bool {
        self.run_dir.join("first_success").exists()
    }

    /// A round begins: an old `fail` no longer describes the present (as upstream).
    pub fn round_started(&self) -> io::Result<()> {
        remove(&self.run_dir.join("fail"))
    }

    pub fn succeeded(&self) -> io::Result<()> {
        touch(&self.run_dir.join("first_success"))?;
        touch(&self.run_dir.join("success"))?;
        remove(&self.run_dir.join("fail"))
    }

    /// Unlike upstream, a failure also removes `success`, so that readers never see both.
    pub fn failed(&self) -> io::Result<()> {
        touch(&self.run_dir.join("fail"))?;
        remove(&self.run_dir.join("success"))
    }

    pub fn replay_file(&self) -> PathBuf {
        self.state_dir.join("time-replay-protection-utc-unixtime")
    }

    /// Records the current (just corrected) time as the new minimum for later boots.
    pub fn write_replay_protection(&self, now: i64) -> io::Result<()> {
        std::fs::create_dir_all(&self.state_dir)?;
        write_atomic(&self.replay_file(), now.to_string().as_bytes())?;
        write_atomic(
            &self
                .state_dir
                .join("time-replay-protection-utc-humanreadable"),
            crate::bounds::utc(now).as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_byte_compatible_with_python() {
        // python3 -c 'import json,sys; json.dump({"icon":"busy","message":"a \"b\"\n\u00e9"}, sys.stdout)'
        assert_eq!(
            status_json(Icon::Busy, "a \"b\"\né"),
            r#"{"icon": "busy", "message": "a \"b\"\n\u00e9"}"#
        );
        assert_eq!(
            status_json(Icon::Success, "ok"),
            r#"{"icon": "success", "message": "ok"}"#
        );
    }

    #[test]
    fn files_follow_the_contract() {
        let d = std::env::temp_dir().join(format!("sdw-status-{}", std::process::id()));
        let s = StatusDir {
            run_dir: d.join("run"),
            state_dir: d.join("state"),
        };
        s.init().expect("init");
        s.status(Icon::Busy, "Running").expect("status");
        assert_eq!(
            std::fs::read_to_string(d.join("run/msg")).expect("msg"),
            "Running"
        );
        s.failed().expect("fail");
        assert!(
            d.join("run/fail").exists()
                && !d.join("run/success").exists()
                && !s.first_success_exists()
        );
        s.round_started().expect("start");
        assert!(!d.join("run/fail").exists());
        s.succeeded().expect("ok");
        assert!(d.join("run/success").exists() && s.first_success_exists());
        s.write_replay_protection(1_795_636_209).expect("replay");
        assert_eq!(
            std::fs::read_to_string(s.replay_file()).expect("replay"),
            "1795636209"
        );
        std::fs::remove_dir_all(&d).expect("cleanup");
    }
}
