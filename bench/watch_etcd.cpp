// keel_watch_etcd_bench: watch latency on the etcd backend (issue 28 target:
// p99 from a put() returning to next() returning under 50 ms on loopback).
//
// Starts one etcd member (tests/support/etcd_cluster.hpp: 127.0.0.1, data
// directory on /dev/shm) unless KEEL_BENCH_ETCD names an endpoint. Two
// clients of one prefix: the writer puts one 256-byte value per iteration,
// the watcher (another etcd_store, its own connection) waits for that
// change. Reported per benchmark: p50_us / p99_us of
//   watch/put_to_next   put() returned -> the watcher's next() returned it
//   watch/put           put() alone, same run (the baseline: one round trip)
// and, with Arg(1), the same with a second write in flight from another
// client, so the change arrives while the stream is busy.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <keel/etcd.hpp>

#include "../tests/support/etcd_cluster.hpp"

namespace {

std::unique_ptr<keel::test::etcd_cluster> g_cluster;
std::string g_endpoint;
const std::string value256(256, 'v');

keel::etcd_store open_client() {
  keel::etcd_options o;
  o.endpoints = {g_endpoint};
  o.prefix = "watch-bench/";
  auto s = keel::etcd_store::open(o);
  if (!s) {
    std::fprintf(stderr, "open: %s\n", s.error().message().c_str());
    std::exit(1);
  }
  return std::move(*s);
}

void report(benchmark::State& s, std::vector<double>& us) {
  if (us.empty()) return;
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[std::min(us.size() - 1, std::size_t(q * us.size()))]; };
  s.counters["p50_us"] = at(0.50);
  s.counters["p99_us"] = at(0.99);
  s.counters["max_us"] = us.back();
}

// put() returning -> next() returning that change, in another client.
void put_to_next(benchmark::State& s) {
  auto writer = open_client();
  auto watcher = open_client();
  auto w = watcher.watch(keel::key_range::prefix("k/"));
  if (!w) return s.SkipWithError("watch failed");
  // Arg(1): a third client writes other keys of the range meanwhile.
  std::atomic<bool> stop{false};
  std::thread noise;
  if (s.range(0) == 1) {
    noise = std::thread([&] {
      auto other = open_client();
      for (int i = 0; !stop.load(); ++i) (void)other.put("k/noise" + std::to_string(i % 100), value256);
    });
  }
  std::vector<double> us;
  us.reserve(1 << 14);
  int i = 0;
  for (auto _ : s) {
    const std::string key = "k/" + std::to_string(i++);
    if (!writer.put(key, value256)) return s.SkipWithError("put failed");
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      auto c = w->next(std::chrono::seconds(5));
      if (!c || !*c) {
        stop = true;
        if (noise.joinable()) noise.join();
        return s.SkipWithError("no change within 5 s");
      }
      if ((*c)->key == key) break;
    }
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  stop = true;
  if (noise.joinable()) noise.join();
  report(s, us);
}

// The baseline of the same run: put() alone.
void put_only(benchmark::State& s) {
  auto writer = open_client();
  std::vector<double> us;
  us.reserve(1 << 14);
  int i = 0;
  for (auto _ : s) {
    const std::string key = "p/" + std::to_string(i++);
    const auto t0 = std::chrono::steady_clock::now();
    if (!writer.put(key, value256)) return s.SkipWithError("put failed");
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  report(s, us);
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* e = std::getenv("KEEL_BENCH_ETCD"); e && *e) {
    g_endpoint = e;
  } else {
    g_cluster = std::make_unique<keel::test::etcd_cluster>(1);
    g_endpoint = g_cluster->endpoint(0);
  }
  std::fprintf(stderr, "etcd endpoint %s (data directory on tmpfs unless KEEL_BENCH_ETCD)\n", g_endpoint.c_str());
  benchmark::RegisterBenchmark("watch/put", put_only)->UseRealTime()->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("watch/put_to_next", put_to_next)
      ->Arg(0)
      ->Arg(1)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_cluster.reset();
  return 0;
}
