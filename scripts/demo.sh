#!/usr/bin/env bash
# The demo ("Whonix in a box"): sets itself up, builds, runs, tears down. Needs root.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root "the demo" "$@"
cd "$ROOT"
stage setup base_setup
stage build cargo build --release --locked -p anon-firewall -p sdwdate -p leaktest -p whonix-in-a-box
bin=$CARGO_TARGET_DIR/release
stage demo "$bin/whonix-in-a-box" --firewall "$bin/anon-firewall" --sdwdate "$bin/sdwdate" --leaktest "$bin/leaktest"
