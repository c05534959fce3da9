//! The virtual device ("twin") that stands in for a grabbed device, set up with uinput's own
//! ioctls.
//!
//! Why not evdev's `VirtualDeviceBuilder`: it keeps its file descriptor private and has no
//! way to declare LEDs (UI_SET_LEDBIT), so a keyboard's Caps/Num/Scroll Lock LEDs would stop
//! working; its UI_SET_PHYS request is encoded with the size of a `char` instead of a pointer,
//! which the kernel rejects; and it writes a frame in two writes. The twin here copies every
//! capability and the real device's identity (name, bus, vendor, product, version), so layouts,
//! hwdb entries and per-device desktop settings keyed on them apply to it; only its `phys`
//! carries kloak's mark, which is how kloak knows its own twins.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use evdev::Device;
use nix::libc;

/// The prefix of a twin's `phys`; the rest is the real device's phys.
pub const PHYS_MARK: &str = "kloak/";

/// The kernel keeps 80 bytes of a uinput device's name, NUL included.
pub const MAX_NAME: usize = 79;

const EV_KEY: u16 = 0x01;
const EV_REL: u16 = 0x02;
const EV_ABS: u16 = 0x03;
const EV_MSC: u16 = 0x04;
const EV_SW: u16 = 0x05;
pub const EV_LED: u16 = 0x11;

mod ioctl {
    use nix::libc;
    nix::ioctl_none!(dev_create, b'U', 1);
    nix::ioctl_none!(dev_destroy, b'U', 2);
    nix::ioctl_write_ptr!(dev_setup, b'U', 3, libc::uinput_setup);
    nix::ioctl_write_ptr!(abs_setup, b'U', 4, libc::uinput_abs_setup);
    nix::ioctl_write_int!(set_evbit, b'U', 100);
    nix::ioctl_write_int!(set_keybit, b'U', 101);
    nix::ioctl_write_int!(set_relbit, b'U', 102);
    nix::ioctl_write_int!(set_absbit, b'U', 103);
    nix::ioctl_write_int!(set_mscbit, b'U', 104);
    nix::ioctl_write_int!(set_ledbit, b'U', 105);
    nix::ioctl_write_int!(set_swbit, b'U', 109);
    nix::ioctl_write_int!(set_propbit, b'U', 110);
    // UI_SET_PHYS is _IOW('U', 108, char*): the size is a pointer's.
    nix::ioctl_write_ptr_bad!(
        set_phys,
        nix::request_code_write!(b'U', 108, std::mem::size_of::<*const libc::c_char>()),
        libc::c_char
    );
    nix::ioctl_read_buf!(get_sysname, b'U', 44, u8);
    // EVIOCSCLOCKID is _IOW('E', 0xa0, int): the kernel reads the int through the pointer.
    nix::ioctl_write_ptr!(set_clock_id, b'E', 0xa0, libc::c_int);
}

/// Stamps the events read through `fd` (an evdev node) with CLOCK_MONOTONIC instead of the
/// wall clock, so that they can be compared with a monotonic reading whatever the wall clock
/// does meanwhile (sdwdate slews it, NTP or a resume can step it).
pub fn monotonic_timestamps(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    let clock: libc::c_int = libc::CLOCK_MONOTONIC;
    // SAFETY: the fd is an open evdev node borrowed for the call; EVIOCSCLOCKID reads one int
    // from the pointer, which points at `clock` for the whole call.
    unsafe { ioctl::set_clock_id(fd.as_raw_fd(), &clock) }.map_err(nix_io)?;
    Ok(())
}

/// The twin's name: the real device's, cut at a character boundary to what the kernel keeps.
pub fn twin_name(real: &str) -> String {
    cut(real, MAX_NAME).to_owned()
}

/// At most this much of the real device's phys goes behind the mark: well inside the 256
/// bytes readers such as the evdev crate (which panics beyond) read.
pub const MAX_PHYS: usize = 64;

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Whether the device at `node` (with this `phys`) is a kloak twin: marked, and virtual (its
/// sysfs device lives under /sys/devices/virtual, as uinput's do). A device on a bus (USB,
/// i8042, ...) is never taken for one, whatever its phys; a virtual one that is not ours would
/// need the `kloak/` mark too (uhid devices, such as Bluetooth LE keyboards through bluez, are
/// virtual, but their phys is the adapter's address). Two kloak instances never grab each
/// other's twins.
pub fn is_twin(node: &Path, phys: Option<&str>) -> bool {
    if !phys.is_some_and(|p| p.starts_with(PHYS_MARK)) {
        return false;
    }
    let Some(name) = node.file_name() else {
        return false;
    };
    let link = Path::new("/sys/class/input").join(name).join("device");
    // Unknown (no sysfs): marked is enough to leave it alone.
    std::fs::canonicalize(link).map_or(true, |p| p.starts_with("/sys/devices/virtual"))
}

/// A uinput device. Dropping it destroys the device.
#[derive(Debug)]
pub struct Twin {
    file: File,
}

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// What a twin is made of.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub name: String,
    /// Bus type, vendor, product, version.
    pub id: [u16; 4],
    pub phys: String,
    pub keys: Vec<u16>,
    pub rel: Vec<u16>,
    pub msc: Vec<u16>,
    pub switches: Vec<u16>,
    pub leds: Vec<u16>,
    pub props: Vec<u16>,
    /// Absolute axes with value, minimum, maximum, fuzz, flat, resolution.
    pub abs: Vec<(u16, [i32; 6])>,
}

impl Spec {
    /// The twin of `dev`: its keys, relative and absolute axes (with their ranges),
    /// properties, switches, misc events and LEDs, its name and id, and kloak's mark on its
    /// phys. The kernel's own autorepeat (EV_REP) is not declared: the real device's repeats
    /// are forwarded (delayed) instead, so they are not doubled.
    pub fn of(dev: &Device) -> io::Result<Spec> {
        let codes = |it: &mut dyn Iterator<Item = u16>| it.collect::<Vec<u16>>();
        let mut abs = Vec::new();
        if let Some(axes) = dev.supported_absolute_axes() {
            let state = dev.get_abs_state()?;
            for a in axes.iter() {
                let i = state[usize::from(a.0)];
                abs.push((
                    a.0,
                    [i.value, i.minimum, i.maximum, i.fuzz, i.flat, i.resolution],
                ));
            }
        }
        let id = dev.input_id();
        Ok(Spec {
            name: dev.name().unwrap_or("input device").to_owned(),
            id: [id.bus_type().0, id.vendor(), id.product(), id.version()],
            phys: format!(
                "{PHYS_MARK}{}",
                cut(dev.physical_path().unwrap_or(""), MAX_PHYS)
            ),
            keys: dev
                .supported_keys()
                .map_or_else(Vec::new, |k| codes(&mut k.iter().map(|k| k.code()))),
            rel: dev
                .supported_relative_axes()
                .map_or_else(Vec::new, |r| codes(&mut r.iter().map(|a| a.0))),
            msc: dev
                .misc_properties()
                .map_or_else(Vec::new, |m| codes(&mut m.iter().map(|m| m.0))),
            switches: dev
                .supported_switches()
                .map_or_else(Vec::new, |s| codes(&mut s.iter().map(|s| s.0))),
            leds: dev
                .supported_leds()
                .map_or_else(Vec::new, |l| codes(&mut l.iter().map(|l| l.0))),
            props: codes(&mut dev.properties().iter().map(|p| p.0)),
            abs,
        })
    }
}

impl Twin {
    /// Creates the twin of `dev` (see [`Spec::of`]).
    pub fn of(dev: &Device) -> io::Result<Twin> {
        Twin::create(&Spec::of(dev)?)
    }

    /// Creates a uinput device as `spec` says; its name is cut to what the kernel keeps.
    pub fn create(spec: &Spec) -> io::Result<Twin> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/uinput")?;
        let fd = file.as_raw_fd();
        type SetBit = unsafe fn(i32, nix::sys::ioctl::ioctl_param_type) -> nix::Result<i32>;
        let bits: [(u16, SetBit, &[u16]); 5] = [
            (EV_KEY, ioctl::set_keybit, &spec.keys),
            (EV_REL, ioctl::set_relbit, &spec.rel),
            (EV_MSC, ioctl::set_mscbit, &spec.msc),
            (EV_SW, ioctl::set_swbit, &spec.switches),
            (EV_LED, ioctl::set_ledbit, &spec.leds),
        ];
        for (evbit, set, codes) in bits {
            if codes.is_empty() {
                continue;
            }
            // SAFETY: `fd` is an open uinput device not yet created; these ioctls take an int
            // by value and write nothing back.
            unsafe {
                ioctl::set_evbit(fd, evbit.into()).map_err(nix_io)?;
                for &c in codes {
                    set(fd, c.into()).map_err(nix_io)?;
                }
            }
        }
        for &p in &spec.props {
            // SAFETY: as above.
            unsafe { ioctl::set_propbit(fd, p.into()) }.map_err(nix_io)?;
        }
        if !spec.abs.is_empty() {
            // SAFETY: as above.
            unsafe { ioctl::set_evbit(fd, EV_ABS.into()) }.map_err(nix_io)?;
        }
        for &(code, [value, minimum, maximum, fuzz, flat, resolution]) in &spec.abs {
            let setup = libc::uinput_abs_setup {
                code,
                absinfo: libc::input_absinfo {
                    value,
                    minimum,
                    maximum,
                    fuzz,
                    flat,
                    resolution,
                },
            };
            // SAFETY: `fd` as above; `setup` is a valid uinput_abs_setup the kernel only
            // reads (UI_ABS_SETUP also sets the axis' bit).
            unsafe { ioctl::abs_setup(fd, &setup) }.map_err(nix_io)?;
        }
        if !spec.phys.is_empty() {
            let phys = CString::new(spec.phys.replace('\0', "")).map_err(io::Error::other)?;
            // SAFETY: `phys` is a NUL-terminated string that outlives the call; the kernel
            // copies it.
            unsafe { ioctl::set_phys(fd, phys.as_ptr()) }.map_err(nix_io)?;
        }
        let [bustype, vendor, product, version] = spec.id;
        let mut setup = libc::uinput_setup {
            id: libc::input_id {
                bustype,
                vendor,
                product,
                version,
            },
            name: [0; libc::UINPUT_MAX_NAME_SIZE],
            ff_effects_max: 0,
        };
        let name = twin_name(&spec.name);
        for (dst, src) in setup.name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        // SAFETY: `setup` is a valid uinput_setup (its name NUL-terminated: at most 79 of its
        // 80 bytes are set); the kernel only reads it. Then the device is created.
        unsafe {
            ioctl::dev_setup(fd, &setup).map_err(nix_io)?;
            ioctl::dev_create(fd).map_err(nix_io)?;
        }
        Ok(Twin { file })
    }

    /// Writes a frame (the events, then SYN_REPORT) in ONE write, so it goes out whole or not
    /// at all.
    pub fn emit(&mut self, events: &[(u16, u16, i32)]) -> io::Result<()> {
        let mut buf = Vec::with_capacity((events.len() + 1) * size_of::<libc::input_event>());
        for &(kind, code, value) in events.iter().chain([&(0, 0, 0)]) {
            buf.extend_from_slice(&event_bytes(kind, code, value));
        }
        let n = self.file.write(&buf)?;
        if n != buf.len() {
            return Err(io::Error::other(format!(
                "short write to uinput: {n} of {} bytes",
                buf.len()
            )));
        }
        Ok(())
    }

    /// A second handle on the same uinput device, to read what is written to the twin (LED
    /// changes) from another task.
    pub fn reader(&self) -> io::Result<OwnedFd> {
        Ok(self.file.try_clone()?.into())
    }

    /// The twin's directory in sysfs (/sys/devices/virtual/input/inputN).
    pub fn syspath(&self) -> io::Result<PathBuf> {
        let mut buf = [0u8; 64];
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        unsafe { ioctl::get_sysname(self.file.as_raw_fd(), &mut buf) }.map_err(nix_io)?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Ok(Path::new("/sys/devices/virtual/input")
            .join(String::from_utf8_lossy(&buf[..end]).as_ref()))
    }
}

impl Drop for Twin {
    fn drop(&mut self) {
        // Destroy now, even while the LED reader still holds a second handle.
        // SAFETY: UI_DEV_DESTROY takes no argument.
        let _ = unsafe { ioctl::dev_destroy(self.file.as_raw_fd()) };
    }
}

/// Where `type`, `code` and `value` sit in a `struct input_event`: right after its time, with
/// nothing after them (checked when compiling), so events are encoded without `unsafe`.
const EVENT_TIME: usize = size_of::<libc::timeval>();
const _: () = assert!(
    std::mem::offset_of!(libc::input_event, type_) == EVENT_TIME
        && std::mem::offset_of!(libc::input_event, code) == EVENT_TIME + 2
        && std::mem::offset_of!(libc::input_event, value) == EVENT_TIME + 4
        && size_of::<libc::input_event>() == EVENT_TIME + 8
);

/// One `struct input_event` as the kernel reads and writes it (the time is ignored on write).
pub fn event_bytes(kind: u16, code: u16, value: i32) -> Vec<u8> {
    let mut b = vec![0u8; EVENT_TIME];
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(&code.to_ne_bytes());
    b.extend_from_slice(&value.to_ne_bytes());
    b
}

/// Decodes `struct input_event`s from bytes read from the kernel: (type, code, value).
pub fn parse_events(buf: &[u8]) -> Vec<(u16, u16, i32)> {
    buf.chunks_exact(size_of::<libc::input_event>())
        .map(|c| {
            let t = EVENT_TIME;
            (
                u16::from_ne_bytes([c[t], c[t + 1]]),
                u16::from_ne_bytes([c[t + 2], c[t + 3]]),
                i32::from_ne_bytes([c[t + 4], c[t + 5], c[t + 6], c[t + 7]]),
            )
        })
        .collect()
}

/// Forwards the LED changes written to a twin (by the console, X or a compositor setting Caps
/// Lock's light) to the real device (`real`: a second handle on the grabbed device), until
/// the twin is gone.
pub async fn forward_leds(twin: OwnedFd, real: OwnedFd) -> io::Result<()> {
    let mut out = File::from(real);
    // SAFETY: the File owns its descriptor, which stays open and the same for as long as the
    // AsyncFd holds the File.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(
            File::from(twin),
            tokio::io::Interest::READABLE,
        )
    }
    .map_err(io::Error::from)?;
    let mut buf = vec![0u8; 64 * size_of::<libc::input_event>()];
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|f| f.get_ref().read(&mut buf)) {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => {
                for (kind, code, value) in parse_events(&buf[..n]) {
                    if kind == EV_LED {
                        let mut frame = event_bytes(kind, code, value);
                        frame.extend(event_bytes(0, 0, 0));
                        out.write_all(&frame)?;
                    }
                }
            }
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        assert_eq!(twin_name("AT keyboard"), "AT keyboard");
        for n in [72, 73, 79, 80, 100, 200] {
            let long = "é".repeat(n);
            let t = twin_name(&long);
            assert!(t.len() <= MAX_NAME, "{n}: {}", t.len());
            assert!(t.len() >= MAX_NAME - 1, "{n}: {}", t.len());
            assert!(long.starts_with(&t));
            let ascii = "k".repeat(n);
            assert_eq!(twin_name(&ascii).len(), MAX_NAME.min(n));
            // The phys behind the mark stays far inside what readers take (256 bytes).
            let phys = cut(&long, MAX_PHYS);
            assert!(phys.len() <= MAX_PHYS && long.starts_with(phys));
        }
    }

    #[test]
    fn events_round_trip_through_the_kernel_layout() {
        let mut bytes = event_bytes(EV_LED, 1, 1);
        bytes.extend(event_bytes(0, 0, 0));
        assert_eq!(bytes.len(), 2 * size_of::<libc::input_event>());
        assert_eq!(parse_events(&bytes), vec![(EV_LED, 1, 1), (0, 0, 0)]);
        // A partial event is not decoded.
        assert_eq!(
            parse_events(&bytes[..bytes.len() - 1]),
            vec![(EV_LED, 1, 1)]
        );
    }

    #[test]
    fn only_marked_devices_are_twins() {
        let node = Path::new("/dev/input/event-none");
        assert!(!is_twin(node, None));
        assert!(!is_twin(node, Some("usb-0000:00:14.0-1/input0")));
        assert!(is_twin(node, Some("kloak/usb-0000:00:14.0-1/input0")));
    }
}
