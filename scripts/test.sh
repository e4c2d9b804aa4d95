#!/usr/bin/env bash
# Builds keel and runs its test suite; the last line printed is the count:
#
#   P passed, F failed[, S skipped]
#
# summed over the doctest summaries of every test binary that ran; a skipped
# case could not run on this machine and printed "keel-skip: <reason>"
# (listed, with the reasons, above the count). The exit
# status is non-zero when a step fails, `meson test` fails, F > 0 or no test
# case was counted at all.
#
#   bash scripts/test.sh                       # everything
#   bash scripts/test.sh keel_tests            # extra args go to `meson test`
#   bash scripts/test.sh --test-args='-tc=*close*'
#
# The long loops run shortened (the 1000 RocksDB open/close cycles of the
# reopen shard: 100, KEEL_TEST_CYCLES) unless KEEL_TEST_FULL=1, which .ci/run
# sets: CI runs them in full.
#
# Environment (for CI variants such as sanitizer runs):
#   KEEL_BUILD_DIR   build directory (default: build)
#   KEEL_SETUP_ARGS  extra `meson setup` arguments, split on spaces, after the
#                    defaults of scripts/setup-build.sh ("-Ddebug=false
#                    -Doptimization=1 -Dtests=true -Dexamples=true
#                    -Dbench=false": a test build, no debug info and -O1
#                    compile the template-heavy tests in about a third of the
#                    time -O2 -g takes; pass e.g. "-Ddebug=true
#                    -Doptimization=2" to get those back), e.g.
#                    "-Db_sanitize=address,undefined -Db_lundef=false" or
#                    "-Dbench=true". The build directory is set up with
#                    exactly these (scripts/setup-build.sh: a directory set up
#                    with other options is set up anew), so give each variant
#                    a build directory of its own.
#   KEEL_TEST_FULL=1 run the long loops in full (KEEL_TEST_CYCLES=1000)
#   KEEL_SKIP_SETUP=1  do not run scripts/setup-debian.sh
#   KEEL_JOBS        parallel compile jobs (default: ninja's, cores + 2)
#   KEEL_COMPILE_TARGETS  build only these targets (space-separated, e.g.
#                    "tests/keel_tests tests/persist_helper") and run the
#                    tests without rebuilding the rest (meson test --no-rebuild)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

build="${KEEL_BUILD_DIR:-build}"
read -r -a setup_args <<<"${KEEL_SETUP_ARGS:-}"
if [[ "${KEEL_TEST_FULL:-}" != 1 ]]; then
  export KEEL_TEST_CYCLES="${KEEL_TEST_CYCLES:-100}"
fi

# Prints the count line last and exits.
finish() {  # passed failed skipped status
  local line="$1 passed, $2 failed"
  if (($3 > 0)); then line+=", $3 skipped"; fi
  echo "$line"
  exit "$4"
}
# A step failed before any test could run: count it as one failure.
abort() {
  echo "test.sh: $*" >&2
  finish 0 1 0 1
}

bash scripts/setup-debian.sh || abort "installing the build dependencies failed (scripts/setup-debian.sh)"

bash scripts/setup-build.sh "$build" "${setup_args[@]}" || abort "meson setup $build failed (scripts/setup-build.sh)"

read -r -a targets <<<"${KEEL_COMPILE_TARGETS:-}"
meson compile -C "$build" ${KEEL_JOBS:+-j "$KEEL_JOBS"} "${targets[@]}" || abort "meson compile -C $build failed"
test_args=()
if ((${#targets[@]} > 0)); then test_args=(--no-rebuild); fi

log="$build/meson-logs/testlog.txt"
rm -f "$log"  # never count a previous run's results
meson_status=0
meson test -C "$build" --print-errorlogs "${test_args[@]}" "$@" || meson_status=$?

if [[ ! -f "$log" ]]; then
  abort "meson test wrote no $log (exit status $meson_status): nothing was counted"
fi

# doctest's summary, one per binary, e.g.
#   [doctest] test cases:  42 |  41 passed | 1 failed | 4160 skipped
# Colour codes are stripped first. doctest's "skipped" counts the cases a
# shard's filter left to other shards, so it is not used: a skipped case is
# one that could not run here and said so with a line "keel-skip: <reason>"
# (tests/support/skip.hpp); doctest counted it as passed, so it moves from
# passed to skipped.
read -r binaries passed failed < <(
  sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g' -e 's/\r$//' "$log" |
    sed -nE 's/.*\[doctest\] test cases: *[0-9]+ *\| *([0-9]+) passed *\| *([0-9]+) failed.*/\1 \2/p' |
    awk '{ n++; p += $1; f += $2 } END { printf "%d %d %d\n", n, p, f }'
)
skipped=$(grep -c '^keel-skip: ' "$log" || true)
if ((skipped > 0)); then
  echo "skipped (could not run here; each says why):"
  grep '^keel-skip: ' "$log" | sed 's/^keel-skip: /  /' | sort | uniq -c
  passed=$((passed > skipped ? passed - skipped : 0))
fi

status=0
if ((binaries == 0 || passed + failed == 0)); then
  echo "test.sh: no doctest test case was counted in $log (did the test binaries run? meson test exit status $meson_status)" >&2
  finish "$passed" $((failed > 0 ? failed : 1)) "$skipped" 1
fi
if ((meson_status != 0)); then
  status=1
  if ((failed == 0)); then
    # A binary crashed, timed out or failed outside doctest's count.
    echo "test.sh: meson test failed (exit status $meson_status) although doctest reported no failed test case; counting it as 1 failure" >&2
    failed=1
  fi
fi
if ((failed > 0)); then status=1; fi
finish "$passed" "$failed" "$skipped" "$status"
