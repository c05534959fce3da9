//! Finding input devices and making the virtual device that stands in for each.

use std::io;
use std::path::{Path, PathBuf};

use evdev::uinput::VirtualDevice;
use evdev::{AbsInfo, Device, KeyCode, RelativeAxisCode, UinputAbsSetup};

/// Virtual devices are named with this prefix, so that kloak never grabs its own output.
pub const NAME_PREFIX: &str = "kloak: ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Keyboard,
    Pointer,
}

/// The kernel keeps 80 bytes of a uinput device's name, NUL included, and evdev 0.13's builder
/// asserts `len + 1 < 80` (so at most 78 bytes): the twin's name is cut at a character
/// boundary to fit.
pub const MAX_NAME: usize = 78;

/// The twin's name: the prefix and as much of the real device's name as fits.
pub fn twin_name(real: &str) -> String {
    let mut name = format!("{NAME_PREFIX}{real}");
    let mut cut = MAX_NAME.min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name.truncate(cut);
    name
}

/// What a device is, if kloak should take it.
pub fn classify(dev: &Device) -> Option<Kind> {
    if dev.name().is_some_and(|n| n.starts_with(NAME_PREFIX)) {
        return None;
    }
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

/// A uinput device with the same capabilities (keys, relative and absolute axes with their
/// ranges, properties, switches, misc) and identity as `dev`, so layouts and pointer
/// settings keep working. The kernel's own autorepeat is not enabled on it: the real
/// device's repeat events are forwarded (delayed) instead, so repeats are not doubled.
pub fn make_virtual(dev: &Device) -> io::Result<VirtualDevice> {
    let name = twin_name(dev.name().unwrap_or("input device"));
    let mut b = VirtualDevice::builder()?
        .name(&name)
        .input_id(dev.input_id());
    if let Some(keys) = dev.supported_keys() {
        b = b.with_keys(keys)?;
    }
    if let Some(rel) = dev.supported_relative_axes() {
        b = b.with_relative_axes(rel)?;
    }
    if let Some(abs) = dev.supported_absolute_axes() {
        let state = dev.get_abs_state()?;
        for axis in abs.iter() {
            let s = state[usize::from(axis.0)];
            let info = AbsInfo::new(s.value, s.minimum, s.maximum, s.fuzz, s.flat, s.resolution);
            b = b.with_absolute_axis(&UinputAbsSetup::new(axis, info))?;
        }
    }
    b = b.with_properties(dev.properties())?;
    if let Some(sw) = dev.supported_switches() {
        b = b.with_switches(sw)?;
    }
    if let Some(msc) = dev.misc_properties() {
        b = b.with_msc(msc)?;
    }
    b.build()
}

/// Parses an escape combination like `KEY_RIGHTSHIFT,KEY_ESC`.
pub fn parse_combo(s: &str) -> Result<Vec<u16>, String> {
    s.split([',', '+'])
        .map(|k| {
            let k = k.trim();
            k.parse::<KeyCode>()
                .map(|c| c.code())
                .map_err(|_| format!("`{k}` is not a key name (e.g. KEY_RIGHTSHIFT)"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        assert_eq!(twin_name("AT keyboard"), "kloak: AT keyboard");
        for n in [72, 73, 100, 200] {
            let long = "é".repeat(n);
            let t = twin_name(&long);
            assert!(
                t.len() <= MAX_NAME && t.starts_with(NAME_PREFIX),
                "{n}: {}",
                t.len()
            );
            assert!(long.starts_with(&t[NAME_PREFIX.len()..]));
            let ascii = "k".repeat(n);
            assert_eq!(twin_name(&ascii).len(), MAX_NAME.min(NAME_PREFIX.len() + n));
        }
    }
}
