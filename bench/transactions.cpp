// keel_tx_bench: transactions and multi_get (issue 12), each against its
// baseline in the same run. Google Benchmark; docs/benchmarks.md
// ("Transactions and multi_get") has the results.
//
//   build-bench/bench/keel_tx_bench [--keel-dir=DIR] [benchmark flags]
//
// (a) The price of a transaction, one thread, 100k keys (16-byte keys,
//     100-byte values; RocksDB flushed and compacted):
//       tx_2get2put/{memory,rocks}     store.transaction(), 2 get()s, 2 put()s, commit()
//       plain_2get_batch/{memory,rocks} the same work without a transaction:
//                                      2 get()s, then one write_batch of the 2 puts
// (b), (c) Bank transfers, 4 threads, 1000 accounts (Arg) holding decimal
//     balances: read two balances, move 1-10 coins, write both; items/s is
//     committed transfers per second (real time, all threads):
//       transfer/keel_rocks    keel::rocks_store, store.run_transaction()
//       transfer/rocks_occ     rocksdb::OptimisticTransactionDB, GetForUpdate()
//                              on both keys, Commit(), retried on Busy/TryAgain
//                              with run_transaction's back-off
//       transfer/keel_memory   keel::memory_store, store.run_transaction()
//       transfer/map_mutex     std::map + one std::mutex held for the whole transfer
//     retries_per_1k: attempts that conflicted per 1000 committed transfers.
//     keel's transactions are serializable (every key read is validated);
//     OptimisticTransactionDB validates the keys given to GetForUpdate only
//     (here the same two keys, so the work compared is the same).
// (d) multi_get of 100 random present keys, RocksDB, 100k keys:
//       multi_get100/rocks     store.multi_get(100 keys)
//       get100/rocks           100 store.get()s of the same keys
//       {multi_get100,get100}/raw_rocks  the same through rocksdb::DB directly
//     (their own DB, as loaded: the writes of (a) do not reach it)
//
// RocksDB data lives in a fresh directory under /tmp (on this machine the
// disk, not tmpfs), or --keel-dir=DIR. Writes are not synced (keel's default,
// and RocksDB's). At the end the transfer datasets are checked: the balances
// must still add up; the program exits 1 otherwise.
#include <benchmark/benchmark.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/optimistic_transaction_db.h>
#include <rocksdb/utilities/transaction.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <keel/keel.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kKeys = 100000, kKeyLen = 16, kValueLen = 100, kMulti = 100;
constexpr long kInitialBalance = 1000000;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "keel_tx_bench: %s\n", what.c_str());
  std::exit(2);
}
template <class R>
void must(const R& r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().message());
}
void must_ok(const rocksdb::Status& s, const char* what) {
  if (!s.ok()) die(std::string(what) + ": " + s.ToString());
}

fs::path& bench_dir() {
  static fs::path dir;
  return dir;
}
fs::path fresh_dir(const std::string& name) {
  fs::path p = bench_dir() / name;
  fs::remove_all(p);
  return p;
}

// Key i: "user" + 11 digits + "0" (16 bytes), as in bench.cpp.
std::string make_key(std::uint64_t i) {
  char b[kKeyLen + 1];
  std::snprintf(b, sizeof b, "user%011llu0", static_cast<unsigned long long>(i));
  return std::string(b, kKeyLen);
}
// 100 pseudo-random bytes for key i, cut from a 1 MiB pool.
std::string_view value_for(std::uint64_t i) {
  static const std::string pool = [] {
    std::string p(1 << 20, '\0');
    std::mt19937_64 rng(42);
    for (auto& c : p) c = static_cast<char>(rng());
    return p;
  }();
  return std::string_view(pool).substr((i * 104729u) % (pool.size() - kValueLen), kValueLen);
}

struct rng_t {  // xorshift64*: cheap, deterministic per thread
  std::uint64_t s;
  explicit rng_t(std::uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  std::uint64_t below(std::uint64_t n) { return next() % n; }
};

template <class T>
void keep(const T& v) {
  benchmark::DoNotOptimize(v);
}

// ---------------------------------------------------------------------------
// Datasets, built on first use (under a mutex: the transfer benchmarks run on
// 4 threads), kept until the end of the run.
// ---------------------------------------------------------------------------
std::mutex g_data_mutex;
std::vector<std::function<bool()>> g_final_checks;  // the transfer datasets' sums
std::vector<std::function<void()>> g_droppers;

template <class D, class... Args>
D& dataset(Args... args) {
  static std::unique_ptr<D> d;
  std::lock_guard lock(g_data_mutex);
  if (!d) {
    d = std::make_unique<D>(args...);
    g_droppers.push_back([] { d.reset(); });
  }
  return *d;
}

void load_keys(auto& store) {
  for (std::size_t lo = 0; lo < kKeys; lo += 10000) {
    keel::write_batch b;
    for (std::size_t i = lo; i < lo + 10000; ++i) b.put(make_key(i), value_for(i));
    must(store.write(b), "load");
  }
}

struct memory_keys {
  keel::memory_store store;
  memory_keys() : store(open()) { load_keys(store); }
  static keel::memory_store open() {
    auto s = keel::memory_store::open({});
    must(s, "memory open");
    return std::move(*s);
  }
};

template <int Tag>
struct rocks_keys_t {
  fs::path path = fresh_dir("rocks-keys-" + std::to_string(Tag));
  keel::rocks_store store;
  rocks_keys_t() : store(open(path)) {
    load_keys(store);
    must(store.policy().with_db([](rocksdb::DB& db) {
      must_ok(db.Flush(rocksdb::FlushOptions()), "flush");
      must_ok(db.CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr), "compact");
    }),
         "flush and compact");
  }
  ~rocks_keys_t() {
    (void)store.close();
    fs::remove_all(path);
  }
  static keel::rocks_store open(const fs::path& p) {
    auto s = keel::rocks_store::open({.path = p});
    must(s, "rocks open");
    return std::move(*s);
  }
};
// (a) writes into its dataset; (d) reads its own, which stays as loaded.
using rocks_keys = rocks_keys_t<0>;
using rocks_read_keys = rocks_keys_t<1>;

// ---------------------------------------------------------------------------
// (a) A transaction of 2 gets + 2 puts against the same work without one.
// ---------------------------------------------------------------------------
template <class D>
void bm_tx_2get2put(benchmark::State& st) {
  auto& store = dataset<D>().store;
  rng_t rng(1);
  for (auto _ : st) {
    const std::uint64_t a = rng.below(kKeys), b = rng.below(kKeys);
    const std::string ka = make_key(a), kb = make_key(b);
    auto tx = store.transaction();
    keep(tx.get(ka));
    keep(tx.get(kb));
    must(tx.put(ka, value_for(b)), "tx put");
    must(tx.put(kb, value_for(a)), "tx put");
    must(tx.commit(), "commit");
  }
}
template <class D>
void bm_plain_2get_batch(benchmark::State& st) {
  auto& store = dataset<D>().store;
  rng_t rng(1);
  for (auto _ : st) {
    const std::uint64_t a = rng.below(kKeys), b = rng.below(kKeys);
    const std::string ka = make_key(a), kb = make_key(b);
    keep(store.get(ka));
    keep(store.get(kb));
    keel::write_batch batch;
    batch.put(ka, value_for(b)).put(kb, value_for(a));
    must(store.write(batch), "write");
  }
}

// ---------------------------------------------------------------------------
// (b), (c) Bank transfers.
// ---------------------------------------------------------------------------
std::string account(std::uint64_t i) { return "account/" + std::to_string(i); }
long parse(std::string_view s) { return std::strtol(std::string(s).c_str(), nullptr, 10); }

// Sets every account to kInitialBalance through put(key, value).
template <class Put>
void open_accounts(std::size_t n, Put&& put) {
  for (std::size_t i = 0; i < n; ++i) put(account(i), std::to_string(kInitialBalance));
}

// The transfer every backend makes: `amount` (at most the balance) from a to b.
struct transfer_plan {
  std::string from, to;
  long amount;
};
transfer_plan plan(rng_t& rng, std::size_t accounts) {
  const std::uint64_t a = rng.below(accounts);
  std::uint64_t b = rng.below(accounts - 1);
  if (b >= a) ++b;
  return {account(a), account(b), 1 + static_cast<long>(rng.below(10))};
}

template <class Store>
struct keel_bank {
  fs::path path;
  Store store;
  std::size_t accounts;
  bool verify() {
    long sum = 0;
    for (std::size_t i = 0; i < accounts; ++i) {
      auto v = store.get(account(i));
      if (!v || !*v) return false;
      sum += parse(**v);
    }
    return sum == static_cast<long>(accounts) * kInitialBalance;
  }
};

struct keel_memory_bank : keel_bank<keel::memory_store> {
  explicit keel_memory_bank(std::size_t n) : keel_bank{{}, open(), n} {
    open_accounts(n, [&](const std::string& k, const std::string& v) { must(store.put(k, v), "put"); });
    g_final_checks.push_back([this] { return verify(); });
  }
  static keel::memory_store open() {
    auto s = keel::memory_store::open({});
    must(s, "memory open");
    return std::move(*s);
  }
};

struct keel_rocks_bank : keel_bank<keel::rocks_store> {
  explicit keel_rocks_bank(std::size_t n)
      : keel_bank{fresh_dir("keel-bank"), rocks_keys::open(bench_dir() / "keel-bank"), n} {
    open_accounts(n, [&](const std::string& k, const std::string& v) { must(store.put(k, v), "put"); });
    g_final_checks.push_back([this] { return verify(); });
  }
  ~keel_rocks_bank() {
    (void)store.close();
    fs::remove_all(path);
  }
};

// One transfer through run_transaction; counts the attempts.
template <class Store>
void keel_transfer(Store& store, const transfer_plan& p, std::uint64_t& attempts) {
  auto r = store.run_transaction(
      [&](auto& tx) -> keel::result<void> {
        ++attempts;
        auto a = tx.get(p.from);
        if (!a) return a.error();
        auto b = tx.get(p.to);
        if (!b) return b.error();
        const long x = parse(**a), y = parse(**b), m = std::min(p.amount, x);
        if (auto w = tx.put(p.from, std::to_string(x - m)); !w) return w;
        return tx.put(p.to, std::to_string(y + m));
      },
      /*max_attempts=*/1000);
  must(r, "transfer");
}

template <class Bank>
void bm_keel_transfer(benchmark::State& st) {
  auto& bank = dataset<Bank>(static_cast<std::size_t>(st.range(0)));
  rng_t rng(100 + static_cast<std::uint64_t>(st.thread_index()));
  std::uint64_t attempts = 0, transfers = 0;
  for (auto _ : st) {
    keel_transfer(bank.store, plan(rng, bank.accounts), attempts);
    ++transfers;
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(transfers));
  st.counters["retries_per_1k"] = benchmark::Counter(
      transfers ? 1000.0 * double(attempts - transfers) / double(transfers) : 0, benchmark::Counter::kAvgThreads);
}

struct occ_bank {
  fs::path path = fresh_dir("rocks-occ-bank");
  rocksdb::OptimisticTransactionDB* db = nullptr;
  std::size_t accounts;
  explicit occ_bank(std::size_t n) : accounts(n) {
    rocksdb::Options o;  // RocksDB's defaults, as keel's DefaultTuning
    o.create_if_missing = true;
    must_ok(rocksdb::OptimisticTransactionDB::Open(o, path.string(), &db), "open OptimisticTransactionDB");
    open_accounts(
        n, [&](const std::string& k, const std::string& v) { must_ok(db->Put(rocksdb::WriteOptions(), k, v), "put"); });
    g_final_checks.push_back([this] { return verify(); });
  }
  ~occ_bank() {
    delete db;
    fs::remove_all(path);
  }
  bool verify() {
    long sum = 0;
    std::string v;
    for (std::size_t i = 0; i < accounts; ++i) {
      if (!db->Get(rocksdb::ReadOptions(), account(i), &v).ok()) return false;
      sum += parse(v);
    }
    return sum == static_cast<long>(accounts) * kInitialBalance;
  }
};

void bm_occ_transfer(benchmark::State& st) {
  auto& bank = dataset<occ_bank>(static_cast<std::size_t>(st.range(0)));
  rng_t rng(100 + static_cast<std::uint64_t>(st.thread_index()));
  std::uint64_t attempts = 0, transfers = 0;
  const rocksdb::WriteOptions wo;
  const rocksdb::ReadOptions ro;
  const rocksdb::OptimisticTransactionOptions to;
  rocksdb::Transaction* txn = nullptr;  // reused, as RocksDB allows
  std::string va, vb;
  for (auto _ : st) {
    const transfer_plan p = plan(rng, bank.accounts);
    for (int attempt = 0;; ++attempt) {
      if (attempt > 1) keel::detail::transaction_backoff(attempt);  // the same back-off as run_transaction
      if (attempt >= 1000) die("OptimisticTransactionDB: 1000 attempts in conflict");
      ++attempts;
      txn = bank.db->BeginTransaction(wo, to, txn);
      must_ok(txn->GetForUpdate(ro, p.from, &va), "GetForUpdate");
      must_ok(txn->GetForUpdate(ro, p.to, &vb), "GetForUpdate");
      const long x = parse(va), y = parse(vb), m = std::min(p.amount, x);
      must_ok(txn->Put(p.from, std::to_string(x - m)), "Put");
      must_ok(txn->Put(p.to, std::to_string(y + m)), "Put");
      const rocksdb::Status s = txn->Commit();
      if (s.ok()) break;
      if (!s.IsBusy() && !s.IsTryAgain()) must_ok(s, "Commit");
    }
    ++transfers;
  }
  delete txn;
  st.SetItemsProcessed(static_cast<std::int64_t>(transfers));
  st.counters["retries_per_1k"] = benchmark::Counter(
      transfers ? 1000.0 * double(attempts - transfers) / double(transfers) : 0, benchmark::Counter::kAvgThreads);
}

struct map_bank {
  std::mutex mutex;
  std::map<std::string, std::string, std::less<>> balances;
  std::size_t accounts;
  explicit map_bank(std::size_t n) : accounts(n) {
    open_accounts(n, [&](const std::string& k, const std::string& v) { balances.emplace(k, v); });
    g_final_checks.push_back([this] {
      long sum = 0;
      for (const auto& [k, v] : balances) sum += parse(v);
      return sum == static_cast<long>(accounts) * kInitialBalance;
    });
  }
};

void bm_map_transfer(benchmark::State& st) {
  auto& bank = dataset<map_bank>(static_cast<std::size_t>(st.range(0)));
  rng_t rng(100 + static_cast<std::uint64_t>(st.thread_index()));
  std::uint64_t transfers = 0;
  for (auto _ : st) {
    const transfer_plan p = plan(rng, bank.accounts);
    std::lock_guard lock(bank.mutex);
    auto a = bank.balances.find(p.from);
    auto b = bank.balances.find(p.to);
    if (a == bank.balances.end() || b == bank.balances.end()) die("map: no account");
    const long x = parse(a->second), y = parse(b->second), m = std::min(p.amount, x);
    a->second = std::to_string(x - m);
    b->second = std::to_string(y + m);
    ++transfers;
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(transfers));
  st.counters["retries_per_1k"] = benchmark::Counter(0, benchmark::Counter::kAvgThreads);
}

// ---------------------------------------------------------------------------
// (d) multi_get of 100 keys against 100 get()s.
// ---------------------------------------------------------------------------
// 256 sets of 100 random present keys, made before timing; the benchmarks
// cycle through them.
const std::vector<std::vector<std::string>>& key_sets() {
  static const std::vector<std::vector<std::string>> sets = [] {
    rng_t rng(7);
    std::vector<std::vector<std::string>> v(256, std::vector<std::string>(kMulti));
    for (auto& set : v)
      for (auto& k : set) k = make_key(rng.below(kKeys));
    return v;
  }();
  return sets;
}

void bm_multi_get100(benchmark::State& st) {
  auto& store = dataset<rocks_read_keys>().store;
  const auto& sets = key_sets();
  std::size_t i = 0;
  for (auto _ : st) {
    auto r = store.multi_get(sets[i++ % sets.size()]);
    must(r, "multi_get");
    keep(r);
  }
  st.SetItemsProcessed(st.iterations() * static_cast<std::int64_t>(kMulti));
}

void bm_get100(benchmark::State& st) {
  auto& store = dataset<rocks_read_keys>().store;
  const auto& sets = key_sets();
  std::size_t i = 0;
  for (auto _ : st) {
    for (const auto& k : sets[i++ % sets.size()]) {
      auto r = store.get(k);
      must(r, "get");
      keep(r);
    }
  }
  st.SetItemsProcessed(st.iterations() * static_cast<std::int64_t>(kMulti));
}

// The same two on the same DB, calling RocksDB directly: what RocksDB's own
// MultiGet gains over its Get, without keel.
void bm_raw_multi_get100(benchmark::State& st) {
  auto& store = dataset<rocks_read_keys>().store;
  const auto& sets = key_sets();
  std::size_t i = 0;
  std::vector<rocksdb::Slice> slices(kMulti);
  std::vector<rocksdb::PinnableSlice> values(kMulti);
  std::vector<rocksdb::Status> statuses(kMulti);
  must(store.policy().with_db([&](rocksdb::DB& db) {
    for (auto _ : st) {
      const auto& set = sets[i++ % sets.size()];
      for (std::size_t k = 0; k < kMulti; ++k) {
        slices[k] = rocksdb::Slice(set[k]);
        values[k].Reset();
      }
      db.MultiGet(rocksdb::ReadOptions(), db.DefaultColumnFamily(), kMulti, slices.data(), values.data(),
                  statuses.data());
      for (const auto& s : statuses) must_ok(s, "MultiGet");
      keep(values);
    }
  }),
       "with_db");
  st.SetItemsProcessed(st.iterations() * static_cast<std::int64_t>(kMulti));
}

void bm_raw_get100(benchmark::State& st) {
  auto& store = dataset<rocks_read_keys>().store;
  const auto& sets = key_sets();
  std::size_t i = 0;
  rocksdb::PinnableSlice value;
  must(store.policy().with_db([&](rocksdb::DB& db) {
    for (auto _ : st) {
      for (const auto& k : sets[i++ % sets.size()]) {
        value.Reset();
        must_ok(db.Get(rocksdb::ReadOptions(), db.DefaultColumnFamily(), k, &value), "Get");
        keep(value);
      }
    }
  }),
       "with_db");
  st.SetItemsProcessed(st.iterations() * static_cast<std::int64_t>(kMulti));
}

void register_all() {
  using namespace benchmark;
  RegisterBenchmark("tx_2get2put/memory", bm_tx_2get2put<memory_keys>);
  RegisterBenchmark("plain_2get_batch/memory", bm_plain_2get_batch<memory_keys>);
  RegisterBenchmark("tx_2get2put/rocks", bm_tx_2get2put<rocks_keys>);
  RegisterBenchmark("plain_2get_batch/rocks", bm_plain_2get_batch<rocks_keys>);
  for (auto* b : {RegisterBenchmark("transfer/keel_rocks", bm_keel_transfer<keel_rocks_bank>),
                  RegisterBenchmark("transfer/rocks_occ", bm_occ_transfer),
                  RegisterBenchmark("transfer/keel_memory", bm_keel_transfer<keel_memory_bank>),
                  RegisterBenchmark("transfer/map_mutex", bm_map_transfer)}) {
    b->Arg(1000)->Threads(4)->UseRealTime();
  }
  RegisterBenchmark("multi_get100/rocks", bm_multi_get100);
  RegisterBenchmark("get100/rocks", bm_get100);
  RegisterBenchmark("multi_get100/raw_rocks", bm_raw_multi_get100);
  RegisterBenchmark("get100/raw_rocks", bm_raw_get100);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.starts_with("--keel-dir="))
      dir = a.substr(11);
    else
      rest.push_back(argv[i]);
  }
  const bool own_dir = dir.empty();
  if (own_dir) {
    char tmpl[] = "/tmp/keel-tx-bench-XXXXXX";
    if (!mkdtemp(tmpl)) die("cannot create a temporary directory");
    dir = tmpl;
  }
  bench_dir() = dir;
  fs::create_directories(bench_dir());

  register_all();
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  int status = 0;
  for (auto& check : g_final_checks) {
    if (!check()) {
      std::fprintf(stderr, "keel_tx_bench: a bank's balances no longer add up\n");
      status = 1;
    }
  }
  g_final_checks.clear();
  for (auto& drop : g_droppers) drop();
  if (own_dir) fs::remove_all(bench_dir());
  return status;
}
