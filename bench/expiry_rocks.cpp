// Expiry on RocksDB (issue 29): the three targets, with their baselines in
// the same run.
//
//   ops [dir]      instruction counts, for callgrind (the m_* functions):
//                  10000 keys of 16 bytes, 100-byte values, flushed and
//                  compacted; 20000 gets or puts, or 20 prefix scans of
//                  1000 entries, per function (m_*_scan: the same pairs).
//     m_plain_get / m_plain_put: a store that never used ttl. Compile this
//       same file against main's headers (before expiry: no rocks_options::
//       clock there, so the ttl part is left out, see KEEL_BENCH_HAS_EXPIRY)
//       and compare the two binaries' counts (target: within 1.02x):
//         g++ -std=c++20 -O2 -DNDEBUG -I<main>/include bench/expiry_rocks.cpp -lrocksdb -o /tmp/exp_main
//         g++ -std=c++20 -O2 -DNDEBUG -Iinclude        bench/expiry_rocks.cpp -lrocksdb -o /tmp/exp_new
//         valgrind --tool=callgrind --toggle-collect='*m_*' /tmp/exp_{main,new} ops
//     m_half_get / m_none_get: a store where every other key has a ttl
//       (deadlines far ahead: all present) against one with the same keys
//       and values without ttl (target: within 1.10x).
//   reclaim [dir] [keys]  reclamation: `keys` (default 1M) keys with a ttl
//       (16-byte keys, 100 random bytes as values) written, flushed and compacted, the
//       (fake) clock moved past their deadlines, then one compact(). Bytes
//       are counted as RocksDB's rocksdb.total-sst-files-size of the default
//       column family before and after (the memtable is empty both times:
//       compact() flushes it). Target: at least 95% reclaimed.
#include <keel/rocksdb.hpp>
#include <rocksdb/db.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#if __has_include(<keel/rocksdb/expiry.hpp>)
#define KEEL_BENCH_HAS_EXPIRY 1
#else
#define KEEL_BENCH_HAS_EXPIRY 0
#endif

namespace fs = std::filesystem;

#include "keys.hpp"

namespace {

constexpr unsigned kKeys = 10000, kOps = 20000;
volatile std::size_t sink;

using keel_bench::key;
using keel_bench::value;
// 100 bytes that do not compress (so that SST sizes count the bytes).
std::string random_value(std::mt19937_64& rng) {
  std::string v(104, '\0');
  for (std::size_t i = 0; i < v.size(); i += 8) {
    const std::uint64_t r = rng();
    std::memcpy(v.data() + i, &r, 8);
  }
  v.resize(100);
  return v;
}

template <class S>
[[gnu::noinline]] void get_loop(S& s) {
  for (unsigned i = 0; i < kOps; ++i) sink = sink + (*s.get(key(i * 7919u % kKeys)))->size();
}
template <class S>
[[gnu::noinline]] void put_loop(S& s) {
  for (unsigned i = 0; i < kOps; ++i) (void)s.put(key(i * 7919u % kKeys), value(i));
}

constexpr unsigned kScans = 20;
template <class S>
[[gnu::noinline]] void scan_loop(S& s) {
  for (unsigned b = 0; b < kScans; ++b)
    for (const auto& e : s.scan(keel::key_range::prefix(key(b * 1000 % kKeys).substr(0, 12))))
      sink = sink + e.key.size() + e.value.size();
}

[[gnu::noinline]] void m_plain_get(keel::rocks_store& s) { sink = sink + 1; get_loop(s); }
[[gnu::noinline]] void m_plain_scan(keel::rocks_store& s) { sink = sink + 5; scan_loop(s); }
[[gnu::noinline]] void m_none_scan(keel::rocks_store& s) { sink = sink + 6; scan_loop(s); }
[[gnu::noinline]] void m_half_scan(keel::rocks_store& s) { sink = sink + 7; scan_loop(s); }
[[gnu::noinline]] void m_plain_put(keel::rocks_store& s) { sink = sink + 2; put_loop(s); }
[[gnu::noinline]] void m_none_get(keel::rocks_store& s) { sink = sink + 3; get_loop(s); }
[[gnu::noinline]] void m_half_get(keel::rocks_store& s) { sink = sink + 4; get_loop(s); }

[[noreturn]] void die(const char* what, const keel::error& e) {
  std::fprintf(stderr, "%s: %s\n", what, e.message().c_str());
  std::exit(1);
}

keel::rocks_options options_at(const fs::path& p) {
  keel::rocks_options o;
  o.path = p;
  return o;
}
keel::rocks_store open_or_die(const keel::rocks_options& o) {
  auto s = keel::rocks_store::open(o);
  if (!s) die("open", s.error());
  return std::move(*s);
}

// `s` filled with kKeys keys; every other one with a ttl of a day when
// `half_ttl` (a store with the same bytes of keys and values otherwise).
void fill(keel::rocks_store& s, bool half_ttl) {
  for (unsigned i = 0; i < kKeys; ++i) {
#if KEEL_BENCH_HAS_EXPIRY
    if (half_ttl && i % 2 == 0) {
      if (auto r = s.put(key(i), value(i), keel::put_options{.ttl = std::chrono::hours(24)}); !r) die("put", r.error());
      continue;
    }
#else
    (void)half_ttl;
#endif
    if (auto r = s.put(key(i), value(i)); !r) die("put", r.error());
  }
  if (auto r = s.compact(); !r) die("compact", r.error());
}

int ops(const fs::path& dir) {
  {
    auto plain = open_or_die(options_at(dir / "plain"));
    fill(plain, false);
    m_plain_get(plain);
    m_plain_scan(plain);
    m_plain_put(plain);
  }
#if KEEL_BENCH_HAS_EXPIRY
  auto none = open_or_die(options_at(dir / "none"));
  auto half = open_or_die(options_at(dir / "half"));
  fill(none, false);
  fill(half, true);
  m_none_get(none);
  m_half_get(half);
  m_none_scan(none);
  m_half_scan(half);
  std::printf("ops: m_plain_get m_plain_put m_none_get m_half_get done (read the counts with callgrind_annotate)\n");
#else
  std::printf("ops: m_plain_get m_plain_put done (headers without expiry)\n");
#endif
  return 0;
}

#if KEEL_BENCH_HAS_EXPIRY
std::uint64_t sst_bytes(keel::rocks_store& s) {
  auto v = s.policy().with_db([](rocksdb::DB& db) {
    std::uint64_t n = 0;
    db.GetIntProperty(db.DefaultColumnFamily(), "rocksdb.total-sst-files-size", &n);
    return n;
  });
  if (!v) die("stats", v.error());
  return *v;
}

int reclaim(const fs::path& dir, unsigned n) {
  auto now_ms = std::make_shared<std::atomic<std::int64_t>>(1'700'000'000'000);
  keel::rocks_options o = options_at(dir / "reclaim");
  o.clock = [now_ms] { return std::chrono::system_clock::time_point(std::chrono::milliseconds(now_ms->load())); };
  auto s = open_or_die(o);
  std::mt19937_64 rng(29);
  keel::write_batch b;
  for (unsigned i = 0; i < n; ++i) {
    b.put(key(i), random_value(rng), keel::put_options{.ttl = std::chrono::minutes(1)});
    if (b.size() == 1000 || i + 1 == n) {
      if (auto r = s.write(b); !r) die("write", r.error());
      b.clear();
    }
  }
  if (auto r = s.compact(); !r) die("compact", r.error());  // before the deadline: nothing dropped
  const std::uint64_t before = sst_bytes(s);
  now_ms->fetch_add(60'000);
  const auto start = std::chrono::steady_clock::now();
  if (auto r = s.compact(); !r) die("compact", r.error());
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const std::uint64_t after = sst_bytes(s);
  const double reclaimed = before ? 100.0 * static_cast<double>(before - after) / static_cast<double>(before) : 0;
  std::printf("reclaim: %u keys with a ttl, SST bytes %llu before, %llu after one compact() past the deadlines: "
              "%.2f%% reclaimed, compact() took %.0f ms\n",
              n, static_cast<unsigned long long>(before), static_cast<unsigned long long>(after), reclaimed, ms);
  return reclaimed >= 95.0 ? 0 : 2;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "ops";
  const fs::path dir = argc > 2 ? fs::path(argv[2]) : fs::temp_directory_path() / "keel-expiry-bench";
  fs::remove_all(dir);
  fs::create_directories(dir);
  int rc = 1;
  if (mode == "ops") rc = ops(dir);
#if KEEL_BENCH_HAS_EXPIRY
  else if (mode == "reclaim") rc = reclaim(dir, argc > 3 ? static_cast<unsigned>(std::strtoul(argv[3], nullptr, 10)) : 1000000);
#endif
  else std::fprintf(stderr, "usage: %s ops|reclaim [dir] [keys]\n", argv[0]);
  fs::remove_all(dir);
  return rc;
}
