#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs one libFuzzer target as a meson test (suite "fuzz", see meson.build): first every input of
# its seed corpus once, then bounded fuzzing from that corpus. Exits 0 when nothing was found, 1
# on a crash, leak, sanitizer report, failed check or time-out (the input is kept in
# ARTIFACT_DIR), 77 when the target could not be built (1 with GRM_TEST_NO_SKIP=1, as in CI).
#
#   run-fuzzer.sh FUZZER CORPUS_DIR DICT ARTIFACT_DIR
#   run-fuzzer.sh --unavailable REASON CORPUS_DIR DICT ARTIFACT_DIR
#
# GRM_FUZZ_SECONDS (default 20) bounds the fuzzing. Inputs that found new coverage are kept in
# ARTIFACT_DIR/new-corpus/TARGET for a maintainer to merge into the seed corpus (README.md).
set -euo pipefail

if [ "$1" = --unavailable ]; then
        echo "SKIP: $2"
        if [ "${GRM_TEST_NO_SKIP:-}" = 1 ]; then
                echo "GRM_TEST_NO_SKIP=1: a skipped test is a failure"
                exit 1
        fi
        exit 77
fi

fuzzer=$1
corpus=$2
dict=$3
artifacts=$4
seconds=${GRM_FUZZ_SECONDS:-20}
name=$(basename "$fuzzer")
new_corpus=$artifacts/new-corpus/$name
mkdir -p "$artifacts" "$new_corpus"

# Any report is fatal. libFuzzer's own default exit codes (77 for an error) would read as
# "skipped" to meson, hence -error_exitcode and -timeout_exitcode.
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:print_summary=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:print_summary=1
opts=(-error_exitcode=1 -timeout_exitcode=1 -timeout=10 -rss_limit_mb=2048 -max_len=8192
      -artifact_prefix="$artifacts/$name-" -print_final_stats=1)
if [ -f "$dict" ]; then
        opts+=(-dict="$dict")
fi

seeds=("$corpus"/*)
if [ ! -f "${seeds[0]}" ]; then
        echo "FAIL: no seed corpus in $corpus"
        exit 1
fi
echo "== $name: ${#seeds[@]} seed inputs"
rc=0
"$fuzzer" "${opts[@]}" "${seeds[@]}" >"$artifacts/$name-seeds.log" 2>&1 || rc=$?
grep -v '^Running: \|^Executed ' "$artifacts/$name-seeds.log" || true
if [ $rc != 0 ]; then
        echo "FAIL: $name failed on its seed corpus (exit $rc, see above)"
        exit 1
fi

echo "== $name: fuzzing for ${seconds}s"
rc=0
"$fuzzer" "${opts[@]}" -max_total_time="$seconds" "$new_corpus" "$corpus" || rc=$?
if [ $rc != 0 ]; then
        echo "FAIL: $name found a problem (exit $rc); the input is in $artifacts/"
        ls -l "$artifacts"/"$name"-* 2>/dev/null || true
        exit 1
fi
echo "ok: $name: seed corpus and ${seconds}s of fuzzing found nothing"
