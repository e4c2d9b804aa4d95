// keel_watch_hybrid_bench: what watch costs on the hybrid store (issue 28;
// hybrid/watch.hpp), before and after the move to RocksDB. Google Benchmark;
// docs/benchmarks.md ("Issue 28: watch", "Hybrid") has the results.
//
//   build-bench/bench/keel_watch_hybrid_bench [--keel-dir=DIR] [benchmark flags]
//
// Run with --benchmark_enable_random_interleaving=true
// --benchmark_repetitions=N, so that each figure and its baseline are taken
// in interleaved rounds of the same run (the medians are the figures).
//
// Every store: a hybrid store (hybrid_options::path in a fresh directory
// below DIR, default the temporary directory; no automatic move), 10000
// 16-byte keys with 100-byte values put first; then, for tier "rocksdb",
// move_to_large(). Setup is not timed.
//   latency/put_to_next/TIER   p50 / p99 / max (counters p50_us, p99_us,
//                              max_us) from a put() returning to the watch's
//                              next() returning in a reader thread; each put
//                              waits for the previous change to be read
//                              (target: p99 under 1 ms). TIER: memory (the
//                              memory tier), rocksdb (a watch made after the
//                              move), carried (a watch made in the memory
//                              tier before the move, read after it: the
//                              hand-over's RocksDB watch)
//   put/no_watch/TIER/threads:N      puts over the 10000 keys by N threads,
//                                    no watch: the baseline
//   put/unread_watch/TIER/threads:N  the same with one watch made before the
//                                    loop and never read (target: at least
//                                    0.9x of the baseline's items_per_second)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <keel/hybrid.hpp>
#include <unistd.h>

#include "keys.hpp"
#include "watch_loops.hpp"

namespace fs = std::filesystem;

namespace {

constexpr unsigned kKeys = 10000;
using keel_bench::key;
using keel_bench::value;
using hybrid_watch = std::remove_cvref_t<decltype(*std::declval<keel::hybrid_store&>().watch())>;

fs::path base;  // a fresh directory below --keel-dir; removed at exit
int run_id = 0;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "keel_watch_hybrid_bench: %s\n", what.c_str());
  std::exit(1);
}

enum tier_arg : int { memory_tier = 0, rocksdb_tier = 1, carried = 2 };

// A hybrid store in a fresh directory with kKeys keys, in its memory tier.
keel::hybrid_store open_loaded() {
  const fs::path dir = base / ("run" + std::to_string(run_id++));
  keel::hybrid_options o;
  o.path = dir;
  o.spill_bytes = std::numeric_limits<std::size_t>::max();  // moves only when asked
  auto s = keel::hybrid_store::open(o);
  if (!s) die(s.error().message());
  for (unsigned i = 0; i < kKeys; ++i)
    if (auto p = s->put(key(i), value(i)); !p) die(p.error().message());
  return std::move(*s);
}

void move_to_rocksdb(keel::hybrid_store& s) {
  if (auto m = s.policy().move_to_large(); !m) die(m.error().message());
  if (s.policy().current_tier() != keel::HybridPolicy<>::tier::large) die("the move did not happen");
}

void close_and_remove(keel::hybrid_store& s) {
  const fs::path dir = s.policy().options_used().path;
  if (auto c = s.close(); !c) die(c.error().message());
  std::error_code ec;
  fs::remove_all(dir, ec);
}

// ---- latency: put() returned -> next() returned ---------------------------
void latency_put_to_next(benchmark::State& state) {
  const auto tier = static_cast<tier_arg>(state.range(0));
  auto s = open_loaded();
  std::optional<hybrid_watch> w;
  auto make_watch = [&] {
    auto made = s.watch();
    if (!made) die(made.error().message());
    w.emplace(std::move(*made));
  };
  if (tier == carried) make_watch();  // in the memory tier
  if (tier != memory_tier) move_to_rocksdb(s);
  if (tier == rocksdb_tier) make_watch();
  if (tier == memory_tier) make_watch();
  keel_bench::put_to_next_latency(state, *w, [&](std::size_t i) {
    if (auto p = s.put(key(static_cast<unsigned>(i % kKeys)), value(static_cast<unsigned>(i))); !p)
      die(p.error().message());
  });
  w.reset();
  close_and_remove(s);
}
BENCHMARK(latency_put_to_next)
    ->Name("latency/put_to_next")
    ->ArgName("tier")
    ->Arg(memory_tier)
    ->Arg(rocksdb_tier)
    ->Arg(carried)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- writer throughput, with and without an unread watch ------------------
std::unique_ptr<keel::hybrid_store> shared_store;
std::optional<hybrid_watch> unread;

template <bool Watch>
void put_throughput(benchmark::State& state) {
  if (state.thread_index() == 0) {
    shared_store = std::make_unique<keel::hybrid_store>(open_loaded());
    if (state.range(0) == rocksdb_tier) move_to_rocksdb(*shared_store);
    if (Watch) {
      auto w = shared_store->watch();
      if (!w) die(w.error().message());
      unread.emplace(std::move(*w));
    }
  }
  // Google Benchmark starts the threads' loops together, after the setup above.
  keel_bench::put_loop(state, *shared_store, kKeys);
  if (state.thread_index() == 0) {
    unread.reset();
    close_and_remove(*shared_store);
    shared_store.reset();
  }
}
BENCHMARK(put_throughput<false>)
    ->Name("put/no_watch")
    ->ArgName("tier")
    ->Arg(memory_tier)
    ->Arg(rocksdb_tier)
    ->Threads(1)
    ->Threads(4)
    ->UseRealTime()
    ->MinTime(1.0);
BENCHMARK(put_throughput<true>)
    ->Name("put/unread_watch")
    ->ArgName("tier")
    ->Arg(memory_tier)
    ->Arg(rocksdb_tier)
    ->Threads(1)
    ->Threads(4)
    ->UseRealTime()
    ->MinTime(1.0);

}  // namespace

int main(int argc, char** argv) {
  fs::path dir = fs::temp_directory_path();
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--keel-dir=", 0) != 0) continue;
    dir = a.substr(11);
    for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
    --argc;
    --i;
  }
  base = dir / ("keel-watch-hybrid-bench-" + std::to_string(::getpid()));
  fs::create_directories(base);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::error_code ec;
  fs::remove_all(base, ec);
  return 0;
}
