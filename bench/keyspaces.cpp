// Keyspaces (issue 27). RocksDB: what a column family per keyspace costs.
//   - opening a store with 1 keyspace ("" alone) against one with 100
//     (each holding a few keys, flushed): the median of 9 opens each;
//   - drop_keyspace of a keyspace of 1M keys (16-byte keys, 100-byte
//     values, flushed to SST files): one DropColumnFamily, not a scan.
// Memory (issue 27):
//   - drop_keyspace of a keyspace of 1M keys (same keys and values): one
//     publish, the keyspace's tree freed once no reader holds it (here, in
//     the drop's own reclaim: the time includes freeing it);
//   - snapshot() (taken and released) on a store with 1 keyspace ("") against
//     one with 1000 (10 keys each): the median of 9 runs of 100000.
// Wall-clock timings (a shared machine is noisy: compare runs made together).
//   build/bench/keel_keyspaces_bench [dir] [keys]
#include <keel/memory.hpp>
#include <keel/rocksdb.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

double ms_since(clock_type::time_point start) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - start).count();
}

keel::rocks_store open_or_die(const fs::path& p) {
  auto s = keel::rocks_store::open({.path = p});
  if (!s) {
    std::fprintf(stderr, "open %s: %s\n", p.c_str(), s.error().message().c_str());
    std::exit(1);
  }
  return std::move(*s);
}

// A store at p with `n` keyspaces besides "" (10 keys each), closed.
void make_store(const fs::path& p, int n) {
  auto s = open_or_die(p);
  for (int k = 0; k < 10; ++k) (void)s.put("key" + std::to_string(k), "value");
  for (int i = 0; i < n; ++i) {
    auto ks = s.keyspace("keyspace" + std::to_string(i));
    for (int k = 0; k < 10; ++k) (void)ks->put("key" + std::to_string(k), "value");
    (void)ks->compact();  // to SST files, as a store that has lived would be
  }
  (void)s.compact();
  (void)s.close();
}

double median_open_ms(const fs::path& p) {
  std::vector<double> times;
  for (int i = 0; i < 9; ++i) {
    const auto start = clock_type::now();
    auto s = open_or_die(p);
    (void)s.close();
    times.push_back(ms_since(start));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Median ns per snapshot() (taken and released) of `s`, over 9 runs of 100000.
double median_snapshot_ns(const keel::memory_store& s) {
  constexpr int n = 100000;
  std::vector<double> times;
  for (int r = 0; r < 9; ++r) {
    const auto start = clock_type::now();
    for (int i = 0; i < n; ++i) {
      auto snap = s.snapshot();
      if (!snap.get("key0")) std::exit(1);
    }
    times.push_back(ms_since(start) * 1e6 / n);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void memory_benchmarks(long keys) {
  auto one = keel::memory_store::open({});
  auto thousand = keel::memory_store::open({});
  if (!one || !thousand) std::exit(1);
  for (int k = 0; k < 10; ++k) {
    (void)one->put("key" + std::to_string(k), "value");
    (void)thousand->put("key" + std::to_string(k), "value");
  }
  for (int i = 0; i < 999; ++i) {
    auto ks = thousand->keyspace("keyspace" + std::to_string(i));
    for (int k = 0; k < 10; ++k) (void)ks->put("key" + std::to_string(k), "value");
  }
  const double ns_one = median_snapshot_ns(*one), ns_thousand = median_snapshot_ns(*thousand);
  std::printf("memory snapshot, 1 keyspace:      %8.1f ns (median of 9 x 100000)\n", ns_one);
  std::printf("memory snapshot, 1000 keyspaces:  %8.1f ns (median of 9 x 100000), %.2fx\n", ns_thousand,
              ns_thousand / ns_one);

  auto s = keel::memory_store::open({});
  if (!s) std::exit(1);
  auto big = s->keyspace("big");
  const std::string value(100, 'v');
  char key[24];  // "key" + 13 digits; room for any long (g++ -Wformat-truncation)
  for (long i = 0; i < keys;) {
    keel::write_batch b;
    for (int j = 0; j < 1000 && i < keys; ++j, ++i) {
      std::snprintf(key, sizeof key, "key%013ld", i);
      b.put(*big, key, value);
    }
    (void)s->write(b);
  }
  const auto start = clock_type::now();
  auto dropped = s->drop_keyspace("big");
  const double took = ms_since(start);
  std::printf("memory drop_keyspace of %ld keys: %8.2f ms (%s)\n", keys, took,
              dropped ? "ok" : dropped.error().message().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path dir = argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path() / "keel-keyspaces-bench";
  const long keys = argc > 2 ? std::atol(argv[2]) : 1000000;
  fs::remove_all(dir);
  fs::create_directories(dir);

  make_store(dir / "one", 0);
  make_store(dir / "hundred", 100);
  const double one = median_open_ms(dir / "one"), hundred = median_open_ms(dir / "hundred");
  std::printf("open+close, 1 keyspace:    %8.2f ms (median of 9)\n", one);
  std::printf("open+close, 101 keyspaces: %8.2f ms (median of 9), %.1fx\n", hundred, hundred / one);

  {
    auto s = open_or_die(dir / "drop");
    auto big = s.keyspace("big");
    const std::string value(100, 'v');
    char key[24];  // "key" + 13 digits; room for any long (g++ -Wformat-truncation)
    for (long i = 0; i < keys;) {
      keel::write_batch b;
      for (int j = 0; j < 1000 && i < keys; ++j, ++i) {
        std::snprintf(key, sizeof key, "key%013ld", i);
        b.put(*big, key, value);
      }
      (void)s.write(b);
    }
    (void)big->compact();
    const auto start = clock_type::now();
    auto dropped = s.drop_keyspace("big");
    const double took = ms_since(start);
    std::printf("drop_keyspace of %ld keys:  %8.2f ms (%s)\n", keys, took,
                dropped ? "ok" : dropped.error().message().c_str());
    (void)s.close();
  }
  memory_benchmarks(keys);
  fs::remove_all(dir);
  return 0;
}
