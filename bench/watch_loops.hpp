// bench/watch_loops.hpp - the timed loops of the in-process watch
// benchmarks (watch_memory.cpp, watch_hybrid.cpp; issue 28).
//
// put_to_next_latency: the latency from a put() returning to a watch's
// next() returning that change in a reader thread, as Google Benchmark
// counters p50_us, p99_us, max_us (target: p99 under 1 ms). Each put waits
// for the previous change to be read. `put(i)` makes the i-th put (it fails
// the run itself on an error); `w` is a watch of what it puts.
//
// put_loop: one benchmark thread's puts over `keys` keys (thread t starts at
// key t * 7919 and steps by 13, with its own value), counted as items; the
// throughput pair put/no_watch, put/unread_watch runs it on a store shared
// by the threads, made by thread 0 before the loops start.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "keys.hpp"

namespace keel_bench {

template <class Watch, class Put>
void put_to_next_latency(benchmark::State& state, Watch& w, Put&& put, std::size_t n = 20000) {
  using clock = std::chrono::steady_clock;
  std::vector<clock::time_point> put_done(n), next_done(n);
  std::vector<double> us;
  auto fail = [](const char* what) {
    std::fprintf(stderr, "put_to_next: %s\n", what);
    std::exit(1);
  };
  for (auto _ : state) {
    std::atomic<std::size_t> read{0};
    std::thread reader([&] {
      for (std::size_t i = 0; i < n;) {
        auto c = w.next(std::chrono::seconds(5));
        if (!c) fail(c.error().message().c_str());
        if (!*c) fail("no change within 5 s");
        next_done[i] = clock::now();
        read.store(++i, std::memory_order_release);
      }
    });
    for (std::size_t i = 0; i < n; ++i) {
      put(i);
      put_done[i] = clock::now();
      while (read.load(std::memory_order_acquire) <= i) std::this_thread::yield();
    }
    reader.join();
    for (std::size_t i = 0; i < n; ++i)  // the reader may return before put() does: 0 then
      us.push_back(std::max(0.0, std::chrono::duration<double, std::micro>(next_done[i] - put_done[i]).count()));
  }
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<std::size_t>(q * us.size()))]; };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
  state.counters["max_us"] = us.back();
  state.SetItemsProcessed(static_cast<std::int64_t>(us.size()));
}

template <class Store>
void put_loop(benchmark::State& state, Store& store, unsigned keys) {
  unsigned i = static_cast<unsigned>(state.thread_index()) * 7919u;
  const std::string v = value(static_cast<unsigned>(state.thread_index()));
  for (auto _ : state) {
    (void)store.put(key(i % keys), v);
    i += 13;
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace keel_bench
