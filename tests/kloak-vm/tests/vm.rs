//! Boots Debian's stock kernel in qemu (TCG) with kloak and the guest test program, and
//! requires every guest check to pass. Nothing is grabbed on this machine.

use std::path::PathBuf;
use std::time::Duration;

#[test]
fn kloak_in_a_booted_kernel() {
    let Some(kernel) = anon_vm::require_vm("kloak_in_a_booted_kernel") else {
        return;
    };
    let vmtest = PathBuf::from(env!("CARGO_BIN_EXE_kloak-vmtest"));
    // `cargo test --workspace` builds kloak next to this package's binary.
    let kloak = vmtest.parent().expect("target dir").join("kloak");
    assert!(
        kloak.exists(),
        "{} is missing: run `cargo test --workspace`",
        kloak.display()
    );
    // The soak's size: 50,000 events by default, ANON_SOAK_EVENTS for the long run.
    let events: usize = std::env::var("ANON_SOAK_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let console = anon_vm::Vm::new(kernel)
        .module("evdev")
        .module("uinput")
        // A real HID keyboard for the long-name scenario (hid comes along as their dependency).
        .module("uhid")
        .module("hid-generic")
        .file("/kloak", &kloak)
        .file("/kloak-vmtest", &vmtest)
        .run(
            &format!("/kloak-vmtest /kloak {events}\n"),
            Duration::from_secs(240 + events as u64 / 200),
        )
        .expect("boot the VM");
    let text = &console.text;
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("KLOAK-VMTEST"))
        .collect();
    eprintln!(
        "VM run: {:.1} s\n{}",
        console.wall.as_secs_f64(),
        lines.join("\n")
    );
    assert!(text.contains("VM-READY"), "the guest did not boot:\n{text}");
    assert!(
        !text.contains("insmod") || !text.contains("failed"),
        "a module failed to load:\n{text}"
    );
    assert!(
        text.contains("KLOAK-VMTEST DONE pass=") && !text.contains("KLOAK-VMTEST FAIL"),
        "guest checks failed:\n{text}"
    );
    for name in [
        "devices",
        "order",
        "delay-bound",
        "delays-random",
        "grabbed",
        "hotplug",
        "sigkill",
        "ungrabbed-after-kill",
        "sigterm",
        "escape",
        "hello-world",
        "press-latency",
        "hold-floor",
        "usb-frames",
        "long-name-device",
        "long-name",
        "hid-typing",
        "hid-unplug",
        "held-at-start",
        "identity",
        "leds",
        "capslock-led",
        "soak",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("KLOAK-VMTEST PASS {name} "))),
            "check {name} missing:\n{text}"
        );
    }
}
