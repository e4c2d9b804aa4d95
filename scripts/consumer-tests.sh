#!/usr/bin/env bash
# Builds and runs the consumer tests (tests/consumers/): projects that use keel
# the ways docs/packaging.md ("Using keel in your project") documents, each from a
# fresh temporary directory. The last line printed is the count:
#
#   P passed, F failed
#
#   meson_subproject  tests/consumers/meson_subproject: a Meson project with
#                     subprojects/keel.wrap (docs/packaging.md's example, checked to be
#                     the same) and dependency('keel') / dependency('keel-memory');
#                     subprojects/keel is a link to this checkout,
#                     --wrap-mode=nodownload.
#   install           docs/packaging.md's install commands with --prefix=<tmp>:
#                     `meson setup BUILD --prefix P -Dtests=false` and
#                     `meson install -C BUILD`: every header, keel.pc,
#                     keel-memory.pc, keelConfig.cmake and
#                     keelConfigVersion.cmake land in the prefix, and no test,
#                     example or benchmark was built (the time is printed).
#   pkg_config        programs built against that prefix with
#                     `pkg-config --cflags --libs keel` (and keel-memory).
#   cmake             tests/consumers/cmake: find_package(keel 0.1) against that
#                     prefix, keel::keel and keel::memory; find_package(keel 99)
#                     must be refused by the version file.
#   memory_only       <keel/memory.hpp> compiles with no RocksDB header
#                     reachable and links without RocksDB.
#   compile_errors    tests/consumers/compile_fail: a run_transaction function
#                     returning void fails with keel's static_assert saying
#                     what it must return, as the only error; the same program
#                     returning keel::result<void> compiles.
#
# The programs are tests/consumers/common/app.cpp (<keel/keel.hpp>: RocksDB
# and memory) and memory_app.cpp (<keel/memory.hpp> only), compiled with
# -Wall -Wextra -Wpedantic -Werror. keel without RocksDB (meson option
# rocksdb=disabled) builds app.cpp nowhere: only the memory checks run.
#
# Environment: CXX (default c++) is the compiler for every check;
# KEEL_CONSUMER_ROCKSDB=disabled builds keel without RocksDB (meson option
# rocksdb) in the subproject and install checks, to test that packaging;
# KEEL_CONSUMER_KEEP=1 keeps the temporary directory; KEEL_SKIP_SETUP=1 skips
# scripts/setup-debian.sh. At most two compile jobs run at once.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
repo=$(pwd -P)
consumers="$repo/tests/consumers"
export CXX="${CXX:-c++}"
jobs=2

passed=0
failed=0
finish() {
  echo "$passed passed, $failed failed"
  if ((failed > 0)); then exit 1; fi
  exit 0
}

if ! bash scripts/setup-debian.sh; then
  echo "consumer-tests: installing the build dependencies failed (scripts/setup-debian.sh)" >&2
  failed=1
  finish
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-consumers-XXXXXX") || { failed=1; finish; }
if [[ "${KEEL_CONSUMER_KEEP:-}" == 1 ]]; then
  echo "consumer-tests: keeping $tmp"
else
  trap 'rm -rf "$tmp"' EXIT
fi
prefix="$tmp/prefix"

# Runs one check (a function) with its output in $tmp/NAME.log; prints the
# log's tail only when it fails.
check() {  # name function
  local name="$1" fn="$2" start rc=0
  start=$(date +%s)
  "$fn" >"$tmp/$name.log" 2>&1 || rc=$?
  local secs=$(($(date +%s) - start))
  if ((rc == 0)); then
    passed=$((passed + 1))
    echo "consumer-tests: PASS $name (${secs}s)"
  else
    failed=$((failed + 1))
    echo "consumer-tests: FAIL $name (${secs}s, exit status $rc); last lines of its log:"
    tail -n 60 "$tmp/$name.log" | sed 's/^/  | /'
  fi
}
# For the checks: say what is run, then run it.
run() {
  echo "+ $*"
  "$@"
}
fail() {
  echo "consumer-tests: $*" >&2
  return 1
}

strict=(-std=c++20 -Wall -Wextra -Wpedantic -Werror)
rocksdb_option="${KEEL_CONSUMER_ROCKSDB:-auto}"

# ---------------------------------------------------------------------------
with_rocksdb=0  # set by the install check: whether keel was built with RocksDB

# The ini lines of a wrap (comments and blank lines dropped).
wrap_lines() {
  sed -e 's/[[:space:]]*#.*//' -e '/^[[:space:]]*$/d'
}

meson_subproject() {
  local dir="$tmp/meson_subproject"
  # The wrap example of docs/packaging.md is the one tested here, as written.
  local doc_wrap doc="docs/packaging.md"
  doc_wrap=$(awk '/^```ini$/ { inb = 1; next } /^```/ { if (inb) exit } inb' "$repo/$doc" | wrap_lines)
  [[ -n "$doc_wrap" ]] || fail "no \`\`\`ini block (the wrap example) in $doc" || return 1
  if [[ "$doc_wrap" != "$(wrap_lines <"$consumers/meson_subproject/subprojects/keel.wrap")" ]]; then
    diff <(echo "$doc_wrap") <(wrap_lines <"$consumers/meson_subproject/subprojects/keel.wrap")
    fail "$doc's wrap example differs from tests/consumers/meson_subproject/subprojects/keel.wrap (above)"
    return 1
  fi
  echo "$doc's wrap example is subprojects/keel.wrap:"
  echo "$doc_wrap"
  # A pinned revision must exist (a tag or commit of this repository), and a
  # [wrap-file] without a download must name the directory the page tells you
  # to fill (subprojects/keel), which is what this check then does.
  local revision
  revision=$(sed -n 's/^revision *= *//p' <<<"$doc_wrap")
  if [[ -n "$revision" ]]; then
    git -C "$repo" rev-parse --verify --quiet "$revision^{commit}" >/dev/null ||
      fail "the wrap example pins revision $revision, which is no tag or commit of keel" || return 1
  elif ! grep -q '^source_url' <<<"$doc_wrap"; then
    grep -qx 'directory = keel' <<<"$doc_wrap" ||
      fail "the wrap example downloads nothing and names no directory = keel" || return 1
  fi
  run cp -R "$consumers/meson_subproject" "$dir" || return 1
  run cp "$consumers/common/app.cpp" "$consumers/common/memory_app.cpp" "$dir/" || return 1
  # keel's source at subprojects/keel, as the wrap expects: this checkout.
  run ln -s "$repo" "$dir/subprojects/keel" || return 1
  # --force-fallback-for: the subproject even if a keel.pc is installed.
  run meson setup "$dir/build" "$dir" --wrap-mode=nodownload --force-fallback-for=keel,keel-memory \
    -Dkeel:rocksdb="$rocksdb_option" || return 1
  grep -q "Dependency keel from subproject subprojects/keel found: YES\|Dependency keel found: YES .*(overridden)" \
    "$dir/build/meson-logs/meson-log.txt" || fail "keel did not come from the subproject" || return 1
  run meson compile -C "$dir/build" -j "$jobs" || return 1
  run meson test -C "$dir/build" --print-errorlogs || return 1
}

install_keel() {
  local build="$tmp/keel-build" start secs
  # docs/packaging.md's commands ("Installed, with pkg-config"), with a temporary prefix.
  start=$(date +%s)
  run meson setup "$build" "$repo" --prefix "$prefix" -Dtests=false --wrap-mode=nodownload \
    -Drocksdb="$rocksdb_option" || return 1
  run meson install -C "$build" || return 1
  secs=$(($(date +%s) - start))
  echo "setup and install took ${secs}s"
  if grep -q '^has_rocksdb=true' "$build/meson-private/keel.pc"; then with_rocksdb=1; else with_rocksdb=0; fi
  echo "keel built with RocksDB: $with_rocksdb"
  # Nothing but the installed targets (the keel tool) was built.
  local built
  built=$(find "$build" -name '*.o' | sed "s|^$build/||" | grep -v '^tools/' || true)
  if [[ -n "$built" ]]; then
    echo "$built"
    fail "the install compiled more than the keel tool (above)"
    return 1
  fi
  if [[ -d "$build/tests" || -d "$build/examples" || -d "$build/bench" ]]; then
    fail "tests, examples or benchmarks were configured with -Dtests=false and the defaults"
    return 1
  fi
  run diff -r "$repo/include/keel" "$prefix/include/keel" || fail "installed headers differ from include/keel" || return 1
  local f
  for f in keel.pc keel-memory.pc keelConfig.cmake keelConfigVersion.cmake; do
    [[ -n "$(find "$prefix" -name "$f" -print -quit)" ]] || fail "$f was not installed" || return 1
  done
  find "$prefix" -type f | sed "s|^$prefix/||" | sort
}

pkg_config() {
  local dir="$tmp/pkg_config" pcdir
  pcdir=$(dirname "$(find "$prefix" -name keel.pc -print -quit)")
  [[ -d "$pcdir" ]] || fail "no keel.pc under $prefix (did the install check pass?)" || return 1
  local PKG_CONFIG_PATH="$pcdir"
  export PKG_CONFIG_PATH
  mkdir -p "$dir" || return 1
  local cflags libs mcflags mlibs
  cflags=$(pkg-config --cflags keel) && libs=$(pkg-config --libs keel) || return 1
  mcflags=$(pkg-config --cflags keel-memory) && mlibs=$(pkg-config --libs keel-memory) || return 1
  echo "keel:        $cflags $libs"
  echo "keel-memory: $mcflags $mlibs"
  [[ " $cflags " == *" -I$prefix/include "* ]] || fail "keel's Cflags do not name $prefix/include" || return 1
  [[ "$mcflags $mlibs" != *rocksdb* ]] || fail "keel-memory.pc mentions rocksdb" || return 1
  # shellcheck disable=SC2086 # the flags are word lists
  run "$CXX" "${strict[@]}" "$consumers/common/memory_app.cpp" $mcflags $mlibs -o "$dir/memory_app" || return 1
  run "$dir/memory_app" || return 1
  if ((with_rocksdb)); then
    [[ "$libs" == *-lrocksdb* ]] || fail "keel's Libs do not link RocksDB" || return 1
    # shellcheck disable=SC2086
    run "$CXX" "${strict[@]}" "$consumers/common/app.cpp" $cflags $libs -o "$dir/app" || return 1
    run "$dir/app" || return 1
  fi
}

cmake_package() {
  local dir="$tmp/cmake"
  run cp -R "$consumers/cmake" "$dir" || return 1
  run cp "$consumers/common/app.cpp" "$consumers/common/memory_app.cpp" "$dir/" || return 1
  if ((!with_rocksdb)); then
    # keel::keel is memory-only then and app.cpp needs RocksDB: build the rest.
    sed -i -e '/^add_executable(app /,/^target_link_libraries(app /d' -e 's/foreach(t app memory_app)/foreach(t memory_app)/' \
      "$dir/CMakeLists.txt" || return 1
  fi
  local generator=()
  if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
  run cmake -S "$dir" -B "$dir/build" "${generator[@]}" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=Debug || return 1
  run cmake --build "$dir/build" -j "$jobs" --verbose || return 1
  run "$dir/build/memory_app" || return 1
  if ((with_rocksdb)); then run "$dir/build/app" || return 1; fi
}

memory_only() {
  local dir="$tmp/memory_only"
  mkdir -p "$dir/include" "$dir/poison/rocksdb" || return 1
  run cp -R "$repo/include/keel" "$dir/include/" || return 1
  # An #error stub for every RocksDB header the compiler could find, and for
  # the usual ones anyway, in a directory searched before the system ones:
  # any RocksDB include, even behind __has_include, fails the build.
  local sysdirs d h
  sysdirs=$(echo | "$CXX" -std=c++20 -x c++ -E -v - 2>&1 >/dev/null |
    sed -n '/^#include <...> search starts here:/,/^End of search list./p' | sed -n 's/^ //p')
  for h in db.h env.h options.h status.h slice.h iterator.h snapshot.h write_batch.h version.h file_system.h; do
    echo "#error \"<keel/memory.hpp> reached a RocksDB header: rocksdb/$h\"" >"$dir/poison/rocksdb/$h"
  done
  for d in $sysdirs; do
    if [[ -d "$d/rocksdb" ]]; then
      (cd "$d" && find rocksdb -name '*.h') | while read -r h; do
        mkdir -p "$dir/poison/$(dirname "$h")"
        echo "#error \"<keel/memory.hpp> reached a RocksDB header: $h\"" >"$dir/poison/$h"
      done
    fi
  done
  echo "poisoned RocksDB headers: $(find "$dir/poison" -name '*.h' | wc -l)"
  run "$CXX" "${strict[@]}" -I"$dir/include" -I"$dir/poison" -MD -MF "$dir/memory_app.d" \
    -c "$consumers/common/memory_app.cpp" -o "$dir/memory_app.o" || return 1
  # Every header the compiler read: none of RocksDB's, keel's only from the copy.
  if grep -i rocksdb "$dir/memory_app.d"; then fail "a RocksDB header was included (above)"; return 1; fi
  if tr ' \\' '\n\n' <"$dir/memory_app.d" | grep '/keel/' | grep -v "^$dir/include/keel/"; then
    fail "keel headers read from outside the copy (above)"
    return 1
  fi
  echo "keel headers read: $(tr ' \\' '\n\n' <"$dir/memory_app.d" | grep -c "^$dir/include/keel/")," \
    "all from the copy; no RocksDB header"
  # The control: the same flags must reject <keel/rocksdb.hpp>.
  echo '#include <keel/rocksdb.hpp>' >"$dir/control.cpp"
  if "$CXX" "${strict[@]}" -I"$dir/include" -I"$dir/poison" -fsyntax-only "$dir/control.cpp" 2>"$dir/control.log"; then
    fail "control: <keel/rocksdb.hpp> compiled although RocksDB's headers are poisoned"
    return 1
  fi
  grep -m 1 'reached a RocksDB header' "$dir/control.log" || { cat "$dir/control.log"; fail "control failed for another reason"; return 1; }
  # Linked with threads only, never -lrocksdb.
  run "$CXX" "$dir/memory_app.o" -pthread -o "$dir/memory_app" || return 1
  if command -v ldd >/dev/null 2>&1 && ldd "$dir/memory_app" | grep -i rocksdb; then
    fail "memory_app is linked to RocksDB"
    return 1
  fi
  run "$dir/memory_app" || return 1
}

compile_errors() {
  local dir="$tmp/compile_errors" src="$consumers/compile_fail"
  mkdir -p "$dir" || return 1
  # The control: a function returning keel::result<void> compiles.
  run "$CXX" "${strict[@]}" -I"$repo/include" -fsyntax-only "$src/run_transaction_result.cpp" || return 1
  # A function returning void: keel's static_assert, and no other error.
  if "$CXX" "${strict[@]}" -I"$repo/include" -fsyntax-only "$src/run_transaction_void.cpp" >"$dir/void.log" 2>&1; then
    fail "run_transaction_void.cpp compiled; it must not"
    return 1
  fi
  cat "$dir/void.log"
  grep -q "the function given to run_transaction must return keel::result<T>" "$dir/void.log" ||
    fail "no static_assert message naming keel::result<T> in the errors (above)" || return 1
  local errors
  errors=$(grep -E -c '(^|: )error[: ]' "$dir/void.log" || true)
  echo "errors: $errors"
  ((errors == 1)) || fail "$errors errors; only keel's static_assert was expected (above)" || return 1
}

echo "consumer-tests: CXX=$CXX ($("$CXX" --version | head -n 1)), in $tmp"
check meson_subproject meson_subproject
check install install_keel
check pkg_config pkg_config
check cmake cmake_package
check memory_only memory_only
check compile_errors compile_errors
finish
