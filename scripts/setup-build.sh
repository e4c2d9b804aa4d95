#!/usr/bin/env bash
# Sets up a build directory for scripts/test.sh and scripts/quickstart.sh with
# exactly the options given, whatever the directory held before:
#
#   bash scripts/setup-build.sh DIR [extra meson setup arguments...]
#
# The options are the test build's defaults, then the extra arguments (a later
# -Dname=value wins over an earlier one):
#
#   --wrap-mode=nodownload -Ddebug=false -Doptimization=1
#   -Dtests=true -Dexamples=true -Dbench=false
#
# (no debug info and -O1: the template-heavy tests compile in about a third of
# the time -O2 -g takes; examples on, because `meson test` runs them; no
# benchmarks). Both scripts use these defaults, so the quickstart's build in
# build/ is reused by the tests.
#
# Why not plain `meson setup`: on a directory that is already set up, Meson
# keeps the options it was set up with and ignores new ones (exit status 0),
# and `meson setup --reconfigure` keeps every option not given again (a
# --prefix, a sanitizer, another CXX). So DIR/keel-setup.txt records the
# compiler and the arguments DIR was set up with: when they are the same, DIR
# is reconfigured (cheap; the build is reused); when they differ, or DIR was
# set up by hand, DIR is deleted and set up anew (said on stderr). A DIR that
# exists but is not a Meson build directory is left alone: an error.
#
# Exit status: Meson's, or 1.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

if (($# < 1)); then
  echo "usage: bash scripts/setup-build.sh DIR [meson setup arguments...]" >&2
  exit 1
fi
build="$1"
shift
args=(--wrap-mode=nodownload -Ddebug=false -Doptimization=1 -Dtests=true -Dexamples=true -Dbench=false "$@")
config="CC=${CC:-} CXX=${CXX:-} meson setup ${args[*]}"
stamp="$build/keel-setup.txt"

if [[ -f "$build/meson-private/coredata.dat" && -f "$stamp" && "$(cat "$stamp")" == "$config" ]]; then
  exec meson setup --reconfigure "$build" "${args[@]}"
fi

if [[ -e "$build" ]]; then
  if [[ ! -f "$build/meson-private/coredata.dat" ]]; then
    if [[ -d "$build" && -z "$(ls -A "$build")" ]]; then
      rmdir "$build" || exit 1
    else
      echo "setup-build: $build exists and is not a Meson build directory; move it away or choose another" \
           "(KEEL_BUILD_DIR)" >&2
      exit 1
    fi
  else
    if [[ -f "$stamp" ]]; then
      echo "setup-build: $build was set up with other options ($(cat "$stamp")); setting it up anew with: $config" >&2
    else
      echo "setup-build: $build was set up by hand (options unknown); setting it up anew with: $config" >&2
    fi
    rm -rf "$build" || exit 1
  fi
fi

meson setup "$build" "${args[@]}" || exit $?
printf '%s\n' "$config" >"$stamp"
