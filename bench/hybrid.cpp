// keel_hybrid_bench: what the size of a memory store costs, to choose the
// hybrid store's default hybrid_options::spill_bytes (issue 13), and what the
// move to RocksDB costs. Google Benchmark; docs/hybrid.md has the results.
//
//   build-bench/bench/keel_hybrid_bench [--keel-dir=DIR] [benchmark flags]
//
// Data: 120-byte records (a 20-byte key "key%017llu", 100 pseudo-random value
// bytes) until the memory store holds SIZE MiB (memory_bytes(): keys, values,
// per-entry headers), SIZE = 16, 64, 256. Setup is not timed.
//   fold/SIZE          a persisted memory store: one put, then flush(), which
//                      folds the log into a new snapshot file written whole
//                      (what every background fold costs at that size)
//   open/SIZE          opening that persisted memory store (the snapshot
//                      read back into memory)
//   move/SIZE          a hybrid store in its memory tier: move_to_large(),
//                      the whole online move (copy, catch-up, WAL sync, TIER)
//   open_rocksdb/SIZE  opening the hybrid store after the move (RocksDB tier)
// Counters: bytes = memory_bytes() at that size, entries, and for fold the
// snapshot file's size.
//   scan1000/memory    a memory store of 100000 such records: a prefix scan
//                      of 1000 of them (one of the 100 prefixes, at random)
//   scan1000/hybrid    the same on a hybrid store in its memory tier (its
//                      cursor is walked by runs, as the memory store's is)
//
// Instruction counts of the same scans, for callgrind (noise-free):
//
//   valgrind --tool=callgrind --callgrind-out-file=cg.out --toggle-collect='*m_*' build-bench/bench/keel_hybrid_bench --keel-callgrind
//   callgrind_annotate --inclusive=yes --threshold=100 cg.out | grep '::m_'
//
// m_memory_scan / m_hybrid_scan: 20 prefix scans of 1000 entries each over
// 10000 records, on a memory store and on a hybrid store in its memory tier,
// back to back; --keel-callgrind runs only these and no benchmark.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <keel/hybrid.hpp>
#include <keel/memory.hpp>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

fs::path base;  // a fresh directory below --keel-dir; removed at exit
int run_id = 0;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "keel_hybrid_bench: %s\n", what.c_str());
  std::exit(1);
}

const std::string& value_bytes() {
  static const std::string v = [] {
    std::string s(100, '\0');
    std::mt19937_64 rng(42);
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  }();
  return v;
}

fs::path fresh_dir() {
  const fs::path d = base / ("run" + std::to_string(run_id++));
  fs::create_directories(d);
  return d;
}

// Puts records into `put` until bytes() reaches `target`; returns the count.
template <class Put, class Bytes>
unsigned long long fill(Put&& put, Bytes&& bytes, std::size_t target) {
  char key[24];
  unsigned long long n = 0;
  while (true) {
    for (int i = 0; i < 10000; ++i, ++n) {
      std::snprintf(key, sizeof key, "key%017llu", n);
      if (auto r = put(key); !r) die(r.error().message());
    }
    if (bytes() >= target) return n;
  }
}

std::size_t mib(const benchmark::State& state) { return static_cast<std::size_t>(state.range(0)) << 20; }

void set_size_counters(benchmark::State& state, std::size_t bytes, unsigned long long entries) {
  state.counters["bytes"] = static_cast<double>(bytes);
  state.counters["entries"] = static_cast<double>(entries);
}

// Times open_store() (which returns a result of a store); each close is
// left out of the timing.
template <class Open>
void time_opens(benchmark::State& state, Open&& open_store) {
  for (auto _ : state) {
    auto s = open_store();
    if (!s) die(s.error().message());
    state.PauseTiming();
    if (auto c = s->close(); !c) die(c.error().message());
    state.ResumeTiming();
  }
}

// A persisted memory store of SIZE MiB, closed (folded): its file.
fs::path persisted_memory_store(std::size_t target, unsigned long long& entries, std::size_t& bytes) {
  const fs::path file = fresh_dir() / "store";
  auto s = keel::memory_store::open({.persist_path = file});
  if (!s) die(s.error().message());
  entries = fill([&](const char* k) { return s->put(k, value_bytes()); }, [&] { return s->policy().memory_bytes(); },
                 target);
  bytes = s->policy().memory_bytes();
  if (auto c = s->close(); !c) die(c.error().message());
  return file;
}

void BM_fold(benchmark::State& state) {
  unsigned long long entries = 0;
  std::size_t bytes = 0;
  const fs::path file = persisted_memory_store(mib(state), entries, bytes);
  auto s = keel::memory_store::open({.persist_path = file});
  if (!s) die(s.error().message());
  unsigned long long extra = 0;
  for (auto _ : state) {
    if (auto r = s->put("zz" + std::to_string(extra++), value_bytes()); !r) die(r.error().message());
    if (auto f = s->flush(); !f) die(f.error().message());
  }
  set_size_counters(state, bytes, entries);
  state.counters["file_bytes"] = static_cast<double>(fs::file_size(file));
  if (auto c = s->close(); !c) die(c.error().message());
  fs::remove_all(file.parent_path());
}

void BM_open(benchmark::State& state) {
  unsigned long long entries = 0;
  std::size_t bytes = 0;
  const fs::path file = persisted_memory_store(mib(state), entries, bytes);
  time_opens(state, [&] { return keel::memory_store::open({.persist_path = file}); });
  set_size_counters(state, bytes, entries);
  fs::remove_all(file.parent_path());
}

// A hybrid store of SIZE MiB in its memory tier (it never moves by itself).
keel::hybrid_store filled_hybrid(const fs::path& dir, std::size_t target, unsigned long long& entries,
                                 std::size_t& bytes) {
  auto s = keel::hybrid_store::open({.path = dir, .spill_bytes = std::numeric_limits<std::size_t>::max()});
  if (!s) die(s.error().message());
  std::size_t held = 0;
  entries = fill([&](const char* k) { return s->put(k, value_bytes()); },
                 [&] {
                   auto st = s->stats();
                   if (!st) die(st.error().message());
                   return held = static_cast<std::size_t>(st->size_bytes);
                 },
                 target);
  bytes = held;
  return std::move(*s);
}

void BM_move(benchmark::State& state) {
  unsigned long long entries = 0;
  std::size_t bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const fs::path dir = fresh_dir();
    {
      keel::hybrid_store s = filled_hybrid(dir, mib(state), entries, bytes);
      state.ResumeTiming();
      if (auto m = s.policy().move_to_large(); !m) die(m.error().message());
      state.PauseTiming();
      if (s.policy().current_tier() != keel::HybridPolicy<>::tier::large) die("the move did not happen");
      if (auto c = s.close(); !c) die(c.error().message());
    }
    fs::remove_all(dir);
    state.ResumeTiming();
  }
  set_size_counters(state, bytes, entries);
}

void BM_open_rocksdb(benchmark::State& state) {
  unsigned long long entries = 0;
  std::size_t bytes = 0;
  const fs::path dir = fresh_dir();
  {
    auto s = filled_hybrid(dir, mib(state), entries, bytes);
    if (auto m = s.policy().move_to_large(); !m) die(m.error().message());
    if (auto c = s.close(); !c) die(c.error().message());
  }
  time_opens(state, [&] { return keel::hybrid_store::open({.path = dir}); });
  set_size_counters(state, bytes, entries);
  fs::remove_all(dir);
}

// The scans: records "key%017llu" 0..n-1; a prefix of 14 digits holds 1000.
std::string scan_prefix(unsigned long long block) {
  char p[24];
  std::snprintf(p, sizeof p, "key%014llu", block);
  return p;
}
template <class Store>
void fill_for_scans(Store& s, unsigned long long n) {
  char key[24];
  for (unsigned long long i = 0; i < n; ++i) {
    std::snprintf(key, sizeof key, "key%017llu", i);
    if (auto r = s.put(key, value_bytes()); !r) die(r.error().message());
  }
}
template <class Store>
std::size_t scan_one(const Store& s, const std::string& prefix) {
  std::size_t seen = 0;
  for (const auto& e : s.scan(keel::key_range::prefix(prefix))) seen += !e.key.empty() && !e.value.empty();
  return seen;
}
keel::memory_store memory_for_scans(unsigned long long n) {
  auto s = keel::memory_store::open({});
  if (!s) die(s.error().message());
  fill_for_scans(*s, n);
  return std::move(*s);
}
keel::hybrid_store hybrid_for_scans(const fs::path& dir, unsigned long long n) {
  auto s = keel::hybrid_store::open({.path = dir, .spill_bytes = std::numeric_limits<std::size_t>::max()});
  if (!s) die(s.error().message());
  fill_for_scans(*s, n);
  if (s->policy().current_tier() != keel::HybridPolicy<>::tier::small) die("the hybrid store left its memory tier");
  return std::move(*s);
}
template <class Store>
void time_scans(benchmark::State& state, const Store& s, unsigned long long n) {
  std::mt19937_64 rng(5);
  const unsigned long long blocks = n / 1000;
  std::vector<std::string> prefixes;
  for (unsigned long long b = 0; b < blocks; ++b) prefixes.push_back(scan_prefix(b));
  std::size_t seen = 0;
  for (auto _ : state) seen += scan_one(s, prefixes[rng() % blocks]);
  if (seen != static_cast<std::size_t>(state.iterations()) * 1000) state.SkipWithError("scan1000 did not see 1000 keys");
  state.SetItemsProcessed(state.iterations() * 1000);
}
constexpr unsigned long long kScanRecords = 100000;
void BM_scan1000_memory(benchmark::State& state) {
  auto s = memory_for_scans(kScanRecords);
  time_scans(state, s, kScanRecords);
}
void BM_scan1000_hybrid(benchmark::State& state) {
  const fs::path dir = fresh_dir();
  {
    auto s = hybrid_for_scans(dir, kScanRecords);
    time_scans(state, s, kScanRecords);
    if (auto c = s.close(); !c) die(c.error().message());
  }
  fs::remove_all(dir);
}

// The callgrind pair (see the top of this file).
volatile std::size_t sink;
template <class Store>
[[gnu::noinline]] void scan_loop(const Store& s) {
  for (unsigned long long b = 0; b < 20; ++b) sink = sink + scan_one(s, scan_prefix(b % 10));
}
[[gnu::noinline]] void m_memory_scan(const keel::memory_store& s) { sink = sink + 1; scan_loop(s); }
[[gnu::noinline]] void m_hybrid_scan(const keel::hybrid_store& s) { sink = sink + 2; scan_loop(s); }
int run_callgrind_pair() {
  const fs::path dir = fresh_dir();
  {
    auto memory = memory_for_scans(10000);
    auto hybrid = hybrid_for_scans(dir, 10000);
    m_memory_scan(memory);
    m_hybrid_scan(hybrid);
    if (sink != 3 + 20 * 2 * 1000) die("the scans did not see 1000 keys each");
    if (auto c = hybrid.close(); !c) die(c.error().message());
  }
  fs::remove_all(dir);
  return 0;
}

}  // namespace

BENCHMARK(BM_scan1000_memory)->Name("scan1000/memory")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_scan1000_hybrid)->Name("scan1000/hybrid")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_fold)->Name("fold")->Arg(16)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();
BENCHMARK(BM_open)->Name("open")->Arg(16)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK(BM_move)->Name("move")->Arg(16)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_open_rocksdb)
    ->Name("open_rocksdb")
    ->Arg(16)
    ->Arg(64)
    ->Arg(256)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3)
    ->UseRealTime();

int main(int argc, char** argv) {
  fs::path dir = fs::temp_directory_path();
  bool callgrind_pair = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool ours = a.rfind("--keel-dir=", 0) == 0 || a == "--keel-callgrind";
    if (a.rfind("--keel-dir=", 0) == 0) dir = a.substr(11);
    if (a == "--keel-callgrind") callgrind_pair = true;
    if (ours) {
      for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
      --argc;
      --i;
    }
  }
  base = dir / ("keel-hybrid-bench-" + std::to_string(::getpid()));
  fs::create_directories(base);
  if (callgrind_pair) {
    const int rc = run_callgrind_pair();
    std::error_code ec;
    fs::remove_all(base, ec);
    return rc;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::error_code ec;
  fs::remove_all(base, ec);
  return 0;
}
