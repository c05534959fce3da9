//! Finding the input devices kloak takes.

use std::io;
use std::path::{Path, PathBuf};

use evdev::{Device, KeyCode, RelativeAxisCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Keyboard,
    Pointer,
}

/// What a device is, if kloak should take it.
pub fn classify(dev: &Device) -> Option<Kind> {
    let keys = dev.supported_keys();
    let has = |k: KeyCode| keys.is_some_and(|s| s.contains(k));
    if has(KeyCode::KEY_A) && has(KeyCode::KEY_Z) && has(KeyCode::KEY_SPACE) {
        return Some(Kind::Keyboard);
    }
    // A numeric keypad (no letter keys) types PINs and numbers: covered too.
    let keypad = [
        KeyCode::KEY_KP0,
        KeyCode::KEY_KP1,
        KeyCode::KEY_KP5,
        KeyCode::KEY_KP9,
        KeyCode::KEY_KPENTER,
    ];
    if keypad.into_iter().all(has) {
        return Some(Kind::Keyboard);
    }
    let rel = dev.supported_relative_axes();
    let moves = rel.is_some_and(|r| {
        r.contains(RelativeAxisCode::REL_X) && r.contains(RelativeAxisCode::REL_Y)
    });
    let touches = dev.supported_absolute_axes().is_some()
        && (has(KeyCode::BTN_TOUCH) || has(KeyCode::BTN_LEFT));
    if (moves && has(KeyCode::BTN_LEFT)) || touches {
        return Some(Kind::Pointer);
    }
    None
}

/// `/dev/input/event*`, sorted. An unreadable directory is an error, not "no devices":
/// kloak must not run protecting nothing without saying so.
pub fn event_nodes(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .collect();
    v.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("event"))
    });
    v.sort();
    Ok(v)
}

/// A name in a key combination that is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a key name (e.g. KEY_RIGHTSHIFT)")]
pub struct UnknownKey(pub String);

/// Parses an escape combination like `KEY_RIGHTSHIFT,KEY_ESC`.
pub fn parse_combo(s: &str) -> Result<Vec<u16>, UnknownKey> {
    s.split([',', '+'])
        .map(|k| {
            let k = k.trim();
            k.parse::<KeyCode>()
                .map(|c| c.code())
                .map_err(|_| UnknownKey(k.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combos_are_key_names() {
        assert_eq!(
            parse_combo("KEY_RIGHTSHIFT,KEY_ESC"),
            Ok(vec![
                KeyCode::KEY_RIGHTSHIFT.code(),
                KeyCode::KEY_ESC.code()
            ])
        );
        assert_eq!(
            parse_combo("KEY_LEFTCTRL + KEY_LEFTALT"),
            Ok(vec![
                KeyCode::KEY_LEFTCTRL.code(),
                KeyCode::KEY_LEFTALT.code()
            ])
        );
        assert_eq!(
            parse_combo("KEY_RIGHTSHIFT,ESC"),
            Err(UnknownKey("ESC".into()))
        );
        assert_eq!(parse_combo(""), Err(UnknownKey(String::new())));
    }
}
