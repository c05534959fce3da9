#!/usr/bin/env bash
# Sets up and runs every test: formatting, lints, unit and golden tests, and the tests that
# load real nft rules inside network namespaces the tests create. Needs root (as in CI).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
# As a user: re-run through sudo (said so), or with ANON_ALLOW_USER=1 run what a user can and
# skip the rest loudly (never in CI).
if ! need_root "the test suite" "$@"; then
  if [ "${CI:-}" = true ]; then echo "CI runs the tests as root" >&2; exit 2; fi
  echo "*** not root (ANON_ALLOW_USER=1): the namespace, VM and system tests will be SKIPPED (loudly). ***" >&2
else
  stage setup base_setup
  stage packaging-setup packaging_setup
  stage system-setup ensure_debs debootstrap cpio socat
  stage vm-setup vm_setup
  # tirdad's kernel: about 17 min once on 2 cores, then cached outside the repository.
  stage rust-kernel rust_kernel_setup
fi
t0=$SECONDS
stage fmt cargo fmt --all -- --check
stage clippy cargo clippy --locked --workspace --all-targets -- -D warnings
stage build cargo build --locked --workspace --all-targets
stage test cargo test --locked --workspace
# sdwdate without arti (SOCKS only, e.g. for a Whonix workstation), in its own build directory
# so that the default binaries the other tests run stay the default ones.
socks_only() {
  local dir=$CARGO_TARGET_DIR/socks-only
  cargo clippy --locked -p sdwdate --no-default-features --all-targets --target-dir "$dir" -- -D warnings &&
    cargo test --locked -p sdwdate --no-default-features --lib --test cli --target-dir "$dir"
}
stage sdwdate-socks-only socks_only
# Every parser of outside input under libFuzzer, a short fixed time each (scripts/fuzz.sh;
# run it with more seconds per target for a long run).
stage fuzz "$ROOT/scripts/fuzz.sh" "${ANON_FUZZ_SECONDS:-20}"
stage packaging "$ROOT/packaging/check.sh"
# The booted-system tier: the packages just built, installed with apt and run by systemd in a
# Debian VM (tests/system/run.sh). Root only (debootstrap); CI runs as root.
if [ "$(id -u)" = 0 ]; then
  stage system "$ROOT/tests/system/run.sh" "${ANON_DEB_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/anon-daemons/deb}"
else
  echo "*** not root: the booted-system tier (tests/system) is SKIPPED. ***" >&2
fi
echo "==> all stages: $((SECONDS - t0)) s"
