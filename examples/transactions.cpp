// keel example: bank transfers from several threads with run_transaction.
//
//   ./transactions
//
// Ten accounts hold 1000 coins in all. Four threads each make 500 transfers:
// read two balances, move a random amount from one to the other, in one
// transaction run by store.run_transaction(), which commits it or, when
// another transfer committed in between and changed what it read
// (errc::conflict), runs it again. Meanwhile an auditor thread checks the
// total in read-only transactions (a scan of the accounts), which always
// commit. The transfers are not serialised by any lock of the program: the
// transactions alone keep every balance right.
//
// At the end it prints what store.stats() counted (transactions begun,
// committed, in conflict and run again) and checks that the balances still add
// up to 1000, that no balance went negative and that every transfer
// committed. It runs on the memory backend and then on RocksDB (a temporary
// directory), with the same code. Exits 0 when all of that holds.

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <keel/keel.hpp>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

constexpr int accounts = 10;
constexpr long total = 1000;
constexpr int threads = 4;
constexpr int transfers_per_thread = 500;

std::string account(int i) { return "account/" + std::to_string(i); }

// Reads a balance inside the transaction; a missing or malformed one is an error.
template <class Tx>
keel::result<long> balance(Tx& tx, const std::string& key) {
  auto v = tx.get(key);
  if (!v) return v.error();
  if (!*v) return keel::error(keel::errc::invalid_argument, "no account " + key);
  return std::stol(**v);
}

// One transfer of up to `most` coins from `from` to `to`. Returns the amount
// moved (0 when `from` is empty). The reads are recorded by the transaction:
// if another transfer commits a change to either balance first, this commit
// fails with errc::conflict and run_transaction runs the lambda again, on a
// fresh view.
template <class Store>
keel::result<long> transfer(Store& store, int from, int to, long most) {
  return store.run_transaction([&](auto& tx) -> keel::result<long> {
    auto a = balance(tx, account(from));
    if (!a) return a.error();
    auto b = balance(tx, account(to));
    if (!b) return b.error();
    const long amount = std::min(most, *a);
    // A real program would do some work here (check limits, log, ...); a
    // yield lets the other threads commit meanwhile, so that conflicts show.
    std::this_thread::yield();
    if (auto r = tx.put(account(from), std::to_string(*a - amount)); !r) return r.error();
    if (auto r = tx.put(account(to), std::to_string(*b + amount)); !r) return r.error();
    return amount;
  });
}

// The auditor: read-only transactions summing the accounts until the
// transfers are done. Returns how many audits saw a wrong total.
template <class Store>
long audit(Store& store, const std::atomic<bool>& done, long& audits) {
  long wrong = 0;
  while (!done.load(std::memory_order_acquire) || audits < 10) {
    auto tx = store.transaction();
    long sum = 0, seen = 0;
    auto cursor = tx.scan(keel::key_range::prefix("account/"));
    for (const auto& e : cursor) {
      sum += std::stol(std::string(e.value));
      ++seen;
    }
    // Only read: commit() never reports a conflict here.
    const bool committed = tx.commit().has_value();
    if (cursor.error() || !committed || seen != accounts || sum != total) ++wrong;
    ++audits;
  }
  return wrong;
}

template <class Store>
int run(const char* name, Store& store) {
  keel::write_batch init;
  for (int i = 0; i < accounts; ++i) init.put(account(i), std::to_string(total / accounts));
  if (auto r = store.write(init); !r) {
    std::fprintf(stderr, "%s: initial write failed: %s\n", name, r.error().message().c_str());
    return 1;
  }

  std::atomic<bool> done{false};
  std::atomic<int> failed{0}, gave_up{0};
  std::atomic<long> moved{0};
  long audits = 0, wrong_audits = 0;
  std::thread auditor([&] { wrong_audits = audit(store, done, audits); });
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 random(static_cast<unsigned>(42 + t));
      std::uniform_int_distribution<int> pick(0, accounts - 1);
      for (int n = 0; n < transfers_per_thread; ++n) {
        int from = pick(random), to = pick(random);
        if (from == to) to = (to + 1) % accounts;
        auto r = transfer(store, from, to, 1 + static_cast<long>(random() % 50));
        // run_transaction gives up after 16 attempts in conflict (its
        // default). That is rare (it takes a thread losing to the others 16
        // times in a row, e.g. on an overloaded machine) but not an error of
        // the transfer: nothing was written, so run it again.
        while (!r && r.error() == keel::errc::conflict) {
          gave_up.fetch_add(1);
          r = transfer(store, from, to, 1 + static_cast<long>(random() % 50));
        }
        if (!r) {
          std::fprintf(stderr, "%s: transfer failed: %s\n", name, r.error().message().c_str());
          failed.fetch_add(1);
        } else {
          moved.fetch_add(*r);
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  done.store(true, std::memory_order_release);
  auditor.join();

  // The final balances, outside any transaction.
  long sum = 0, negative = 0;
  for (int i = 0; i < accounts; ++i) {
    auto v = store.get(account(i));
    const long b = v && *v ? std::stol(**v) : -1;
    if (b < 0) ++negative;
    sum += b;
  }
  auto stats = store.stats();
  if (!stats) {
    std::fprintf(stderr, "%s: stats: %s\n", name, stats.error().message().c_str());
    return 1;
  }
  const long transfers = static_cast<long>(threads) * transfers_per_thread;
  std::printf(
      "%-8s %ld transfers by %d threads (%ld coins moved), total %ld (expected %ld); "
      "%ld audits, %ld wrong\n",
      name, transfers, threads, moved.load(), sum, total, audits, wrong_audits);
  std::printf(
      "%-8s transactions: %llu begun, %llu committed, %llu conflicts (each one ran again), "
      "%llu rolled back; run_transaction gave up %d times (run again)\n",
      name, static_cast<unsigned long long>(stats->tx_begun), static_cast<unsigned long long>(stats->tx_committed),
      static_cast<unsigned long long>(stats->tx_conflicts), static_cast<unsigned long long>(stats->tx_rolled_back),
      gave_up.load());
  // Every transfer and every audit committed exactly once; every other
  // attempt was a conflict.
  const bool counts_add_up = stats->tx_committed == static_cast<std::uint64_t>(transfers + audits) &&
                             stats->tx_begun == stats->tx_committed + stats->tx_conflicts + stats->tx_rolled_back;
  if (!counts_add_up) std::fprintf(stderr, "%s: the transaction counts do not add up\n", name);
  return failed.load() == 0 && sum == total && negative == 0 && wrong_audits == 0 && counts_add_up ? 0 : 1;
}

}  // namespace

int main() {
  int status = 0;
  {
    auto memory = keel::memory_store::open({});
    if (!memory) return 1;
    status |= run("memory", *memory);
  }
  const fs::path dir = fs::temp_directory_path() / ("keel-transactions-" + std::to_string(::getpid()));
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
  std::printf("transactions: %s\n", status == 0 ? "ok" : "FAILED");
  return status;
}
