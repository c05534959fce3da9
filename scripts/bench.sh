#!/usr/bin/env bash
# Prints the median time to build and to apply each ruleset (apply: inside a private network
# namespace, with the real nft). Needs root.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root "the benchmark"
cd "$ROOT"
base_setup
cargo bench --locked -p anon-firewall --bench ruleset
