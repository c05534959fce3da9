#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A kernel to boot: the image, and where its modules are (for [`Vm::module`]).
#[derive(Debug, Clone)]
pub struct Kernel {
    pub image: PathBuf,
    pub modules: PathBuf,
}

/// `$env`, else `~/.cache/anon-daemons/<sub>` (where scripts/lib.sh caches kernels).
fn cached(env: &str, sub: &str) -> Option<PathBuf> {
    std::env::var_os(env).map(PathBuf::from).or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(cache.join("anon-daemons").join(sub))
    })
}

impl Kernel {
    /// `ANON_VM_KERNEL_DIR`, else the cache `vm_setup` fills.
    pub fn debian() -> Option<Kernel> {
        Kernel::unpacked(&cached("ANON_VM_KERNEL_DIR", "vm/current")?)
    }

    /// Debian bookworm's own 6.1 kernel (`ANON_VM_KERNEL_61_DIR`, else the cache `vm_setup`
    /// fills): tirdad is tested on it too.
    pub fn debian_6_1() -> Option<Kernel> {
        Kernel::unpacked(&cached("ANON_VM_KERNEL_61_DIR", "vm/bookworm-6.1")?)
    }

    /// A kernel image package unpacked into `dir` (boot/vmlinuz-*, lib/modules/VERSION).
    fn unpacked(dir: &Path) -> Option<Kernel> {
        let find = |sub: &str, prefix: &str| -> Option<PathBuf> {
            fs::read_dir(dir.join(sub))
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
                })
        };
        Some(Kernel {
            image: find("boot", "vmlinuz-")?,
            modules: find("lib/modules", "")?,
        })
    }

    /// The project's Rust-enabled test kernel (`rust_kernel_setup` in scripts/lib.sh):
    /// `ANON_RUST_KERNEL_TREE`, else the cache. Returns the tree too, for module builds.
    pub fn rust_test_kernel() -> Option<(Kernel, PathBuf)> {
        let tree = cached("ANON_RUST_KERNEL_TREE", "rust-kernel/current/linux")?;
        let image = tree.join("arch/x86/boot/bzImage");
        image.exists().then(|| {
            (
                Kernel {
                    image,
                    modules: tree.clone(),
                },
                tree,
            )
        })
    }
}

/// The kernel and qemu, or a loud skip (a failure when `CI=true`).
pub fn require_vm(test: &str) -> Option<Kernel> {
    require(test, Kernel::debian())
}

/// As [`require_vm`], for Debian bookworm's 6.1 kernel.
pub fn require_debian_6_1(test: &str) -> Option<Kernel> {
    require(test, Kernel::debian_6_1())
}

/// As [`require_vm`], for the Rust-enabled test kernel; also returns its tree.
pub fn require_rust_kernel(test: &str) -> Option<(Kernel, PathBuf)> {
    let k = Kernel::rust_test_kernel();
    let tree = k.as_ref().map(|(_, t)| t.clone());
    require(test, k.map(|(k, _)| k)).zip(tree)
}

fn require(test: &str, kernel: Option<Kernel>) -> Option<Kernel> {
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let busybox = Path::new("/bin/busybox").exists();
    match (kernel, qemu && busybox) {
        (Some(k), true) => Some(k),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: needs qemu, busybox-static and the kernel (scripts/test.sh sets them up); CI=true forbids skipping");
            }
            eprintln!("\n*** SKIPPED {test}: no VM tier here. Run scripts/test.sh, which sets it up. ***\n");
            None
        }
    }
}

/// A guest to boot: kernel, modules to load, files to carry, memory.
#[derive(Debug, Clone)]
pub struct Vm {
    kernel: Kernel,
    modules: Vec<String>,
    files: Vec<(String, PathBuf)>,
    memory_mb: u32,
}

/// What came back.
#[derive(Debug)]
pub struct Console {
    pub text: String,
    pub wall: Duration,
    /// The test script's exit code, from the `VM-EXIT n` line.
    pub exit: Option<i32>,
}

fn cmd(c: &mut Command) -> io::Result<()> {
    let out = c.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

impl Vm {
    pub fn new(kernel: Kernel) -> Vm {
        Vm {
            kernel,
            modules: Vec::new(),
            files: Vec::new(),
            memory_mb: 512,
        }
    }

    /// A kernel module by name (e.g. `uinput`); its dependencies come along.
    pub fn module(mut self, name: &str) -> Vm {
        self.modules.push(name.to_owned());
        self
    }

    /// A host file placed at `guest_path`; executables bring their shared libraries.
    pub fn file(mut self, guest_path: &str, host: impl Into<PathBuf>) -> Vm {
        self.files.push((guest_path.to_owned(), host.into()));
        self
    }

    /// Module load order (dependencies first) from modules.dep.
    fn module_order(&self) -> io::Result<Vec<PathBuf>> {
        if self.modules.is_empty() {
            return Ok(Vec::new());
        }
        let dep = fs::read_to_string(self.kernel.modules.join("modules.dep"))?;
        let mut table: HashMap<String, (String, Vec<String>)> = HashMap::new();
        for line in dep.lines() {
            let Some((m, deps)) = line.split_once(':') else {
                continue;
            };
            let base = Path::new(m)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = base
                .split(".ko")
                .next()
                .unwrap_or_default()
                .replace('-', "_");
            table.insert(
                name,
                (
                    m.to_owned(),
                    deps.split_whitespace().map(str::to_owned).collect(),
                ),
            );
        }
        let by_path: HashMap<String, Vec<String>> = table.values().cloned().collect();
        fn visit(p: &str, by_path: &HashMap<String, Vec<String>>, out: &mut Vec<String>) {
            if out.iter().any(|x| x == p) {
                return;
            }
            for d in by_path.get(p).into_iter().flatten() {
                visit(d, by_path, out);
            }
            out.push(p.to_owned());
        }
        let mut order = Vec::new();
        for m in &self.modules {
            let (path, _) = table.get(&m.replace('-', "_")).ok_or_else(|| {
                io::Error::other(format!("module {m} not in modules.dep (built in?)"))
            })?;
            visit(path, &by_path, &mut order);
        }
        Ok(order
            .into_iter()
            .map(|p| self.kernel.modules.join(p))
            .collect())
    }

    fn put(root: &Path, guest: &str, host: &Path) -> io::Result<()> {
        let dst = root.join(guest.trim_start_matches('/'));
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(host, &dst)?;
        Ok(())
    }

    /// Shared libraries of a dynamic executable, per `ldd`.
    fn libraries(bin: &Path) -> Vec<PathBuf> {
        let Ok(out) = Command::new("ldd").arg(bin).output() else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.split_whitespace()
                    .find(|w| w.starts_with('/'))
                    .map(PathBuf::from)
            })
            .collect()
    }

    /// Builds the initramfs, boots, runs `script` (sh) and returns the console.
    pub fn run(&self, script: &str, timeout: Duration) -> io::Result<Console> {
        // One directory per run: the tests of one binary boot VMs in parallel threads of one
        // process, so the pid alone is not unique (sharing it let one run delete another's
        // initramfs while qemu started).
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let work = std::env::temp_dir().join(format!(
            "anon-vm-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&work);
        let root = work.join("root");
        for d in ["bin", "proc", "sys", "dev", "tmp", "lib/modules"] {
            fs::create_dir_all(root.join(d))?;
        }
        fs::copy("/bin/busybox", root.join("bin/busybox"))?;
        let mut list = String::new();
        for (i, m) in self.module_order()?.iter().enumerate() {
            let name = format!("{i:02}.ko");
            let dst = root.join("lib/modules").join(&name);
            let ext = m
                .extension()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default();
            match ext.as_str() {
                "xz" => cmd(Command::new("sh").arg("-c").arg(format!(
                    "xz -dc '{}' > '{}'",
                    m.display(),
                    dst.display()
                )))?,
                "zst" => cmd(Command::new("sh").arg("-c").arg(format!(
                    "zstd -dqc '{}' > '{}'",
                    m.display(),
                    dst.display()
                )))?,
                _ => {
                    fs::copy(m, &dst)?;
                }
            }
            list += &format!(
                "{name} {}\n",
                m.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
        }
        fs::write(root.join("modules.list"), list)?;
        for (guest, host) in &self.files {
            Self::put(&root, guest, host)?;
            for lib in Self::libraries(host) {
                Self::put(&root, &lib.to_string_lossy(), &lib)?;
            }
        }
        fs::write(root.join("test.sh"), script)?;
        let init = "#!/bin/busybox sh\n/bin/busybox --install -s /bin\n\
            mount -t proc proc /proc\nmount -t sysfs sysfs /sys\nmount -t devtmpfs devtmpfs /dev\n\
            while read f name; do insmod /lib/modules/$f || echo \"VM: insmod $name failed\"; done < /modules.list\n\
            echo VM-READY\nsh /test.sh\necho \"VM-EXIT $?\"\nsync\nreboot -f\n";
        fs::write(root.join("init"), init)?;
        for f in ["init", "test.sh"] {
            fs::set_permissions(root.join(f), fs::Permissions::from_mode(0o755))?;
        }
        let initrd = work.join("initramfs.gz");
        cmd(Command::new("sh").arg("-c").arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
            root.display(),
            initrd.display()
        )))?;
        let started = Instant::now();
        let mut child = Command::new("timeout")
            .arg(timeout.as_secs().to_string())
            .args([
                "qemu-system-x86_64",
                "-accel",
                "tcg",
                "-cpu",
                "max",
                "-smp",
                "1",
                "-nographic",
                "-no-reboot",
            ])
            .args(["-m", &self.memory_mb.to_string()])
            .arg("-kernel")
            .arg(&self.kernel.image)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=3"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // qemu's own errors (a missing image, no memory) go to stderr: read it beside the
        // console so neither pipe fills, and show it when qemu fails.
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = e.read_to_string(&mut s);
                s
            })
        });
        let mut text = String::new();
        if let Some(mut out) = child.stdout.take() {
            out.read_to_string(&mut text)?;
        }
        let status = child.wait()?;
        let errors = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        let _ = fs::remove_dir_all(&work);
        match status.code() {
            Some(0) => {}
            Some(124) => text += "\nVM: timed out\n",
            code => text += &format!("\nVM: qemu exited with {code:?}: {errors}\n"),
        }
        let exit = text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("VM-EXIT ")
                .and_then(|n| n.trim().parse().ok())
        });
        Ok(Console {
            text: text.replace('\r', ""),
            wall: started.elapsed(),
            exit,
        })
    }
}
