#!/usr/bin/env bash
# Builds and runs keel's quickstart example (examples/quickstart.cpp): opens a
# RocksDB store in a temporary directory, writes, reads, scans, takes a
# snapshot, closes, reopens at once and shows that the data persisted.
#
#   bash scripts/quickstart.sh
#
# Installs missing Debian packages first (scripts/setup-debian.sh), builds
# only the example in ./build, set up as scripts/test.sh sets it up
# (scripts/setup-build.sh: the same options every time, whatever build/ held
# before; the tests then reuse this build), and never downloads subprojects
# (--wrap-mode=nodownload).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build=build

# Runs a command quietly; shows its output only if it fails.
quiet() {
  local out rc=0
  out=$(mktemp)
  "$@" >"$out" 2>&1 || rc=$?
  if ((rc != 0)); then
    cat "$out" >&2
    echo "quickstart: failed ($rc): $*" >&2
  fi
  rm -f "$out"
  return "$rc"
}

bash scripts/setup-debian.sh

quiet bash scripts/setup-build.sh "$build"

if ! meson introspect --targets "$build" | grep -Eq '"name": *"quickstart"'; then
  echo "quickstart: the example is not configured because RocksDB was not found." >&2
  echo "quickstart: on Debian: apt-get install librocksdb-dev, then run this again." >&2
  exit 1
fi

quiet meson compile -C "$build" quickstart
"$build/examples/quickstart"
