// keel's per-operation overhead in instructions, for callgrind (noise-free,
// unlike timings on a shared machine). Each measured loop is its own
// noinline function; run:
//
//   valgrind --tool=callgrind --callgrind-out-file=cg.out --toggle-collect='*m_*' build-bench/bench/keel_overhead
//   callgrind_annotate --inclusive=yes --threshold=100 cg.out | grep '::m_'
//
// Pairs to compare (same data, same operations, back to back):
//   m_raw_get / m_keel_get / m_any_rocks_get        (and _scan, _put)
//   m_memory_get / m_any_memory_get                 (and _scan, _put)
//   m_keel_tx / m_keel_plain_tx, m_memory_tx / m_memory_plain_tx (issue 12):
//     5000 transactions of 2 gets + 2 puts against the same work without a
//     transaction (2 gets + one 2-put write_batch)
//   m_keel_multi_get / m_keel_get100 (issue 12): 200 multi_get()s of 100 keys
//     against the same keys read by 20000 get()s
//   m_memory_put / m_map_put, m_memory_batch100 / m_map_batch100 (issue 15):
//     the memory store against bench/baselines.hpp's std::map +
//     std::shared_mutex, 20000 puts or 200 batches of 100 puts each
//   m_memory_transfer / m_map_transfer (issue 12): 20000 bank transfers
//     between 1000 accounts through run_transaction on a memory store,
//     against a std::map behind one mutex held for the whole transfer
//   m_memory_ks_get / _scan / _put against m_memory_get / _scan / _put
//     (issue 27): the same loops through a keyspace handle, on a memory
//     store with the same data in keyspace "ks" and 3 other keyspaces
//   m_ks_default_get / m_ks_get (and _scan, _put) (issue 27): one RocksDB
//     store with the same keys in the default keyspace and in keyspace "ks"
//     (a column family), through the store and through the keyspace handle
// 20000 gets or puts, or 20 prefix scans of 1000 entries, per function;
// 10000 keys of 16 bytes, 100-byte values, flushed and compacted.
#include <keel/keel.hpp>
#include <rocksdb/db.h>

#include "baselines.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "keys.hpp"

namespace {

constexpr unsigned kKeys = 10000, kOps = 20000, kScans = 20;
volatile std::size_t sink;

using keel_bench::key;
using keel_bench::value;
std::string prefix(unsigned b) { return key(b * 1000 % kKeys).substr(0, 12); }

// keel stores (basic_store or any_store): one template, distinct symbols.
template <class S>
[[gnu::noinline]] void get_loop(S& s) {
  for (unsigned i = 0; i < kOps; ++i) sink = sink + (*s.get(key(i * 7919u % kKeys)))->size();
}
template <class S>
[[gnu::noinline]] void put_loop(S& s) {
  for (unsigned i = 0; i < kOps; ++i) (void)s.put(key(i * 7919u % kKeys), value(i));
}
constexpr unsigned kBatches = 200, kBatch = 100;
template <class S>
[[gnu::noinline]] void batch_loop(S& s) {
  keel::write_batch b;
  for (unsigned r = 0; r < kBatches; ++r) {
    b.clear();
    for (unsigned i = 0; i < kBatch; ++i) b.put(key((r * kBatch + i) * 7919u % kKeys), value(i));
    (void)s.write(b);
  }
}
template <class S>
[[gnu::noinline]] void scan_loop(S& s) {
  for (unsigned b = 0; b < kScans; ++b)
    for (const auto& e : s.scan(keel::key_range::prefix(prefix(b)))) sink = sink + e.key.size() + e.value.size();
}

constexpr unsigned kTx = 5000, kMulti = 100;
template <class S>
[[gnu::noinline]] void tx_loop(S& s) {
  for (unsigned i = 0; i < kTx; ++i) {
    const std::string a = key(i * 7919u % kKeys), b = key(i * 104729u % kKeys);
    auto tx = s.transaction();
    sink = sink + (*tx.get(a))->size() + (*tx.get(b))->size();
    (void)tx.put(a, value(i));
    (void)tx.put(b, value(i + 1));
    (void)tx.commit();
  }
}
template <class S>
[[gnu::noinline]] void plain_tx_loop(S& s) {
  for (unsigned i = 0; i < kTx; ++i) {
    const std::string a = key(i * 7919u % kKeys), b = key(i * 104729u % kKeys);
    sink = sink + (*s.get(a))->size() + (*s.get(b))->size();
    keel::write_batch batch;
    batch.put(a, value(i)).put(b, value(i + 1));
    (void)s.write(batch);
  }
}
std::vector<std::string> multi_keys(unsigned round) {
  std::vector<std::string> keys(kMulti);
  for (unsigned k = 0; k < kMulti; ++k) keys[k] = key((round * kMulti + k) * 7919u % kKeys);
  return keys;
}
template <class S>
[[gnu::noinline]] void multi_get_loop(S& s) {
  for (unsigned r = 0; r < kOps / kMulti; ++r) sink = sink + s.multi_get(multi_keys(r))->size();
}
template <class S>
[[gnu::noinline]] void get100_loop(S& s) {
  for (unsigned r = 0; r < kOps / kMulti; ++r)
    for (const auto& k : multi_keys(r)) sink = sink + (*s.get(k))->size();
}

std::string account(unsigned i) { return "account/" + std::to_string(i); }
long parse(std::string_view v) { return std::strtol(std::string(v).c_str(), nullptr, 10); }
[[gnu::noinline]] void memory_transfer_loop(keel::memory_store& s) {
  for (unsigned i = 0; i < kOps; ++i) {
    const std::string a = account(i * 7919u % 1000), b = account((i * 7919u + 1 + i % 997) % 1000);
    (void)s.run_transaction([&](auto& tx) -> keel::result<void> {
      auto x = tx.get(a);
      if (!x) return x.error();
      auto y = tx.get(b);
      if (!y) return y.error();
      const long p = parse(**x), q = parse(**y);
      if (auto w = tx.put(a, std::to_string(p - 1)); !w) return w;
      return tx.put(b, std::to_string(q + 1));
    });
  }
}
struct locked_map {
  std::mutex mutex;
  std::map<std::string, std::string, std::less<>> balances;
};
[[gnu::noinline]] void map_transfer_loop(locked_map& m) {
  for (unsigned i = 0; i < kOps; ++i) {
    const std::string a = account(i * 7919u % 1000), b = account((i * 7919u + 1 + i % 997) % 1000);
    std::lock_guard lock(m.mutex);
    auto x = m.balances.find(a);
    auto y = m.balances.find(b);
    const long p = parse(x->second), q = parse(y->second);
    x->second = std::to_string(p - 1);
    y->second = std::to_string(q + 1);
  }
}

[[gnu::noinline]] void raw_get_loop(rocksdb::DB* db) {
  for (unsigned i = 0; i < kOps; ++i) {
    std::string v;
    (void)db->Get(rocksdb::ReadOptions(), key(i * 7919u % kKeys), &v);
    sink = sink + v.size();
  }
}
[[gnu::noinline]] void raw_put_loop(rocksdb::DB* db) {
  for (unsigned i = 0; i < kOps; ++i) (void)db->Put(rocksdb::WriteOptions(), key(i * 7919u % kKeys), value(i));
}
[[gnu::noinline]] void raw_scan_loop(rocksdb::DB* db) {
  for (unsigned b = 0; b < kScans; ++b) {
    std::string lo = prefix(b), hi = *keel::key_range::prefix_successor(lo);
    rocksdb::Slice l(lo), h(hi);
    rocksdb::ReadOptions ro;
    ro.iterate_lower_bound = &l;
    ro.iterate_upper_bound = &h;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
    for (it->Seek(l); it->Valid(); it->Next()) sink = sink + it->key().size() + it->value().size();
  }
}

// Named wrappers: the names callgrind reports. Each adds its own constant to
// the sink so that the compiler cannot fold identical bodies into one symbol.
using rocks_basic = keel::rocks_store;
[[gnu::noinline]] void m_raw_get(rocksdb::DB* db) { sink = sink + 1; raw_get_loop(db); }
[[gnu::noinline]] void m_raw_scan(rocksdb::DB* db) { sink = sink + 2; raw_scan_loop(db); }
[[gnu::noinline]] void m_raw_put(rocksdb::DB* db) { sink = sink + 3; raw_put_loop(db); }
[[gnu::noinline]] void m_keel_get(rocks_basic& s) { sink = sink + 4; get_loop(s); }
[[gnu::noinline]] void m_keel_scan(rocks_basic& s) { sink = sink + 5; scan_loop(s); }
[[gnu::noinline]] void m_keel_put(rocks_basic& s) { sink = sink + 6; put_loop(s); }
[[gnu::noinline]] void m_any_rocks_get(keel::any_store& s) { sink = sink + 7; get_loop(s); }
[[gnu::noinline]] void m_any_rocks_scan(keel::any_store& s) { sink = sink + 8; scan_loop(s); }
[[gnu::noinline]] void m_any_rocks_put(keel::any_store& s) { sink = sink + 9; put_loop(s); }
[[gnu::noinline]] void m_memory_get(keel::memory_store& s) { sink = sink + 10; get_loop(s); }
[[gnu::noinline]] void m_memory_scan(keel::memory_store& s) { sink = sink + 11; scan_loop(s); }
[[gnu::noinline]] void m_memory_put(keel::memory_store& s) { sink = sink + 12; put_loop(s); }
[[gnu::noinline]] void m_any_memory_get(keel::any_store& s) { sink = sink + 13; get_loop(s); }
[[gnu::noinline]] void m_any_memory_scan(keel::any_store& s) { sink = sink + 14; scan_loop(s); }
[[gnu::noinline]] void m_any_memory_put(keel::any_store& s) { sink = sink + 15; put_loop(s); }
[[gnu::noinline]] void m_keel_tx(rocks_basic& s) { sink = sink + 16; tx_loop(s); }
[[gnu::noinline]] void m_keel_plain_tx(rocks_basic& s) { sink = sink + 17; plain_tx_loop(s); }
[[gnu::noinline]] void m_memory_tx(keel::memory_store& s) { sink = sink + 18; tx_loop(s); }
[[gnu::noinline]] void m_memory_plain_tx(keel::memory_store& s) { sink = sink + 19; plain_tx_loop(s); }
[[gnu::noinline]] void m_keel_multi_get(rocks_basic& s) { sink = sink + 20; multi_get_loop(s); }
[[gnu::noinline]] void m_keel_get100(rocks_basic& s) { sink = sink + 21; get100_loop(s); }
[[gnu::noinline]] void m_memory_transfer(keel::memory_store& s) { sink = sink + 22; memory_transfer_loop(s); }
[[gnu::noinline]] void m_map_transfer(locked_map& m) { sink = sink + 23; map_transfer_loop(m); }
[[gnu::noinline]] void m_memory_batch100(keel::memory_store& s) { sink = sink + 24; batch_loop(s); }
[[gnu::noinline]] void m_map_put(keel_bench::map_store& m) { sink = sink + 25; put_loop(m); }
[[gnu::noinline]] void m_map_batch100(keel_bench::map_store& m) { sink = sink + 26; batch_loop(m); }
[[gnu::noinline]] void m_memory_ks_get(keel::basic_keyspace<keel::MemoryPolicy>& k) { sink = sink + 27; get_loop(k); }
[[gnu::noinline]] void m_memory_ks_scan(keel::basic_keyspace<keel::MemoryPolicy>& k) { sink = sink + 28; scan_loop(k); }
[[gnu::noinline]] void m_memory_ks_put(keel::basic_keyspace<keel::MemoryPolicy>& k) { sink = sink + 29; put_loop(k); }
// Keyspaces (issue 27): one store holding the same keys in "" and in keyspace
// "ks"; the default keyspace through the store against "ks" through its handle.
using rocks_keyspace = keel::basic_keyspace<keel::RocksPolicy<keel::NativeTuning>>;
[[gnu::noinline]] void m_ks_default_get(rocks_basic& s) { sink = sink + 30; get_loop(s); }
[[gnu::noinline]] void m_ks_get(rocks_keyspace& s) { sink = sink + 31; get_loop(s); }
[[gnu::noinline]] void m_ks_default_scan(rocks_basic& s) { sink = sink + 32; scan_loop(s); }
[[gnu::noinline]] void m_ks_scan(rocks_keyspace& s) { sink = sink + 33; scan_loop(s); }
[[gnu::noinline]] void m_ks_default_put(rocks_basic& s) { sink = sink + 34; put_loop(s); }
[[gnu::noinline]] void m_ks_put(rocks_keyspace& s) { sink = sink + 35; put_loop(s); }

void compact(rocksdb::DB& db) {
  (void)db.Flush(rocksdb::FlushOptions());
  (void)db.CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  fs::path dir = argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path() / "keel-overhead";
  fs::remove_all(dir);
  fs::create_directories(dir);

  // Two identical DBs: raw calls on one, keel on the other (same options:
  // the tuning keel's store uses, applied by hand).
  rocksdb::Options options;
  keel::NativeTuning::apply(options);
  options.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  if (!rocksdb::DB::Open(options, (dir / "raw").string(), &db).ok()) return 1;
  auto opened = keel::rocks_store::open({.path = dir / "keel"});
  if (!opened) return 1;
  keel::any_store any(std::move(*opened));
  rocks_basic& basic = *any.get_if<keel::RocksPolicy<keel::NativeTuning>>();
  for (unsigned i = 0; i < kKeys; ++i) {
    (void)db->Put(rocksdb::WriteOptions(), key(i), value(i));
    (void)basic.put(key(i), value(i));
  }
  compact(*db);
  (void)basic.policy().with_db([](rocksdb::DB& d) { compact(d); });

  // Reads first (the puts change the memtables), each pair back to back.
  m_raw_get(db);
  m_keel_get(basic);
  m_any_rocks_get(any);
  m_raw_scan(db);
  m_keel_scan(basic);
  m_any_rocks_scan(any);
  m_keel_multi_get(basic);
  m_keel_get100(basic);
  m_raw_put(db);
  m_keel_put(basic);
  m_any_rocks_put(any);
  m_keel_tx(basic);
  m_keel_plain_tx(basic);
  delete db;

  {
    auto two = keel::rocks_store::open({.path = dir / "keyspaces"});
    if (!two) return 1;
    auto ks = two->keyspace("ks");
    if (!ks) return 1;
    for (unsigned i = 0; i < kKeys; ++i) {
      (void)two->put(key(i), value(i));
      (void)ks->put(key(i), value(i));
    }
    (void)two->compact();
    (void)ks->compact();
    m_ks_default_get(*two);
    m_ks_get(*ks);
    m_ks_default_scan(*two);
    m_ks_scan(*ks);
    m_ks_default_put(*two);
    m_ks_put(*ks);
    (void)two->close();
  }

  auto mem = keel::memory_store::open({});
  if (!mem) return 1;
  keel::any_store any_mem(std::move(*mem));
  keel::memory_store& mbasic = *any_mem.get_if<keel::MemoryPolicy>();
  for (unsigned i = 0; i < kKeys; ++i) (void)mbasic.put(key(i), value(i));
  m_memory_get(mbasic);
  m_any_memory_get(any_mem);
  m_memory_scan(mbasic);
  m_any_memory_scan(any_mem);
  m_memory_put(mbasic);
  m_any_memory_put(any_mem);
  m_memory_tx(mbasic);
  m_memory_plain_tx(mbasic);
  m_memory_batch100(mbasic);
  keel_bench::map_store map_baseline;
  for (unsigned i = 0; i < kKeys; ++i) map_baseline.put(key(i), value(i));
  m_map_put(map_baseline);
  m_map_batch100(map_baseline);

  auto bank = keel::memory_store::open({});
  if (!bank) return 1;
  locked_map map;
  for (unsigned i = 0; i < 1000; ++i) {
    (void)bank->put(account(i), "1000000");
    map.balances.emplace(account(i), "1000000");
  }
  m_memory_transfer(*bank);
  m_map_transfer(map);

  auto spaced = keel::memory_store::open({});
  if (!spaced) return 1;
  for (const char* other : {"a", "kt", "z"}) (void)spaced->keyspace(other);
  auto ks = spaced->keyspace("ks");
  if (!ks) return 1;
  for (unsigned i = 0; i < kKeys; ++i) (void)ks->put(key(i), value(i));
  m_memory_ks_get(*ks);
  m_memory_ks_scan(*ks);
  m_memory_ks_put(*ks);

  (void)any.close();
  fs::remove_all(dir);
  return 0;
}
