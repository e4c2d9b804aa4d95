#!/usr/bin/env bash
# Builds the libFuzzer target fuzz/differential_fuzz with clang
# (-fsanitize=fuzzer,address,undefined) and runs it for a bounded time over a
# copy of the seed corpus fuzz/corpus/. The last line printed is the count,
# "1 passed, 0 failed" or "0 passed, 1 failed", as scripts/test.sh prints
# (so .ci/run can add it up). A crash or mismatch leaves its input in
# $build/fuzz-artifacts/ (reproduce: $build/fuzz/differential_fuzz FILE).
#
# Environment:
#   KEEL_FUZZ_BUILD_DIR  build directory (default: build-fuzz)
#   KEEL_FUZZ_SECONDS    how long to fuzz (default: 60)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

build="${KEEL_FUZZ_BUILD_DIR:-build-fuzz}"
seconds="${KEEL_FUZZ_SECONDS:-60}"

fail() {
  echo "fuzz.sh: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

command -v clang++ >/dev/null || fail "clang++ not found (Debian: apt-get install clang libclang-rt-14-dev)"
if [[ -f "$build/meson-private/coredata.dat" ]]; then
  meson setup --reconfigure "$build" --wrap-mode=nodownload -Dfuzz=true -Dbench=false >/dev/null ||
    fail "meson setup --reconfigure $build failed"
else
  CC=clang CXX=clang++ meson setup "$build" --wrap-mode=nodownload -Dfuzz=true -Dbench=false >/dev/null ||
    fail "meson setup $build failed"
fi
meson compile -C "$build" fuzz/differential_fuzz || fail "building fuzz/differential_fuzz failed"

corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
cp fuzz/corpus/* "$corpus/"
mkdir -p "$build/fuzz-artifacts"
echo "fuzz.sh: fuzzing for ${seconds}s from $(ls fuzz/corpus | wc -l) seed inputs"
"$build/fuzz/differential_fuzz" -max_total_time="$seconds" -timeout=60 -rss_limit_mb=4096 \
  -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/" "$corpus"
status=$?
if ((status != 0)); then
  fail "differential_fuzz failed (exit status $status); inputs in $build/fuzz-artifacts/"
fi
echo "1 passed, 0 failed"
