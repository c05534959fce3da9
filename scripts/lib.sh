# Shared by the scripts in this folder: timed stages and installing missing Debian packages.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# One build directory outside the repository, reused by every clone and run: arti alone is
# 7-11 minutes of compiling on 2 cores, paid once per machine instead of once per CI run.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/anon-daemons/target}

# stage NAME CMD...: runs CMD, prints how long it took (the CI budget stays visible).
stage() {
  local name=$1; shift
  local t0=$SECONDS
  echo "==> stage: $name"
  local rc=0
  "$@" || rc=$?
  echo "==> stage: $name: $((SECONDS - t0)) s (exit $rc)"
  return $rc
}

# need_root WHAT ARGS...: namespaces, nft and VMs need root. As root this does nothing; as
# another user it re-runs the calling script through sudo (and says so), keeping this user's
# Rust toolchain (rustup's PATH, RUSTUP_HOME, CARGO_HOME); without sudo it stops with a hint.
# Returns 1 only when ANON_ALLOW_USER=1 asks to go on as the user (tests skip loudly then).
need_root() {
  local what=$1; shift
  [ "$(id -u)" = 0 ] && return 0
  if command -v sudo >/dev/null 2>&1 && [ "${ANON_ALLOW_USER:-}" != 1 ]; then
    echo "$what needs root (network namespaces, nft, VMs): re-running as root with sudo" >&2
    exec sudo env PATH="$PATH" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" \
      CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" CI="${CI:-}" "$0" "$@"
  fi
  [ "${ANON_ALLOW_USER:-}" = 1 ] && return 1
  echo "$what needs root (network namespaces, nft, VMs) and sudo is not installed: run it as root" >&2
  exit 2
}

# ensure_debs PKG...: installs the Debian packages that are missing, nothing else.
ensure_debs() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The packages the tests and the demo use: nft, ip, sysctl, setpriv, timeout, systemd-analyze.
base_setup() {
  # libsqlite3-dev, pkg-config: arti's directory cache links the system's SQLite.
  # libfaketime: sdwdate's slow-clock test fakes the clock of its own process only.
  # g++: libFuzzer (libfuzzer-sys, scripts/fuzz.sh) is C++.
  ensure_debs nftables iproute2 procps util-linux coreutils bash systemd tor time libsqlite3-dev pkg-config libfaketime g++
  command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 2; }
}

# Building the Debian source package the way a distribution does (packaging/check.sh):
# debhelper, dh-dkms, lintian and Debian's own Rust toolchain (rustc-web/cargo-web on bookworm,
# which install /usr/bin/rustc and /usr/bin/cargo; debian/rules uses those, never rustup's).
packaging_setup() {
  ensure_debs dpkg-dev debhelper dh-dkms lintian libsqlite3-dev pkgconf xz-utils python3 rustc-web cargo-web
}

# debian_kernel CACHE REGEX LINK: the newest Debian kernel image package matching REGEX,
# unpacked into CACHE (once) and linked as CACHE/LINK; its headers installed as a user of
# tirdad-dkms has them (they bring the image package too): the tirdad VM test builds the
# module with DKMS against them.
debian_kernel() {
  local cache=$1 regex=$2 link=$3
  local pkg; pkg=$(apt-cache search --names-only "$regex" | awk '{print $1}' | sort -V | tail -n1)
  [ -n "$pkg" ] || { echo "no Debian kernel package matches $regex" >&2; return 1; }
  if [ ! -d "$cache/$pkg" ]; then
    local tmp; tmp=$(mktemp -d); chmod 755 "$tmp"  # apt downloads as user _apt
    # The package ships no modules.dep (depmod runs at install time): make it here.
    (cd "$tmp" && apt-get download -q "$pkg" >/dev/null && dpkg-deb -x ./*.deb "$cache/$pkg.partial") &&
      depmod -b "$cache/$pkg.partial" "$(ls "$cache/$pkg.partial/lib/modules")" &&
      mv "$cache/$pkg.partial" "$cache/$pkg"
    rm -rf "$tmp"
  fi
  ln -sfn "$cache/$pkg" "$cache/$link"
  local kver=${pkg#linux-image-}; kver=${kver%-unsigned}
  ensure_debs "linux-headers-$kver" >&2
}

# The VM tier: qemu (from bookworm-backports, since the preinstalled qemu-utils is the
# backports one), busybox-static, cpio, xz, and Debian's stock kernel unpacked into a cache
# outside the repository (its headers package installs the image package too). Prints the cache directory.
vm_setup() {
  if ! dpkg-query -W -f='${Status}' qemu-system-x86 2>/dev/null | grep -q 'ok installed'; then
    local codename; codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    # (Captured first: under pipefail `grep -q` closing a long pipe early reads as "absent".)
    local policy; policy=$(apt-cache policy 2>/dev/null || true)
    if ! grep -q "${codename}-backports" <<<"$policy"; then
      # Reuse the mirror this machine already uses for Debian.
      local uri; uri=$(grep -m1 '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | awk '{print $2}')
      [ -n "$uri" ] || uri=$(grep -m1 -o 'https\?://[^ ]*debian/\? ' /etc/apt/sources.list | tr -d ' ')
      printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$uri" "$codename" > /etc/apt/sources.list.d/anon-daemons-backports.sources
      apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t "${codename}-backports" qemu-system-x86 >/dev/null
  fi
  ensure_debs busybox-static cpio xz-utils kmod
  local cache=${ANON_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/anon-daemons/vm}
  mkdir -p "$cache"
  # The newest Debian 6.12 kernel image (unsigned: the same kernel, without the signature
  # shim), the VM tests' kernel; and bookworm's own 6.1, on which tirdad is tested too.
  debian_kernel "$cache" '^linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64-unsigned$' current || return 1
  debian_kernel "$cache" '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' bookworm-6.1 || return 1
  echo "$cache/current"
}

# The Rust-enabled test kernel for tirdad (notes/kernel-vm.md): Debian's linux-source-6.12
# built with CONFIG_RUST (LLVM=-19, bindgen-cli from crates.io, rust-src), about 17 minutes on
# 2 cores, cached outside the repository keyed by kernel version, config, rustc and bindgen.
# Prints the kernel tree's directory (bzImage in arch/x86/boot, ready for M= module builds).
rust_kernel_setup() {
  ensure_debs clang-19 lld-19 llvm-19 libclang-19-dev linux-source-6.12 flex bison bc libelf-dev \
    libssl-dev make cpio xz-utils kmod zstd gcc libc6-dev dkms
  rustup component list --installed 2>/dev/null | grep -q '^rust-src' || rustup component add rust-src >/dev/null
  local bindgen_version=0.73.2
  if ! bindgen --version 2>/dev/null | grep -q "$bindgen_version"; then
    cargo install --locked --quiet bindgen-cli --version "$bindgen_version" >&2
  fi
  local src; src=$(ls /usr/src/linux-source-6.12.tar.* | head -n1)
  local opts="64BIT PRINTK EARLY_PRINTK TTY SERIAL_8250 SERIAL_8250_CONSOLE BLK_DEV_INITRD RD_GZIP
    BINFMT_ELF BINFMT_SCRIPT DEVTMPFS DEVTMPFS_MOUNT PROC_FS SYSFS FUTEX EPOLL SIGNALFD TIMERFD EVENTFD
    MULTIUSER NET INET IPV6 PACKET UNIX MODULES MODULE_UNLOAD RUST SAMPLES SAMPLES_RUST KPROBES
    FTRACE FUNCTION_TRACER DYNAMIC_FTRACE KALLSYMS KALLSYMS_ALL HYPERVISOR_GUEST PARAVIRT PVH
    KERNEL_GZIP UNWINDER_ORC SMP SYN_COOKIES"
  local key; key=$( (basename "$src"; dpkg-query -W -f='${Version}' linux-source-6.12; echo "$opts";
    rustc --version; bindgen --version) | sha256sum | cut -c1-16)
  local cache=${ANON_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/anon-daemons/rust-kernel}
  local tree=$cache/$key/linux
  if [ ! -f "$cache/$key/done" ]; then
    rm -rf "$cache/$key"; mkdir -p "$cache/$key"
    tar -C "$cache/$key" -xf "$src"
    mv "$cache/$key"/linux-source-6.12 "$tree"
    (
      cd "$tree"
      make -s LLVM=-19 tinyconfig
      local a=""; for o in $opts; do a="$a -e $o"; done
      # shellcheck disable=SC2086
      scripts/config $a -m SAMPLE_RUST_MINIMAL -d KERNEL_XZ -d UNWINDER_GUESS -d MODVERSIONS \
        -d MODULE_SIG -d CC_OPTIMIZE_FOR_SIZE -e CC_OPTIMIZE_FOR_PERFORMANCE
      make -s LLVM=-19 olddefconfig
      grep -q '^CONFIG_RUST=y' .config || { echo "CONFIG_RUST did not stick" >&2; exit 1; }
      make -s LLVM=-19 -j"$(nproc)" >/dev/null
    ) >&2 || return 1
    touch "$cache/$key/done"
  fi
  ln -sfn "$cache/$key" "$cache/current"
  echo "$tree"
}
