#!/usr/bin/env bash
# Prints benchmark figures (recorded in the README's performance section):
#  - anon-firewall: median time to build and to apply each ruleset (apply: inside a private
#    network namespace, with the real nft);
#  - sdwdate: time to the first successful round and peak RSS over the local Tor network;
#  - kloak: the core's CPU time per 10,000 events and the delay distribution it adds
#    (the daemon's latency in a booted kernel is printed by the VM test, tests/kloak-vm), and
#    the identification benchmark: accuracy of a keystroke-dynamics attack per setting.
# Needs root.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root "the benchmark"
cd "$ROOT"
base_setup
cargo bench --locked -p anon-firewall --bench ruleset
# The SOCKS-only build beside the packaged pair (its own target directory: the feature change
# would otherwise rebuild the bench's binaries).
socks_only_target=${CARGO_TARGET_DIR:-$ROOT/target}-socks-only
CARGO_TARGET_DIR=$socks_only_target cargo build --locked --release -q -p sdwdate --no-default-features
SDWDATE_SOCKS_ONLY_BIN=$socks_only_target/release/sdwdate cargo bench --locked -p sdwdate --bench first_round
cargo bench --locked -p kloak --bench core
cargo bench --locked -p kloak --bench identify
