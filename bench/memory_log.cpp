// keel_memory_log_bench: what the write-ahead log of a persisted memory store
// costs (issue 13). Google Benchmark; docs/durability.md has the results.
//
//   build-bench/bench/keel_memory_log_bench [--keel-dir=DIR] [benchmark flags]
//
// 120-byte records (a 20-byte key "key%017llu", 100 pseudo-random value
// bytes), each put a new key, into one store per benchmark run:
//   put/unpersisted        a memory store without persist_path: the baseline
//   put/persisted          persist_path set (one write() per put; background
//                          folds at the default 64 MiB threshold included)
//   put/sync               persist_path + sync_writes (fdatasync, group
//                          commit), 1 and 8 writer threads
//   raw/write_fdatasync    baseline: one write() of 120 bytes + fdatasync on a
//                          plain file in DIR (what one unshared sync costs now)
// DIR (default: the system temporary directory) decides the filesystem; the
// bench prints which one. Items per second counts acknowledged puts.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <keel/detail/lock_diagnosis.hpp>
#include <keel/memory.hpp>
#include <memory>
#include <random>
#include <string>

namespace fs = std::filesystem;

namespace {

fs::path base;  // a fresh directory below --keel-dir; removed at exit
std::string value;
std::unique_ptr<keel::memory_store> store;
std::atomic<unsigned long long> next_key{0};
int run_id = 0;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "keel_memory_log_bench: %s\n", what.c_str());
  std::exit(1);
}

void open_store(bool persisted, bool sync) {
  keel::memory_options o;
  if (persisted) {
    const fs::path dir = base / ("run" + std::to_string(run_id++));
    fs::create_directories(dir);
    o.persist_path = dir / "store.keeldump";
    o.sync_writes = sync;
  }
  auto s = keel::memory_store::open(o);
  if (!s) die(s.error().message());
  store = std::make_unique<keel::memory_store>(std::move(*s));
  next_key = 0;
}

void close_store(benchmark::State& state) {
  // Not timed: the loop has ended. close() folds the log into a snapshot.
  if (auto c = store->close(); !c) state.SkipWithError(c.error().message().c_str());
  store.reset();
}

void put_loop(benchmark::State& state) {
  char key[24];
  for (auto _ : state) {
    std::snprintf(key, sizeof key, "key%017llu", next_key.fetch_add(1, std::memory_order_relaxed));
    if (auto r = store->put(key, value); !r) {
      state.SkipWithError(r.error().message().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_put(benchmark::State& state, bool persisted, bool sync) {
  if (state.thread_index() == 0) open_store(persisted, sync);
  put_loop(state);
  if (state.thread_index() == 0) close_store(state);
}

void BM_raw_write_fdatasync(benchmark::State& state) {
  const fs::path p = base / ("raw" + std::to_string(run_id++));
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) die("cannot create " + p.string());
  const std::string record = "key00000000000000000" + value;
  for (auto _ : state) {
    if (::write(fd, record.data(), record.size()) != static_cast<ssize_t>(record.size()) || ::fdatasync(fd) != 0) {
      state.SkipWithError("write/fdatasync failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  ::close(fd);
}

}  // namespace

BENCHMARK(BM_raw_write_fdatasync)->Name("raw/write_fdatasync")->UseRealTime();
BENCHMARK_CAPTURE(BM_put, unpersisted, false, false)->Name("put/unpersisted");
BENCHMARK_CAPTURE(BM_put, persisted, true, false)->Name("put/persisted");
BENCHMARK_CAPTURE(BM_put, sync, true, true)->Name("put/sync")->Threads(1)->Threads(8)->UseRealTime();

int main(int argc, char** argv) {
  fs::path dir = fs::temp_directory_path();
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--keel-dir=", 0) == 0)
      dir = a.substr(11);
    else
      argv[kept++] = argv[i];
  }
  argc = kept;
  std::string tmpl = (dir / "keel-memory-log-bench-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) die("cannot create a directory in " + dir.string());
  base = tmpl;
  std::mt19937_64 rng(42);
  for (int i = 0; i < 100; ++i) value.push_back(static_cast<char>('!' + rng() % 90));
  benchmark::AddCustomContext("keel_dir", base.string());
  benchmark::AddCustomContext("keel_filesystem", keel::detail::filesystem_name(base));
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::error_code ec;
  fs::remove_all(base, ec);
}
