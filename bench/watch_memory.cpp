// keel_watch_memory_bench: what watch costs on the memory store (issue 28).
// Google Benchmark; docs/benchmarks.md ("Issue 28: watch") has the results.
//
//   build-bench/bench/keel_watch_memory_bench [benchmark flags]
//
//   latency/put_to_next      p50 / p99 (counters p50_us, p99_us) from a
//                            put() returning to the watch's next() returning
//                            in a reader thread (target: p99 under 1 ms);
//                            each put waits for the previous change to be read
//   put/no_watch/threads:N   puts of 16-byte keys and 100-byte values (over
//                            10000 keys) by N threads, no watch: the baseline
//   put/unread_watch/...     the same with one watch that is never read (the
//                            history is full after 65536 changes: each commit
//                            then also evicts the oldest); target >= 0.9x
//
// Instruction counts (noise-free; target: a store that never watched pays at
// most 2% on put against the code before watch):
//
//   valgrind --tool=callgrind --callgrind-out-file=cg.out --toggle-collect='*m_*'
//       build-bench/bench/keel_watch_memory_bench --keel-callgrind   (one line)
//   callgrind_annotate --inclusive=yes --threshold=100 cg.out | grep '::m_'
//
// m_memory_put: 20000 puts on a memory store that never watched (the loop of
// bench/overhead.cpp); m_memory_put_watched: the same with one unread watch.
// Compiled with -DKEEL_WATCH_BENCH_BASELINE=1 against the headers of the
// commit before watch, this file builds the same m_memory_put alone, for the
// comparison (docs/benchmarks.md has the commands used).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <keel/memory.hpp>

#include "keys.hpp"
#include "watch_loops.hpp"

namespace {

constexpr unsigned kKeys = 10000, kOps = 20000;
volatile std::size_t sink;

using keel_bench::key;
using keel_bench::value;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "keel_watch_memory_bench: %s\n", what.c_str());
  std::exit(1);
}

keel::memory_store open_loaded(std::size_t history = 65536) {
  keel::memory_options o;
  o.watch_history = history;
  auto s = keel::memory_store::open(o);
  if (!s) die(s.error().message());
  for (unsigned i = 0; i < kKeys; ++i) (void)s->put(key(i), value(i));
  return std::move(*s);
}

[[gnu::noinline]] void put_loop(keel::memory_store& s) {
  for (unsigned i = 0; i < kOps; ++i) (void)s.put(key(i * 7919u % kKeys), value(i));
}
[[gnu::noinline]] void m_memory_put(keel::memory_store& s) {
  sink = sink + 12;
  put_loop(s);
}
#if !KEEL_WATCH_BENCH_BASELINE
[[gnu::noinline]] void m_memory_put_watched(keel::memory_store& s) {
  sink = sink + 13;
  put_loop(s);
}
#endif

int run_callgrind() {
  {
    auto s = open_loaded();
    put_loop(s);  // warm: the same tree shape as the measured loop
    m_memory_put(s);
  }
#if !KEEL_WATCH_BENCH_BASELINE
  {
    auto s = open_loaded();
    auto w = s.watch();
    if (!w) die(w.error().message());
    put_loop(s);
    m_memory_put_watched(s);
  }
#endif
  return 0;
}

#if !KEEL_WATCH_BENCH_BASELINE
// ---- latency: put() returned -> next() returned ---------------------------
void latency_put_to_next(benchmark::State& state) {
  auto s = open_loaded();
  auto w = s.watch();
  if (!w) die(w.error().message());
  keel_bench::put_to_next_latency(state, *w, [&](std::size_t i) {
    (void)s.put(key(static_cast<unsigned>(i % kKeys)), value(static_cast<unsigned>(i)));
  });
}
BENCHMARK(latency_put_to_next)->Name("latency/put_to_next")->Iterations(3)->UseRealTime()->Unit(benchmark::kMillisecond);

// ---- writer throughput, with and without an unread watch ------------------
std::unique_ptr<keel::memory_store> shared_store;
std::optional<keel::basic_watch<keel::MemoryPolicy>> unread;

template <bool Watch>
void put_throughput(benchmark::State& state) {
  if (state.thread_index() == 0) {
    shared_store = std::make_unique<keel::memory_store>(open_loaded(Watch ? static_cast<std::size_t>(state.range(0)) : 65536));
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
    shared_store.reset();
  }
}
BENCHMARK(put_throughput<false>)->Name("put/no_watch")->Threads(1)->Threads(4)->UseRealTime()->MinTime(1.0);
BENCHMARK(put_throughput<true>)->Name("put/unread_watch")->ArgName("history")->Arg(65536)->Arg(4096)->Threads(1)->Threads(4)->UseRealTime()->MinTime(1.0);
#endif

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--keel-callgrind") == 0) return run_callgrind();
#if KEEL_WATCH_BENCH_BASELINE
  std::fprintf(stderr, "keel_watch_memory_bench (baseline build): only --keel-callgrind\n");
  return 2;
#else
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
#endif
}
