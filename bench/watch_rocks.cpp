// Watch on RocksDB (issue 28; rocksdb/watch.hpp). Three measurements:
//   latency      p50/p99/p99.9 from a put() returning to next() returning the
//                change, a reader thread on the watch, one put at a time
//                (the writer waits for the reader before the next put);
//   throughput   puts per second by 1 and 4 writer threads on a store with
//                no watch and with one watch that is never read, alternated,
//                the median of the rounds;
//   callgrind    `--callgrind` runs only m_watch_put: 20000 puts on a store
//                that has no watch, the loop for the instruction count. The
//                same source builds against main's headers (no watch there)
//                with -DKEEL_BENCH_NO_WATCH, for the +2% target:
//     valgrind --tool=callgrind --toggle-collect='*m_watch_put*' --callgrind-out-file=cg.X ./keel_watch_rocks_bench --callgrind
// Wall-clock figures on a shared machine are noisy: compare runs made together.
//   erase_range  `--erase-range`: erase_range without a watch and with one
//                (which lists the keys it removes; main's headers: without);
//   build/bench/keel_watch_rocks_bench [--callgrind [--warm-up=N] | --erase-range] [dir]
#include <keel/rocksdb.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

keel::rocks_store open_or_die(const fs::path& p) {
  keel::rocks_options o;
  o.path = p;
  auto s = keel::rocks_store::open(o);
  if (!s) {
    std::fprintf(stderr, "open %s: %s\n", p.c_str(), s.error().message().c_str());
    std::exit(1);
  }
  return std::move(*s);
}

std::string key(unsigned i) {
  char b[17];
  std::snprintf(b, sizeof b, "user%011u0", i);
  return std::string(b, 16);
}
const std::string value(100, 'v');

[[gnu::noinline]] void m_watch_put(keel::rocks_store& s, unsigned n) {
  for (unsigned i = 0; i < n; ++i) (void)s.put(key(i * 7919u % 10000), value);
}
[[gnu::noinline]] void warm_up_puts(keel::rocks_store& s, unsigned n) {
  for (unsigned i = 0; i < n; ++i) (void)s.put(key(i * 7919u % 10000), value);
}

// erase_range's cost. The median of 5 erase_range()s of `n` keys (written,
// then flushed to an SST file), and of 5 small ones (10 keys, in the
// memtable). `watched`: the store has a watch (made before the writes), so
// the keys an erase_range removes are listed in the WAL (a scan of the range
// under the exclusive write gate); without one they are not (as on main,
// which this also builds against, for the baseline).
void erase_range_cost(const fs::path& dir, unsigned n, bool watched) {
  std::vector<double> big, small;
  for (int r = 0; r < 5; ++r) {
    fs::remove_all(dir / "er");
    auto store = open_or_die(dir / "er");
    auto run = [&] {
      for (unsigned i = 0; i < n; ++i) (void)store.put(key(i), value);
      (void)store.policy().with_db([](rocksdb::DB& db) { (void)db.Flush(rocksdb::FlushOptions()); });
      auto t0 = clock_type::now();
      if (!store.erase_range(keel::key_range::prefix("user"))) std::exit(5);
      big.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
      for (unsigned i = 0; i < 10; ++i) (void)store.put(key(i), value);
      t0 = clock_type::now();
      if (!store.erase_range(keel::key_range::prefix("user"))) std::exit(5);
      small.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
    };
#ifndef KEEL_BENCH_NO_WATCH
    if (watched) {
      auto w = store.watch();  // never read: only its existence matters
      if (!w) std::exit(2);
      run();
      continue;
    }
#endif
    run();
  }
  std::sort(big.begin(), big.end());
  std::sort(small.begin(), small.end());
  std::printf("erase_range %s: of %u keys (flushed): %.2f ms; of 10 keys (memtable): %.1f us (medians of 5)\n",
              watched ? "with a watch" : "without a watch", n, big[2], small[2]);
}

#ifndef KEEL_BENCH_NO_WATCH
void latency(const fs::path& dir) {
  auto store = open_or_die(dir / "latency");
  auto w = store.watch();
  if (!w) std::exit(2);
  const unsigned n = 20000;
  std::vector<double> us(n), from_call(n);
  std::vector<long long> called(n);
  std::atomic<unsigned> received{0};
  std::atomic<long long> put_done_ns{0};
  std::thread reader([&] {
    for (unsigned i = 0; i < n;) {
      auto c = w->next(std::chrono::seconds(5));
      if (!c || !*c) std::exit(3);
      const long long now = clock_type::now().time_since_epoch().count();
      long long sent;
      while ((sent = put_done_ns.load(std::memory_order_acquire)) == 0) put_done_ns.wait(0);
      us[i] = std::max(0.0, (now - sent) / 1000.0);  // 0: next() returned before put() did
      from_call[i] = (now - called[i]) / 1000.0;
      put_done_ns.store(0, std::memory_order_release);
      received.store(++i, std::memory_order_release);
      received.notify_one();
    }
  });
  for (unsigned i = 0; i < n; ++i) {
    called[i] = clock_type::now().time_since_epoch().count();
    (void)store.put(key(i), value);
    put_done_ns.store(clock_type::now().time_since_epoch().count(), std::memory_order_release);
    put_done_ns.notify_one();
    for (unsigned r; (r = received.load(std::memory_order_acquire)) <= i;) received.wait(r);
  }
  reader.join();
  std::sort(us.begin(), us.end());
  std::sort(from_call.begin(), from_call.end());
  std::printf("latency put() returned -> next() returned: p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us (%u puts)\n",
              us[n / 2], us[n * 99 / 100], us[n * 999 / 1000], us[n - 1], n);
  std::printf("latency put() called -> next() returned: p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n",
              from_call[n / 2], from_call[n * 99 / 100], from_call[n * 999 / 1000], from_call[n - 1]);
}

double throughput(const fs::path& dir, int threads, bool watched, unsigned per_thread) {
  fs::remove_all(dir);
  auto store = open_or_die(dir);
  std::optional<keel::basic_watch<keel::RocksPolicy<keel::DefaultTuning>>> w;
  if (watched) {
    auto made = store.watch();
    if (!made) std::exit(4);
    w.emplace(std::move(*made));
  }
  const auto t0 = clock_type::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&store, t, per_thread] {
      for (unsigned i = 0; i < per_thread; ++i) (void)store.put(key(t * per_thread + i), value);
    });
  }
  for (auto& t : ts) t.join();
  const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  return threads * per_thread / s;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  bool callgrind = false, erase_only = false;
  unsigned warm_up = 2000;
  fs::path dir;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--callgrind") == 0)
      callgrind = true;
    else if (std::strcmp(argv[i], "--erase-range") == 0)
      erase_only = true;
    else if (std::strncmp(argv[i], "--warm-up=", 10) == 0)
      warm_up = static_cast<unsigned>(std::atoi(argv[i] + 10));
    else
      dir = argv[i];
  }
  const bool own_dir = dir.empty();
  if (own_dir) dir = fs::temp_directory_path() / ("keel-watch-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  if (callgrind) {
    auto store = open_or_die(dir / "callgrind");
    // Warm up (memtable, WAL file); other lengths shift the memtable's
    // skiplist random heights, which move the count by about 2% (see
    // docs/benchmarks.md, issue 28).
    warm_up_puts(store, warm_up);
    m_watch_put(store, 20000);
  } else if (erase_only) {
    erase_range_cost(dir, 100000, false);
#ifndef KEEL_BENCH_NO_WATCH
    erase_range_cost(dir, 100000, true);
#endif
  } else {
#ifndef KEEL_BENCH_NO_WATCH
    latency(dir);
    const int rounds = 7;
    for (int threads : {1, 4}) {
      std::vector<double> none, one;
      for (int r = 0; r < rounds; ++r) {
        none.push_back(throughput(dir / "tp", threads, false, 50000 / threads));
        one.push_back(throughput(dir / "tp", threads, true, 50000 / threads));
      }
      std::sort(none.begin(), none.end());
      std::sort(one.begin(), one.end());
      std::printf("throughput %d writer(s): no watch %.0f puts/s, one unread watch %.0f puts/s: %.3fx (median of %d)\n",
                  threads, none[rounds / 2], one[rounds / 2], one[rounds / 2] / none[rounds / 2], rounds);
    }
#endif
  }
  if (own_dir) fs::remove_all(dir);
  return 0;
}
