// keel example: one writer, several readers, each reading through snapshots.
//
//   ./concurrent_readers
//
// Ten accounts hold 1000 coins in all. A writer thread moves coins between
// two accounts, thousands of times, each move one write_batch (applied
// atomically) that also bumps a "version" key. Meanwhile four reader threads
// take snapshots in a loop. Every snapshot must be consistent:
// - the balances add up to 1000 (a reader never sees half a move);
// - reading the same snapshot twice (a scan, then get() of every account)
//   gives the same numbers, however many moves happened in between;
// - the version seen through successive snapshots never goes back.
// It runs on the memory backend and then on RocksDB (a temporary directory),
// with the same code: a snapshot is point-in-time on both. Exits 0 when every
// snapshot was consistent.

#include <keel/keel.hpp>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;

namespace {

constexpr int accounts = 10;
constexpr long total = 1000;
constexpr int moves = 3000;
constexpr int readers = 4;

std::string account(int i) { return "account/" + std::to_string(i); }

struct reader_stats {
  long snapshots = 0;
  long inconsistent = 0;
  long version_went_back = 0;
};

// One reader: snapshots until the writer is done (and at least 50).
template <class Store>
void read_loop(const Store& store, const std::atomic<bool>& writer_done, reader_stats& stats) {
  long last_version = -1;
  while (!writer_done.load(std::memory_order_acquire) || stats.snapshots < 50) {
    auto snap = store.snapshot();
    ++stats.snapshots;
    // Pass 1: scan the accounts.
    std::vector<long> scanned;
    long sum = 0;
    auto cursor = snap.scan(keel::key_range::prefix("account/"));
    for (const auto& e : cursor) {
      scanned.push_back(std::stol(std::string(e.value)));
      sum += scanned.back();
    }
    bool ok = !cursor.error() && scanned.size() == accounts && sum == total;
    // Pass 2, later: the same snapshot still gives the same balances. The
    // scan's order is bytewise: "account/0" < "account/1" < ... < "account/9".
    for (int i = 0; ok && i < accounts; ++i) {
      auto v = snap.get(account(i));
      ok = v && *v && std::stol(**v) == scanned[static_cast<std::size_t>(i)];
    }
    if (!ok) ++stats.inconsistent;
    if (auto v = snap.get("version"); v && *v) {
      long version = std::stol(**v);
      if (version < last_version) ++stats.version_went_back;
      last_version = version;
    }
  }
}

template <class Store>
int run(const char* name, Store& store) {
  keel::write_batch init;
  for (int i = 0; i < accounts; ++i) init.put(account(i), std::to_string(total / accounts));
  init.put("version", "0");
  if (auto r = store.write(init); !r) {
    std::fprintf(stderr, "%s: initial write failed: %s\n", name, r.error().message().c_str());
    return 1;
  }

  std::atomic<bool> writer_done{false};
  std::vector<reader_stats> stats(readers);
  std::vector<std::thread> threads;
  for (int r = 0; r < readers; ++r) {
    threads.emplace_back([&, r] { read_loop(store, writer_done, stats[static_cast<std::size_t>(r)]); });
  }

  // The writer: read both balances, write both and the version in one batch.
  // It is the only writer, so the read-then-write needs no lock.
  std::mt19937 random(42);
  std::uniform_int_distribution<int> pick(0, accounts - 1);
  int writes_failed = 0;
  for (int m = 1; m <= moves; ++m) {
    int from = pick(random), to = pick(random);
    if (from == to) to = (to + 1) % accounts;
    auto a = store.get(account(from));
    auto b = store.get(account(to));
    if (!a || !*a || !b || !*b) {
      ++writes_failed;
      continue;
    }
    long have = std::stol(**a);
    long amount = have == 0 ? 0 : 1 + static_cast<long>(random() % static_cast<unsigned long>(have));
    keel::write_batch move;
    move.put(account(from), std::to_string(have - amount))
        .put(account(to), std::to_string(std::stol(**b) + amount))
        .put("version", std::to_string(m));
    if (!store.write(move)) ++writes_failed;
  }
  writer_done.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();

  long snapshots = 0, inconsistent = 0, went_back = 0;
  for (const auto& s : stats) {
    snapshots += s.snapshots;
    inconsistent += s.inconsistent;
    went_back += s.version_went_back;
  }
  std::printf("%-8s %d moves by 1 writer; %d readers took %ld snapshots: %ld inconsistent, "
              "%ld saw the version go back\n",
              name, moves, readers, snapshots, inconsistent, went_back);
  return writes_failed == 0 && inconsistent == 0 && went_back == 0 ? 0 : 1;
}

}  // namespace

int main() {
  int status = 0;
  {
    auto memory = keel::memory_store::open({});
    if (!memory) return 1;
    status |= run("memory", *memory);
  }
  const fs::path dir = fs::temp_directory_path() / ("keel-concurrent-readers-" + std::to_string(::getpid()));
  {
    auto rocks = keel::rocks_store::open({.path = dir});
    if (!rocks) {
      std::fprintf(stderr, "open %s: %s\n", dir.string().c_str(), rocks.error().message().c_str());
      status = 1;
    } else {
      status |= run("rocksdb", *rocks);
      if (!rocks->close()) status = 1;
    }
  }
  std::error_code ignored;
  fs::remove_all(dir, ignored);
  std::printf("concurrent_readers: %s\n", status == 0 ? "ok" : "FAILED");
  return status;
}
