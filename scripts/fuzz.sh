#!/usr/bin/env bash
# Fuzzes every parser of outside input with libFuzzer, without cargo-fuzz.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 20 s, all targets)
#
# Builds fuzz/ (its own workspace; targets in fuzz/fuzz_targets/) with sanitizer coverage on
# the stable toolchain (RUSTC_BOOTSTRAP=1 unlocks the -C passes/llvm-args flags cargo-fuzz
# uses), into ${ANON_FUZZ_TARGET_DIR:-$HOME/.cache/anon-daemons/fuzz-target}, outside the repo.
# Each target runs on a temporary COPY of fuzz/corpus/TARGET (the committed seeds stay small)
# with fuzz/dict/TARGET.dict. Prints per target: duration, executions, coverage (the `cov:`
# of libFuzzer's last status line and -print_final_stats figures), and whether it crashed;
# exits non-zero if any target crashed, naming the crash file (kept, with its log).
#
# FUZZ_FEATURES=arti also builds and runs arti_settings (sdwdate's arti settings file), which
# needs sdwdate's embedded Tor client: a very large build, so off by default.
# Extra libFuzzer flags: FUZZ_ARGS="-jobs=2 -workers=2" and the like.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-20}
[ $# -gt 0 ] && shift
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;; esac

features=${FUZZ_FEATURES:-}
all=(sdwdate_config sdwdate_http socks5_reply tor_control_reply firewall_config kloak_simulate leaktest_observer)
case ",$features," in *,arti,*) all+=(arti_settings) ;; esac
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi
for t in "${targets[@]}"; do
    [ -f "$root/fuzz/fuzz_targets/$t.rs" ] || { echo "no such target: $t" >&2; exit 2; }
    if [ "$t" = arti_settings ] && [[ ",$features," != *,arti,* ]]; then
        echo "arti_settings needs FUZZ_FEATURES=arti" >&2
        exit 2
    fi
done

# Its own target directory: the coverage flags must not mix with the main build's.
export CARGO_TARGET_DIR=${ANON_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/anon-daemons/fuzz-target}
host=$(rustc -vV | sed -n 's/^host: //p')
# --target: RUSTFLAGS then apply to the targets only, not to build scripts and proc macros
# (which would not link without libFuzzer's coverage callbacks), as cargo-fuzz does.
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" --cfg fuzzing -Cdebug-assertions=on -Coverflow-checks=on"
echo "== building ${#targets[@]} target(s) into $CARGO_TARGET_DIR"
start=$(date +%s)
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
RUSTC_BOOTSTRAP=1 RUSTFLAGS="$flags" cargo build --locked --release --target "$host" \
    --manifest-path "$root/fuzz/Cargo.toml" ${features:+--features "$features"} "${bins[@]}"
echo "== build took $(($(date +%s) - start)) s"
bindir=$CARGO_TARGET_DIR/$host/release

failed=0
summary=()
for t in "${targets[@]}"; do
    work=$(mktemp -d "${TMPDIR:-/tmp}/anon-fuzz-$t.XXXXXX")
    mkdir -p "$work/corpus" "$work/artifacts"
    if [ -d "$root/fuzz/corpus/$t" ]; then cp -r "$root/fuzz/corpus/$t/." "$work/corpus/"; fi
    dict=()
    [ -f "$root/fuzz/dict/$t.dict" ] && dict=(-dict="$root/fuzz/dict/$t.dict")
    echo "== $t: ${secs} s"
    t0=$(date +%s)
    rc=0
    # shellcheck disable=SC2086
    "$bindir/$t" "$work/corpus" "${dict[@]}" -max_total_time="$secs" -rss_limit_mb=1024 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
        ${FUZZ_ARGS:-} >"$work/log" 2>&1 || rc=$?
    took=$(($(date +%s) - t0))
    status_line=$(grep -E '^#[0-9]+' "$work/log" | grep 'cov:' | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status_line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status_line")
    final_stat() { sed -n "s/^stat::$1: *//p" "$work/log" | tail -n 1; }
    execs=$(final_stat number_of_executed_units)
    eps=$(final_stat average_exec_per_sec)
    newu=$(final_stat new_units_added)
    rss=$(final_stat peak_rss_mb)
    units=$(find "$work/corpus" -type f | wc -l)
    crash=$(find "$work/artifacts" -type f | head -n 1)
    if [ "$rc" -ne 0 ] || [ -n "$crash" ]; then
        failed=1
        verdict="CRASHED (exit $rc)"
        echo "!! $t crashed: exit $rc; input: ${crash:-none}; log: $work/log"
        grep -E -A3 "panicked at|ERROR: libFuzzer|SUMMARY" "$work/log" | head -n 20 || true
        if [ -n "$crash" ]; then
            echo "   input (base64): $(base64 -w0 "$crash" | head -c 4000)"
        fi
    else
        verdict="ok"
    fi
    printf '   %s: %s in %ss; executions %s (%s/s), cov %s, ft %s, new units %s, corpus %s files, peak rss %s MB\n' \
        "$t" "$verdict" "$took" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${newu:-?}" \
        "$units" "${rss:-?}"
    summary+=("$(printf '%-18s %-18s %5ss %10s execs %6s cov %6s ft' "$t" "$verdict" "$took" \
        "${execs:-?}" "${cov:-?}" "${ft:-?}")")
    if [ "$verdict" = ok ]; then rm -rf "$work"; else summary+=("  crash: ${crash:-none} (log $work/log)"); fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
