#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 20: the CI budget).
#
#   scripts/fuzz.sh                 # CI: 20 s per target
#   scripts/fuzz.sh 600             # locally: 10 minutes per target
#   scripts/fuzz.sh 300 query_path  # one target
#
# Works on the stable toolchain: `--sanitizer none` keeps cargo-fuzz from passing the nightly-only
# `-Zsanitizer=...` (the code under test has no `unsafe`, so AddressSanitizer would add little); coverage
# instrumentation, libFuzzer, debug assertions and overflow checks are all still on.
# Needs cargo-fuzz: `cargo install cargo-fuzz --locked --version 0.13.2`.
#
# The committed seed corpus (fuzz/corpus/<target>/) and the crashers kept as regression tests
# (fuzz/regressions/<target>/) are read, never written: new inputs go to
# fuzz/target/corpus-work/<target>/ (kept between local runs, git-ignored). Environment:
#   FUZZ_MERGE=1   afterwards, add the work inputs that bring new coverage to fuzz/corpus/<target>/
#   FUZZ_ARGS=...  extra libFuzzer flags, e.g. "-use_value_profile=1" or "-fork=2"
# Exit status 1 if any target found a crash; the crashing input is in fuzz/artifacts/<target>/
# (see fuzz/README.md for reproducing it and keeping it as a regression test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

secs=${1:-20}
shift || true
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked --version 0.13.2" >&2
    exit 2
fi

# The fuzz crate is its own workspace; start its lock file from the main one so the code under
# test is built with exactly the dependency versions the main build uses (cargo then only adds
# libfuzzer-sys and its few dependencies).
cp Cargo.lock fuzz/Cargo.lock
cd fuzz
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build --sanitizer none
logs=$root/fuzz/target/fuzz-logs
mkdir -p "$logs"

failed=()
summary=()
for t in "${targets[@]}"; do
    work=$root/fuzz/target/corpus-work/$t
    mkdir -p "$work"
    dirs=("$work")
    for d in "$root/fuzz/corpus/$t" "$root/fuzz/regressions/$t"; do
        [ -d "$d" ] && dirs+=("$d")
    done
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    [ -f "$root/fuzz/dicts/$t.dict" ] && args+=(-dict="$root/fuzz/dicts/$t.dict")
    # shellcheck disable=SC2206 # FUZZ_ARGS is a list of flags
    args+=(${FUZZ_ARGS:-})
    echo "== $t: ${secs}s, corpus ${dirs[*]#"$root/"}"
    status=0
    cargo fuzz run --sanitizer none "$t" "${dirs[@]}" -- "${args[@]}" >"$logs/$t.log" 2>&1 ||
        status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -1)
    corp=$(find "${dirs[@]}" -type f ! -name '.*' | wc -l)
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        echo "!! $t FAILED (exit $status); last lines of fuzz/target/fuzz-logs/$t.log:"
        grep -v '^#' "$logs/$t.log" | tail -40
        summary+=("$t: CRASH after ${execs:-?} execs; see fuzz/artifacts/$t/")
        continue
    fi
    summary+=("$t: ${execs:-?} execs, ${rate:-?} exec/s, $corp inputs (seed + work)")
    if [ "${FUZZ_MERGE:-0}" = 1 ]; then
        before=$(find "$root/fuzz/corpus/$t" -type f | wc -l)
        cargo fuzz run --sanitizer none "$t" "$root/fuzz/corpus/$t" "$work" -- -merge=1 \
            >"$logs/$t.merge.log" 2>&1
        after=$(find "$root/fuzz/corpus/$t" -type f | wc -l)
        echo "   merged $((after - before)) new inputs into fuzz/corpus/$t"
    fi
done

echo "== summary"
printf '   %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]}" >&2
    exit 1
fi
