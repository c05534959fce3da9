#!/usr/bin/env bash
# Prints benchmark figures (recorded in the README's performance section):
#  - anon-firewall: median time to build and to apply each ruleset (apply: inside a private
#    network namespace, with the real nft);
#  - sdwdate: time to the first successful round and peak RSS over the local Tor network.
# Needs root.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root "the benchmark"
cd "$ROOT"
base_setup
cargo bench --locked -p anon-firewall --bench ruleset
cargo bench --locked -p sdwdate --bench first_round
