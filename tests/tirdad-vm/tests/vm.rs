//! Builds tirdad.ko against the project's Rust-enabled test kernel, boots that kernel in qemu
//! (TCG) and checks, for IPv4 and IPv6, SYN and SYN-ACK, that ISN deltas on a fixed 4-tuple
//! follow the clock without the module (the leak is visible), do not with it (and neither do
//! the TCP timestamps), and do again after rmmod.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn build_module(tree: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tirdad");
    let dir = std::env::temp_dir().join(format!("tirdad-build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for f in ["Kbuild", "Makefile", "tirdad_main.rs", "tirdad_shim.c"] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy module source");
    }
    let out = Command::new("make")
        .arg("-C")
        .arg(&dir)
        .arg(format!("KDIR={}", tree.display()))
        .arg("LLVM=-19")
        .output()
        .expect("make");
    assert!(
        out.status.success(),
        "module build failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("tirdad.ko")
}

/// (n, time-derived) of `ISNPROBE {fam} {kind}` in `section`.
fn verdict(section: &str, fam: &str, kind: &str) -> (usize, usize) {
    let line = section
        .lines()
        .find(|l| l.starts_with(&format!("ISNPROBE {fam} {kind} ")))
        .unwrap_or_else(|| panic!("no {fam} {kind} line in:\n{section}"));
    let num = |key: &str| -> usize {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{line}"))
    };
    (num("n="), num("time-derived="))
}

fn counter(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

#[test]
fn tirdad_randomizes_isns_in_a_booted_kernel() {
    let Some((kernel, tree)) =
        anon_vm::require_rust_kernel("tirdad_randomizes_isns_in_a_booted_kernel")
    else {
        return;
    };
    let module = build_module(&tree);
    let probe = PathBuf::from(env!("CARGO_BIN_EXE_isnprobe"));
    let script = "ip link set lo up\n\
        echo '== stock'; /isnprobe 4 25; /isnprobe 6 25\n\
        insmod /tirdad.ko && echo TIRDAD-LOADED\n\
        echo \"REPLACED-BEFORE $(cat /sys/module/tirdad/parameters/replaced)\"\n\
        echo '== tirdad'; /isnprobe 4 25; /isnprobe 6 25\n\
        echo \"REPLACED-AFTER $(cat /sys/module/tirdad/parameters/replaced)\"\n\
        rmmod tirdad && echo TIRDAD-UNLOADED\n\
        echo '== after'; /isnprobe 4 25; /isnprobe 6 25\n\
        echo '== dmesg'; dmesg | grep -i tirdad\n";
    let console = anon_vm::Vm::new(kernel)
        .file("/tirdad.ko", &module)
        .file("/isnprobe", &probe)
        .run(script, Duration::from_secs(180))
        .expect("boot the VM");
    let text = console.text.clone();
    eprintln!(
        "VM run: {:.1} s\n{}",
        console.wall.as_secs_f64(),
        text.lines()
            .filter(|l| l.contains("ISNPROBE")
                || l.contains("==")
                || l.contains("tirdad")
                || l.contains("REPLACED"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        text.contains("TIRDAD-LOADED") && text.contains("TIRDAD-UNLOADED"),
        "load/unload failed:\n{text}"
    );
    let section = |name: &str| -> String {
        let start = text
            .find(&format!("== {name}"))
            .unwrap_or_else(|| panic!("no section {name}:\n{text}"));
        text[start..]
            .split("\n== ")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let (stock, with, after) = (section("stock"), section("tirdad"), section("after"));
    for fam in ["v4", "v6"] {
        for kind in ["SYN", "SYNACK", "TSVAL"] {
            let (n, hits) = verdict(&stock, fam, kind);
            assert!(
                n >= 20 && hits == n,
                "stock {fam} {kind}: {hits}/{n} deltas time-derived; the test must see the leak"
            );
            let (n, hits) = verdict(&with, fam, kind);
            assert!(
                n >= 20 && hits == 0,
                "with tirdad {fam} {kind}: {hits}/{n} deltas still time-derived"
            );
            let (n, hits) = verdict(&after, fam, kind);
            assert!(
                n >= 20 && hits == n,
                "after rmmod {fam} {kind}: {hits}/{n}; stock behaviour must be back"
            );
        }
    }
    let replaced = counter(&text, "REPLACED-AFTER ") - counter(&text, "REPLACED-BEFORE ");
    assert!(
        replaced >= 100,
        "the counter saw {replaced} ISNs for 50 connections (SYN + SYN-ACK each)"
    );
    let dmesg = section("dmesg");
    assert!(
        dmesg.contains("hooked secure_tcp_seq_and_ts_off")
            && dmesg.contains("hooked secure_tcpv6_seq_and_ts_off"),
        "{dmesg}"
    );
    assert!(dmesg.contains("random TCP ISNs disabled after"), "{dmesg}");
}
