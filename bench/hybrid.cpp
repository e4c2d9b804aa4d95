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

}  // namespace

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
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--keel-dir=", 0) == 0) {
      dir = a.substr(11);
      for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
      --argc;
      --i;
    }
  }
  base = dir / ("keel-hybrid-bench-" + std::to_string(::getpid()));
  fs::create_directories(base);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::error_code ec;
  fs::remove_all(base, ec);
  return 0;
}
