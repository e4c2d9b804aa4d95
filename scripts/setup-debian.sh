#!/usr/bin/env bash
# Installs what keel needs to build, test and benchmark on Debian (bookworm or
# later) and derivatives. Safe to run again: when everything is present it does
# nothing, prints nothing and touches no network.
#
# Runs apt-get as root, or through sudo when not root and sudo exists.
# Set KEEL_SKIP_SETUP=1 to skip it (e.g. when you manage packages yourself).
set -euo pipefail

packages=(
  g++               # compiler (C++20)
  meson             # build system (brings python3)
  ninja-build       # meson's backend
  pkg-config        # how meson finds most dependencies
  cmake             # how meson finds doctest (dependency method 'cmake')
  librocksdb-dev    # the RocksDB backend
  doctest-dev       # tests
  libbenchmark-dev  # benchmarks
  liblmdb-dev       # benchmarks: the LMDB baseline (bench/bench.cpp)
  libcurl4-openssl-dev  # the etcd backend's transport (<keel/etcd.hpp>)
  nlohmann-json3-dev    # the etcd backend's JSON
  etcd-server           # /usr/bin/etcd for the etcd backend's tests (the package also enables a service on 2379)
  libpq-dev             # the PostgreSQL backend (<keel/postgres.hpp>)
  postgresql            # the server for the PostgreSQL backend's tests (/usr/lib/postgresql/*/bin; tests start their own)
  libzstd-dev           # memory backend value compression, compression::zstd (optional: meson -Dzstd=disabled)
  liblz4-dev            # memory backend value compression, compression::lz4 (optional: meson -Dlz4=disabled)
)
# CI's second compiler (.ci/run, step clang); not needed to build or use keel.
if [[ "${CI:-}" == true ]]; then
  packages+=(clang libclang-rt-14-dev)  # libclang-rt: sanitizer and libFuzzer runtimes (step fuzz)
fi
# The fault tests (.ci/run step faults, tests/faults): loop-mounted ext4
# images, small tmpfs mounts, network namespaces with iptables, strace fault
# injection; not needed to build or use keel.
if [[ "${CI:-}" == true || "${KEEL_FAULTS:-}" == 1 ]]; then
  packages+=(e2fsprogs mount util-linux iproute2 iptables strace)
fi
# Windows cross-build and wine run (.ci/run step windows, scripts/windows-test.sh,
# scripts/windows-check.sh); not needed to build or use keel on Linux.
if [[ "${CI:-}" == true || "${KEEL_WINDOWS:-}" == 1 ]]; then
  packages+=(g++-mingw-w64-x86-64-posix wine64)
fi

if [[ "${KEEL_SKIP_SETUP:-}" == 1 ]]; then
  exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-debian: not a Debian system (no dpkg-query/apt-get); install these yourself:" \
       "a C++20 compiler, meson, ninja, pkg-config, cmake, RocksDB, doctest, Google Benchmark," \
       "libcurl, nlohmann-json and etcd (for the etcd backend), libpq and the PostgreSQL server (for the PostgreSQL backend)" >&2
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if [[ "$(id -u)" == 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "setup-debian: missing packages: ${missing[*]}" >&2
  echo "setup-debian: not root and no sudo; as root run:" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "setup-debian: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get -qq update; then
  echo "setup-debian: apt-get update failed" >&2
  exit 1
fi
if ! "${as_root[@]}" apt-get -qq install -y --no-install-recommends "${missing[@]}" >/dev/null; then
  echo "setup-debian: apt-get install ${missing[*]} failed" >&2
  exit 1
fi
echo "setup-debian: installed ${missing[*]}" >&2
