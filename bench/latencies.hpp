// bench/latencies.hpp - per-thread latency samples of a Google Benchmark
// run, reported as p50_us / p99_us (averaged over threads) and ops_per_s.
// Used by the benchmarks of the server backends (etcd.cpp, postgres.cpp).
// One object per benchmark thread; not thread-safe.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

namespace keel_bench {

class latencies {
 public:
  explicit latencies(benchmark::State& s) : state_(s) { samples_.reserve(1 << 16); }
  template <class F>
  void time(F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    samples_.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  ~latencies() {
    if (samples_.empty()) return;
    std::sort(samples_.begin(), samples_.end());
    auto at = [&](double q) { return samples_[std::min(samples_.size() - 1, std::size_t(q * samples_.size()))]; };
    state_.counters["p50_us"] = benchmark::Counter(at(0.50), benchmark::Counter::kAvgThreads);
    state_.counters["p99_us"] = benchmark::Counter(at(0.99), benchmark::Counter::kAvgThreads);
    state_.counters["ops_per_s"] = benchmark::Counter(double(samples_.size()), benchmark::Counter::kIsRate);
  }

 private:
  benchmark::State& state_;
  std::vector<double> samples_;
};

}  // namespace keel_bench
