#!/usr/bin/env bash
# Cross-builds keel's memory-only test suite for Windows (mingw-w64,
# cross/mingw-w64.txt, -Drocksdb=disabled) in build-mingw/ and runs it under
# wine (the cross file's exe_wrapper), through scripts/test.sh: the last line
# printed is the count "P passed, F failed[, S skipped]".
#
#   bash scripts/windows-test.sh                      # extra args go to meson test
#
# Environment: KEEL_BUILD_DIR (default build-mingw), KEEL_SKIP_SETUP as for
# scripts/test.sh. Wine's prefix lives in <build dir>/wineprefix (created on
# the first run, ~10-20 s) and WINEDEBUG=-all keeps wine's own messages out
# of the log, unless WINEPREFIX / WINEDEBUG are already set.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

build="${KEEL_BUILD_DIR:-build-mingw}"
mkdir -p "$build"
export WINEPREFIX="${WINEPREFIX:-$(cd "$build" && pwd)/wineprefix}"
export WINEDEBUG="${WINEDEBUG:--all}"
export KEEL_WINDOWS=1  # scripts/setup-debian.sh: also mingw-w64 and wine64

KEEL_BUILD_DIR="$build" \
  KEEL_SETUP_ARGS="--cross-file cross/mingw-w64.txt -Drocksdb=disabled -Dbench=false -Dwerror=true ${KEEL_SETUP_ARGS:-}" \
  exec bash scripts/test.sh "$@"
