#!/usr/bin/env bash
# Compile-only check of keel for Windows (mingw-w64, x86_64): every header
# under include/keel (public and detail), each alone in its own translation
# unit, with RocksDB's, nlohmann-json's, libcurl's and libpq's headers, -std=c++20 -Wall -Wextra -Wpedantic -Werror;
# then the examples and the consumer programs compiled to objects, which
# instantiates the templates (RocksPolicy, basic_store, any_store, dumps).
# No RocksDB library for Windows exists here, so nothing is linked: this
# proves the RocksDB backend compiles for Windows, not that it runs there.
# The last line printed is the count: "P passed, F failed" (one per file).
#
#   bash scripts/windows-check.sh
#
# Environment:
#   KEEL_WINDOWS_CXX  compiler (default x86_64-w64-mingw32-g++-posix)
#   KEEL_ROCKSDB_INCLUDE  directory holding RocksDB's rocksdb/ headers
#                     (default /usr/include); only rocksdb/ is made visible,
#                     never the rest of that directory (Linux headers).
#   KEEL_JSON_INCLUDE directory holding nlohmann/ (default /usr/include) and
#   KEEL_CURL_INCLUDE directory holding curl/ (default: Debian's multiarch
#                     /usr/include/x86_64-linux-gnu, else /usr/include), for
#                     the etcd headers; like rocksdb/, only those two
#                     directories are made visible (they are plain headers:
#                     nlohmann is header-only, curl's API is the same on
#                     Windows; nothing is linked).
#   KEEL_PQ_INCLUDE   directory holding libpq-fe.h (default /usr/include/postgresql),
#                     for the PostgreSQL headers; only libpq-fe.h,
#                     postgres_ext.h and pg_config_ext.h are made visible.
#   KEEL_JOBS         parallel compiles (default: number of CPUs)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

cxx="${KEEL_WINDOWS_CXX:-x86_64-w64-mingw32-g++-posix}"
rocksdb_include="${KEEL_ROCKSDB_INCLUDE:-/usr/include}"
json_include="${KEEL_JSON_INCLUDE:-/usr/include}"
if [[ -z "${KEEL_CURL_INCLUDE:-}" && -f /usr/include/x86_64-linux-gnu/curl/curl.h ]]; then
  curl_include=/usr/include/x86_64-linux-gnu
else
  curl_include="${KEEL_CURL_INCLUDE:-/usr/include}"
fi
jobs="${KEEL_JOBS:-$(nproc 2>/dev/null || echo 2)}"

if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "windows-check: $cxx not found (install g++-mingw-w64-x86-64-posix)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
if [[ ! -f "$rocksdb_include/rocksdb/db.h" ]]; then
  echo "windows-check: no $rocksdb_include/rocksdb/db.h (install librocksdb-dev)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

pq_include="${KEEL_PQ_INCLUDE:-/usr/include/postgresql}"
for need in "$json_include/nlohmann/json.hpp:nlohmann-json3-dev" "$curl_include/curl/curl.h:libcurl4-openssl-dev" \
    "$pq_include/libpq-fe.h:libpq-dev"; do
  if [[ ! -f "${need%%:*}" ]]; then
    echo "windows-check: no ${need%%:*} (install ${need##*:})" >&2
    echo "0 passed, 1 failed"
    exit 1
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/include"
ln -s "$(cd "$rocksdb_include/rocksdb" && pwd)" "$work/include/rocksdb"
ln -s "$(cd "$json_include/nlohmann" && pwd)" "$work/include/nlohmann"
ln -s "$(cd "$curl_include/curl" && pwd)" "$work/include/curl"
# libpq's three public headers only (the rest of that directory is the
# server's; libpq's API is the same on Windows).
for h in libpq-fe.h postgres_ext.h pg_config_ext.h; do ln -s "$pq_include/$h" "$work/include/$h"; done

mapfile -t headers < <(cd include && find keel -name '*.hpp' | LC_ALL=C sort)
mapfile -t sources < <(ls examples/*.cpp tests/consumers/common/*.cpp | LC_ALL=C sort)

check_one() {  # header (keel/...) or source file
  local h="$1" tu log mode
  if [[ "$h" == keel/* ]]; then
    tu="$work/$(echo "$h" | tr '/.' '__').cpp"
    printf '#include <%s>\n' "$h" >"$tu"
    # Headers: -fsyntax-only (no code generation; templates are parsed).
    mode=(-fsyntax-only)
  else
    tu="$h"
    # Programs: compiled to an object (templates instantiated), not linked;
    # with -Wa,-mbig-obj, as a Windows program that instantiates every
    # backend needs (over COFF's 32767 sections otherwise: docs/platforms.md).
    mode=(-c -Wa,-mbig-obj -o "$work/$(echo "$h" | tr '/.' '__').o")
  fi
  log="$work/$(echo "$h" | tr '/.' '__').log"
  if "$cxx" -std=c++20 -Wall -Wextra -Wpedantic -Werror "${mode[@]}" \
      -Iinclude -isystem "$work/include" "$tu" >"$log" 2>&1; then
    echo "ok   $h"
  else
    echo "FAIL $h"
    sed 's/^/     /' "$log" | head -n 40
  fi
}
export -f check_one
export cxx work

started=$SECONDS
out=$(printf '%s\n' "${headers[@]}" "${sources[@]}" | xargs -P "$jobs" -I{} bash -c 'check_one "$1"' _ {})
echo "$out"
passed=$(grep -c '^ok ' <<<"$out" || true)
failed=$(grep -c '^FAIL ' <<<"$out" || true)
total=$((${#headers[@]} + ${#sources[@]}))
echo "windows-check: ${#headers[@]} headers and ${#sources[@]} programs for x86_64-w64-mingw32 ($cxx) in $((SECONDS - started)) s"
echo "$passed passed, $failed failed"
((failed == 0 && passed == total))
