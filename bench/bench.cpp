// keel benchmarks: every backend against real baselines, in one binary.
//
// Backends (the second component of each benchmark name):
//   memory          keel::memory_store (basic_store<MemoryPolicy>)
//   any_memory      keel::any_store holding that memory store
//   virtual_memory  a virtual-interface wrapper over that memory store
//   map             baseline: std::map + std::shared_mutex, snapshot = full copy
//   rocks_default   basic_store<RocksPolicy<DefaultTuning>> (= keel::rocks_store on Linux)
//   any_rocks       keel::any_store holding that RocksDB store
//   virtual_rocks   a virtual-interface wrapper over that RocksDB store
//   rocks_macos     basic_store<RocksPolicy<MacOSTuning>>
//   raw_rocks       baseline: rocksdb::DB called directly, same options as rocks_default
//                   (DefaultTuning applied by hand)
//   raw_defaults    baseline: rocksdb::DB called directly with RocksDB's own,
//                   untouched defaults (what DefaultTuning is measured against)
//   raw_memenv      baseline: rocksdb::DB on rocksdb::NewMemEnv (no disk), DefaultTuning's options
//   lmdb            baseline: LMDB (MDB_NOSYNC | MDB_WRITEMAP, on tmpfs): one write
//                   transaction per put, a read transaction renewed per get,
//                   the value copied out (only when built with liblmdb-dev)
//
// memory/any_memory/virtual_memory share one dataset, and so do
// rocks_default/any_rocks/virtual_rocks (one DB, three ways to call it): the
// comparison between them measures only the calling layer. put and batch100
// on the RocksDB backends run on a DB of their own per backend, built the
// same way, so that no backend writes into a DB that others (or the
// concurrent benchmark) have already filled with memtable and L0 data.
//
// Workloads (first component), each at 10k, 100k and 1M keys (16-byte keys,
// 100-byte values): get_hit, get_miss, put (overwrite), batch100 (one
// 100-op write batch), scan1000 (a prefix holding 1000 keys), snapshot
// (create + release), snapshot_get, reopen (RocksDB backends only: close and
// open the same path), concurrent (1 writer + 2 readers, ops/s per thread;
// concurrent_paced: the writer held to 20k puts/s),
// footprint (memory backends: heap bytes per entry beyond key + value).
//
// Datasets are built once per process and size, then reused; RocksDB
// datasets are bulk loaded in key order, flushed and compacted, so every
// RocksDB backend reads the same LSM shape. Extra flags (before Google
// Benchmark's own):
//   --keel-quick        10k and 100k keys only
//   --keel-sizes=a,b    explicit sizes
//   --keel-dir=PATH     where RocksDB datasets go (default: a fresh dir in /tmp)
#include <malloc.h>
#include <unistd.h>

#include <benchmark/benchmark.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#if KEEL_BENCH_LMDB
#include <lmdb.h>
#endif

#include "baselines.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace keel_bench {

std::unique_ptr<virtual_store> make_virtual(keel::basic_store<keel::MemoryPolicy>* s) {
  return std::make_unique<virtual_store_impl<keel::MemoryPolicy>>(s);
}
std::unique_ptr<virtual_store> make_virtual(keel::rocks_store* s) {
  return std::make_unique<virtual_store_impl<keel::RocksPolicy<keel::NativeTuning>>>(s);
}

namespace {

// ---------------------------------------------------------------------------
// Keys and values.
// Key i (present): "user" + 11 decimal digits of i + "0" (16 bytes).
// Miss key i: the same with a trailing "1": absent, but between present keys.
// A 1000-key prefix: "user" + the first 8 of the 11 digits (12 bytes).
// Values: 100 bytes cut from a 1 MiB random pool at a key-dependent offset
// (incompressible, like most real payloads).
// ---------------------------------------------------------------------------
constexpr std::size_t kKeyLen = 16, kValueLen = 100, kScanLen = 1000, kBatch = 100;

struct key_buf {
  char b[kKeyLen];
  std::string_view view() const { return {b, kKeyLen}; }
};
inline key_buf make_key(std::uint64_t i, char last = '0') {
  key_buf k;
  std::memcpy(k.b, "user", 4);
  for (int d = 14; d >= 4; --d) {
    k.b[d] = static_cast<char>('0' + i % 10);
    i /= 10;
  }
  k.b[15] = last;
  return k;
}
inline std::string scan_prefix(std::uint64_t block) {  // keys [block*1000, block*1000 + 1000)
  key_buf k = make_key(block * kScanLen);
  return std::string(k.b, 12);
}

const std::string& value_pool() {
  static const std::string pool = [] {
    std::string p(1 << 20, '\0');
    std::mt19937_64 rng(42);
    for (auto& c : p) c = static_cast<char>(rng());
    return p;
  }();
  return pool;
}
inline std::string_view value_for(std::uint64_t i) {
  return std::string_view(value_pool()).substr((i * 104729u) % (value_pool().size() - kValueLen), kValueLen);
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

std::vector<std::uint64_t> shuffled(std::size_t n) {
  std::vector<std::uint64_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  std::shuffle(v.begin(), v.end(), std::mt19937_64(7));
  return v;
}

// Heap bytes in use, all arenas, mmapped blocks included. The caller makes
// sure nothing else allocates meanwhile (value_pool() is built beforehand).
std::size_t heap_in_use() {
  (void)value_pool();
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

fs::path& bench_dir() {
  static fs::path dir;
  return dir;
}

void die(const std::string& what) {
  std::fprintf(stderr, "keel bench: %s\n", what.c_str());
  std::exit(2);
}
template <class R>
void must(const R& r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().message());
}
void must_ok(const rocksdb::Status& s, const char* what) {
  if (!s.ok()) die(std::string(what) + ": " + s.ToString());
}

// ---------------------------------------------------------------------------
// Datasets: built once per (kind, size); all are dropped when the size
// changes (benchmarks are registered size by size).
// ---------------------------------------------------------------------------
std::mutex g_dataset_mutex;
std::size_t g_dataset_size = 0;
std::vector<std::function<void()>> g_dataset_droppers;

template <class D>
D& dataset(std::size_t n) {
  static std::unique_ptr<D> d;
  static bool registered = false;
  std::lock_guard lock(g_dataset_mutex);
  if (!registered) {
    g_dataset_droppers.push_back([] { d.reset(); });
    registered = true;
  }
  if (g_dataset_size != n) {
    for (auto& drop : g_dataset_droppers) drop();
    g_dataset_size = n;
  }
  if (!d) d = std::make_unique<D>(n);
  return *d;
}

fs::path fresh_dir(const std::string& name, std::size_t n) {
  fs::path p = bench_dir() / (name + "-" + std::to_string(n));
  fs::remove_all(p);
  return p;
}

// Loads keys [0, n) in key order through `put_batch(first, last)`.
template <class F>
void load_in_order(std::size_t n, F&& put_batch) {
  constexpr std::size_t chunk = 10000;
  for (std::size_t i = 0; i < n; i += chunk) put_batch(i, std::min(n, i + chunk));
}

void flush_and_compact(rocksdb::DB& db) {
  must_ok(db.Flush(rocksdb::FlushOptions()), "flush");
  must_ok(db.CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr), "compact");
}

// The keel memory store inside an any_store (so that memory, any_memory and
// virtual_memory read one dataset). Loaded in random order, 1000 per batch.
struct memory_data {
  keel::any_store any;
  std::unique_ptr<virtual_store> virt;
  std::size_t n;
  double bytes_per_entry = 0;  // heap bytes per key beyond the 116 raw bytes
  explicit memory_data(std::size_t n_) : any(open()), n(n_) {
    auto* s = store();
    std::size_t before = heap_in_use();
    keel::write_batch b;
    for (std::uint64_t i : shuffled(n)) {
      b.put(make_key(i).view(), value_for(i));
      if (b.size() == 1000) {
        must(s->write(b), "memory load");
        b.clear();
      }
    }
    must(s->write(b), "memory load");
    b = keel::write_batch();
    bytes_per_entry = (double(heap_in_use()) - double(before)) / double(n) - double(kKeyLen + kValueLen);
    virt = make_virtual(s);
  }
  static keel::any_store open() {
    auto s = keel::memory_store::open({});
    must(s, "memory open");
    return keel::any_store(std::move(*s));
  }
  keel::memory_store* store() { return any.get_if<keel::MemoryPolicy>(); }
};

struct map_data {
  map_store map;
  std::size_t n;
  double bytes_per_entry = 0;
  explicit map_data(std::size_t n_) : n(n_) {
    std::size_t before = heap_in_use();
    for (std::uint64_t i : shuffled(n)) map.put(make_key(i).view(), value_for(i));
    bytes_per_entry = (double(heap_in_use()) - double(before)) / double(n) - double(kKeyLen + kValueLen);
  }
};

// keel RocksDB store (NativeTuning = DefaultTuning on Linux) inside an
// any_store: rocks_default, any_rocks and virtual_rocks read this one DB
// (Slot 0). Slots 1-3: the DBs their put and batch100 write to, one each.
template <int Slot>
struct rocks_data_slot {
  fs::path path;
  keel::any_store any;
  std::unique_ptr<virtual_store> virt;
  std::size_t n;
  explicit rocks_data_slot(std::size_t n_)
      : path(fresh_dir("rocks_default" + std::to_string(Slot), n_)), any(open(path)), n(n_) {
    auto* s = store();
    load_in_order(n, [&](std::size_t lo, std::size_t hi) {
      keel::write_batch b;
      for (std::size_t i = lo; i < hi; ++i) b.put(make_key(i).view(), value_for(i));
      must(s->write(b), "rocks load");
    });
    must(s->policy().with_db([](rocksdb::DB& db) { flush_and_compact(db); }), "rocks compact");
    virt = make_virtual(s);
  }
  ~rocks_data_slot() {
    virt.reset();
    (void)any.close();
    fs::remove_all(path);
  }
  static keel::any_store open(const fs::path& p) {
    auto s = keel::rocks_store::open({.path = p});
    must(s, "rocks open");
    return keel::any_store(std::move(*s));
  }
  keel::rocks_store* store() { return any.get_if<keel::RocksPolicy<keel::NativeTuning>>(); }
};
using rocks_data = rocks_data_slot<0>;

template <int Slot>
struct rocks_macos_data_slot {
  fs::path path;
  keel::basic_store<keel::RocksPolicy<keel::MacOSTuning>> store;
  std::size_t n;
  explicit rocks_macos_data_slot(std::size_t n_)
      : path(fresh_dir("rocks_macos" + std::to_string(Slot), n_)), store(open(path)), n(n_) {
    load_in_order(n, [&](std::size_t lo, std::size_t hi) {
      keel::write_batch b;
      for (std::size_t i = lo; i < hi; ++i) b.put(make_key(i).view(), value_for(i));
      must(store.write(b), "rocks_macos load");
    });
    must(store.policy().with_db([](rocksdb::DB& db) { flush_and_compact(db); }), "rocks_macos compact");
  }
  ~rocks_macos_data_slot() {
    (void)store.close();
    fs::remove_all(path);
  }
  static keel::basic_store<keel::RocksPolicy<keel::MacOSTuning>> open(const fs::path& p) {
    auto s = keel::basic_store<keel::RocksPolicy<keel::MacOSTuning>>::open({.path = p});
    must(s, "rocks_macos open");
    return std::move(*s);
  }
};
using rocks_macos_data = rocks_macos_data_slot<0>;

// Raw RocksDB, on disk or on a memory Env, with the options keel's
// DefaultTuning gives (applied by hand) or with RocksDB's untouched defaults
// (Defaults). Slot 0: the DB reads use; slot 1: the DB put and batch100 use.
template <bool MemEnv, bool Defaults = false, int Slot = 0>
struct raw_data {
  std::unique_ptr<rocksdb::Env> env;
  fs::path path;
  rocksdb::Options options;
  rocksdb::DB* db = nullptr;
  std::size_t n;
  explicit raw_data(std::size_t n_) : n(n_) {
    if constexpr (MemEnv) {
      env.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
      options.env = env.get();
      path = "/keel-bench-memenv" + std::to_string(Slot) + "-" + std::to_string(n);
    } else {
      path = fresh_dir(std::string(Defaults ? "raw_defaults" : "raw_rocks") + std::to_string(Slot), n);
      fs::create_directories(path);
    }
    if constexpr (!Defaults) keel::DefaultTuning::apply(options);
    options.create_if_missing = true;
    open();
    load_in_order(n, [&](std::size_t lo, std::size_t hi) {
      rocksdb::WriteBatch b;
      for (std::size_t i = lo; i < hi; ++i) {
        key_buf k = make_key(i);
        std::string_view v = value_for(i);
        b.Put(rocksdb::Slice(k.b, kKeyLen), rocksdb::Slice(v.data(), v.size()));
      }
      must_ok(db->Write(rocksdb::WriteOptions(), &b), "raw load");
    });
    flush_and_compact(*db);
  }
  void open() { must_ok(rocksdb::DB::Open(options, path.string(), &db), "raw open"); }
  // What keel's close() does, spelled out: sync the WAL, Close, delete.
  void close() {
    if constexpr (!MemEnv) must_ok(db->FlushWAL(true), "raw FlushWAL");  // MemEnv cannot sync
    must_ok(db->Close(), "raw close");
    delete db;
    db = nullptr;
  }
  ~raw_data() {
    if (db) close();
    if constexpr (!MemEnv) fs::remove_all(path);
  }
};

// ---------------------------------------------------------------------------
// Adapters: one per backend, the same member names, no virtual calls.
// get() returns whether the key was found; scan() the number of entries
// visited (every key and value is touched).
// ---------------------------------------------------------------------------
template <class T>
inline void keep(T&& v) {
  benchmark::DoNotOptimize(v);
}

inline std::size_t touch(std::string_view k, std::string_view v) {
  benchmark::DoNotOptimize(k.data());
  benchmark::DoNotOptimize(v.data());
  return k.size() + v.size();
}

template <class Store>
inline bool keel_get(const Store& s, std::string_view k) {
  auto r = s.get(k);
  keep(r);
  return r && r->has_value();
}
inline void keel_batch(auto& s, rng_t& rng, std::size_t n) {
  keel::write_batch b;
  for (std::size_t j = 0; j < kBatch; ++j) {
    std::uint64_t i = rng.below(n);
    b.put(make_key(i).view(), value_for(i + 1));
  }
  must(s.write(b), "batch");
}
template <class Store>
inline std::size_t keel_scan(const Store& s, std::string_view prefix) {
  std::size_t count = 0, bytes = 0;
  auto c = s.scan(keel::key_range::prefix(prefix));
  for (const auto& e : c) {
    bytes += touch(e.key, e.value);
    ++count;
  }
  keep(bytes);
  return count;
}

// keel stores reached directly (basic_store) or through any_store: the same
// code, only the store type differs.
template <class Data, class Store, Store* (*Get)(Data&)>
struct keel_adapter {
  Data& d;
  Store& s;
  std::size_t n;
  explicit keel_adapter(std::size_t n_) : d(dataset<Data>(n_)), s(*Get(d)), n(n_) {}
  bool get(std::string_view k) { return keel_get(s, k); }
  void put(std::string_view k, std::string_view v) { must(s.put(k, v), "put"); }
  void batch(rng_t& rng) { keel_batch(s, rng, n); }
  std::size_t scan(std::string_view prefix) { return keel_scan(s, prefix); }
  auto snapshot() { return s.snapshot(); }
  template <class Snap>
  bool snap_get(const Snap& snap, std::string_view k) {
    return keel_get(snap, k);
  }
};

keel::memory_store* memory_basic(memory_data& d) { return d.store(); }
keel::any_store* memory_any(memory_data& d) { return &d.any; }
template <class D>
keel::rocks_store* rocks_basic(D& d) {
  return d.store();
}
template <class D>
keel::any_store* rocks_any(D& d) {
  return &d.any;
}
template <class D>
keel::basic_store<keel::RocksPolicy<keel::MacOSTuning>>* macos_basic(D& d) {
  return &d.store;
}

struct memory_adapter : keel_adapter<memory_data, keel::memory_store, memory_basic> {
  static constexpr const char* name = "memory";
  using keel_adapter::keel_adapter;
  double footprint() { return d.bytes_per_entry; }
};
struct any_memory_adapter : keel_adapter<memory_data, keel::any_store, memory_any> {
  static constexpr const char* name = "any_memory";
  using keel_adapter::keel_adapter;
};
struct rocks_default_adapter : keel_adapter<rocks_data, keel::rocks_store, rocks_basic<rocks_data>> {
  static constexpr const char* name = "rocks_default";
  using writer = keel_adapter<rocks_data_slot<1>, keel::rocks_store, rocks_basic<rocks_data_slot<1>>>;
  using keel_adapter::keel_adapter;
  void reopen() {
    must(s.close(), "close");
    auto r = keel::rocks_store::open({.path = d.path});
    must(r, "reopen");
    s = std::move(*r);
  }
};
struct any_rocks_adapter : keel_adapter<rocks_data, keel::any_store, rocks_any<rocks_data>> {
  static constexpr const char* name = "any_rocks";
  using writer = keel_adapter<rocks_data_slot<2>, keel::any_store, rocks_any<rocks_data_slot<2>>>;
  using keel_adapter::keel_adapter;
  void reopen() {
    must(s.close(), "close");
    s = rocks_data::open(d.path);
    d.virt = make_virtual(d.store());
  }
};
struct rocks_macos_adapter : keel_adapter<rocks_macos_data, keel::basic_store<keel::RocksPolicy<keel::MacOSTuning>>,
                                           macos_basic<rocks_macos_data>> {
  static constexpr const char* name = "rocks_macos";
  using writer = keel_adapter<rocks_macos_data_slot<1>, keel::basic_store<keel::RocksPolicy<keel::MacOSTuning>>,
                              macos_basic<rocks_macos_data_slot<1>>>;
  using keel_adapter::keel_adapter;
  void reopen() {
    must(s.close(), "close");
    s = rocks_macos_data::open(d.path);
  }
};

template <class Data, const char* Name, class Writer = void>
struct virtual_adapter {
  static constexpr const char* name = Name;
  using writer = std::conditional_t<std::is_void_v<Writer>, virtual_adapter, Writer>;
  virtual_store& s;
  std::size_t n;
  explicit virtual_adapter(std::size_t n_) : s(*dataset<Data>(n_).virt), n(n_) {}
  bool get(std::string_view k) { return keel_get(s, k); }
  void put(std::string_view k, std::string_view v) { must(s.put(k, v), "put"); }
  void batch(rng_t& rng) { keel_batch(s, rng, n); }
  std::size_t scan(std::string_view prefix) {
    std::size_t count = 0, bytes = 0;
    for (auto c = s.scan(keel::key_range::prefix(prefix)); c->valid(); c->next()) {
      bytes += touch(c->key(), c->value());
      ++count;
    }
    keep(bytes);
    return count;
  }
  auto snapshot() { return s.snapshot(); }
  bool snap_get(const std::unique_ptr<virtual_snapshot>& snap, std::string_view k) { return keel_get(*snap, k); }
};
constexpr char virtual_memory_name[] = "virtual_memory";
constexpr char virtual_rocks_name[] = "virtual_rocks";
using virtual_memory_adapter = virtual_adapter<memory_data, virtual_memory_name>;
using virtual_rocks_adapter =
    virtual_adapter<rocks_data, virtual_rocks_name, virtual_adapter<rocks_data_slot<3>, virtual_rocks_name>>;

struct map_adapter {
  static constexpr const char* name = "map";
  map_data& d;
  std::size_t n;
  explicit map_adapter(std::size_t n_) : d(dataset<map_data>(n_)), n(n_) {}
  bool get(std::string_view k) {
    auto r = d.map.get(k);
    keep(r);
    return r.has_value();
  }
  void put(std::string_view k, std::string_view v) { d.map.put(k, v); }
  void batch(rng_t& rng) {
    keel::write_batch b;
    for (std::size_t j = 0; j < kBatch; ++j) {
      std::uint64_t i = rng.below(n);
      b.put(make_key(i).view(), value_for(i + 1));
    }
    d.map.write(b);
  }
  std::size_t scan(std::string_view prefix) {
    std::size_t count = 0, bytes = 0;
    std::string hi = *keel::key_range::prefix_successor(prefix);
    d.map.scan(prefix, hi, [&](std::string_view k, std::string_view v) {
      bytes += touch(k, v);
      ++count;
    });
    keep(bytes);
    return count;
  }
  auto snapshot() { return d.map.snapshot(); }
  bool snap_get(const map_store::snapshot_type& snap, std::string_view k) {
    auto r = map_store::get(snap, k);
    keep(r);
    return r.has_value();
  }
  double footprint() { return d.bytes_per_entry; }
};

#if KEEL_BENCH_LMDB
// LMDB: a copy-on-write B+tree with snapshots, what a C++ developer picks for
// a fast embedded store. The fastest honest setup: on tmpfs (/dev/shm),
// MDB_NOSYNC | MDB_WRITEMAP (no fsync, writes straight into the map: like
// keel's memory store, nothing survives a machine crash), MDB_NOTLS (read
// transactions are not tied to threads). Loaded in random order like the
// memory store, 1000 puts per write transaction.
void must_mdb(int rc, const char* what) {
  if (rc != MDB_SUCCESS) die(std::string(what) + ": " + mdb_strerror(rc));
}
struct lmdb_data {
  fs::path path;
  MDB_env* env = nullptr;
  MDB_dbi dbi = 0;
  std::size_t n;
  explicit lmdb_data(std::size_t n_) : n(n_) {
    fs::path shm = fs::exists("/dev/shm") ? fs::path("/dev/shm") : bench_dir();
    path = shm / ("keel-bench-lmdb-" + std::to_string(::getpid()) + "-" + std::to_string(n));
    fs::remove_all(path);
    fs::create_directories(path);
    must_mdb(mdb_env_create(&env), "mdb_env_create");
    must_mdb(mdb_env_set_mapsize(env, std::size_t{1} << 32), "mdb_env_set_mapsize");  // 4 GiB of address space
    must_mdb(mdb_env_set_maxreaders(env, 64), "mdb_env_set_maxreaders");
    must_mdb(mdb_env_open(env, path.c_str(), MDB_NOSYNC | MDB_WRITEMAP | MDB_NOTLS, 0600), "mdb_env_open");
    MDB_txn* txn = nullptr;
    must_mdb(mdb_txn_begin(env, nullptr, 0, &txn), "mdb_txn_begin");
    must_mdb(mdb_dbi_open(txn, nullptr, 0, &dbi), "mdb_dbi_open");
    std::size_t in_txn = 0;
    for (std::uint64_t i : shuffled(n)) {
      key_buf k = make_key(i);
      std::string_view v = value_for(i);
      MDB_val mk{kKeyLen, k.b}, mv{v.size(), const_cast<char*>(v.data())};
      must_mdb(mdb_put(txn, dbi, &mk, &mv, 0), "lmdb load");
      if (++in_txn == 1000) {
        must_mdb(mdb_txn_commit(txn), "lmdb load commit");
        must_mdb(mdb_txn_begin(env, nullptr, 0, &txn), "mdb_txn_begin");
        in_txn = 0;
      }
    }
    must_mdb(mdb_txn_commit(txn), "lmdb load commit");
  }
  ~lmdb_data() {
    mdb_env_close(env);
    fs::remove_all(path);
  }
};

struct lmdb_adapter {
  static constexpr const char* name = "lmdb";
  lmdb_data& d;
  std::size_t n;
  MDB_txn* reader = nullptr;  // this adapter's read transaction, reset between gets
  explicit lmdb_adapter(std::size_t n_) : d(dataset<lmdb_data>(n_)), n(n_) {}
  lmdb_adapter(const lmdb_adapter&) = delete;
  ~lmdb_adapter() {
    if (reader) mdb_txn_abort(reader);
  }
  static MDB_val val(std::string_view s) { return {s.size(), const_cast<char*>(s.data())}; }
  // A read transaction renewed per get, the value copied out.
  bool get(std::string_view k) {
    if (reader)
      must_mdb(mdb_txn_renew(reader), "mdb_txn_renew");
    else
      must_mdb(mdb_txn_begin(d.env, nullptr, MDB_RDONLY, &reader), "mdb_txn_begin");
    bool found = get_in(reader, k);
    mdb_txn_reset(reader);
    return found;
  }
  bool get_in(MDB_txn* txn, std::string_view k) {
    MDB_val mk = val(k), mv;
    int rc = mdb_get(txn, d.dbi, &mk, &mv);
    if (rc == MDB_NOTFOUND) {
      keep(std::optional<std::string>());
      return false;
    }
    must_mdb(rc, "mdb_get");
    std::optional<std::string> v(std::in_place, static_cast<const char*>(mv.mv_data), mv.mv_size);
    keep(v);
    return true;
  }
  // One write transaction per put.
  void put(std::string_view k, std::string_view v) {
    MDB_txn* txn = nullptr;
    must_mdb(mdb_txn_begin(d.env, nullptr, 0, &txn), "mdb_txn_begin");
    MDB_val mk = val(k), mv = val(v);
    must_mdb(mdb_put(txn, d.dbi, &mk, &mv, 0), "mdb_put");
    must_mdb(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  void batch(rng_t& rng) {
    MDB_txn* txn = nullptr;
    must_mdb(mdb_txn_begin(d.env, nullptr, 0, &txn), "mdb_txn_begin");
    for (std::size_t j = 0; j < kBatch; ++j) {
      std::uint64_t i = rng.below(n);
      key_buf k = make_key(i);
      MDB_val mk{kKeyLen, k.b}, mv = val(value_for(i + 1));
      must_mdb(mdb_put(txn, d.dbi, &mk, &mv, 0), "mdb_put");
    }
    must_mdb(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  std::size_t scan(std::string_view prefix) {
    MDB_txn* txn = nullptr;
    must_mdb(mdb_txn_begin(d.env, nullptr, MDB_RDONLY, &txn), "mdb_txn_begin");
    MDB_cursor* c = nullptr;
    must_mdb(mdb_cursor_open(txn, d.dbi, &c), "mdb_cursor_open");
    std::size_t count = 0, bytes = 0;
    MDB_val mk = val(prefix), mv;
    for (int rc = mdb_cursor_get(c, &mk, &mv, MDB_SET_RANGE); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &mk, &mv, MDB_NEXT)) {
      std::string_view k(static_cast<const char*>(mk.mv_data), mk.mv_size);
      if (!k.starts_with(prefix)) break;
      bytes += touch(k, {static_cast<const char*>(mv.mv_data), mv.mv_size});
      ++count;
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    keep(bytes);
    return count;
  }
  // A snapshot is a read transaction.
  struct snap_holder {
    MDB_txn* txn = nullptr;
    ~snap_holder() {
      if (txn) mdb_txn_abort(txn);
    }
  };
  std::unique_ptr<snap_holder> snapshot() {
    auto h = std::make_unique<snap_holder>();
    must_mdb(mdb_txn_begin(d.env, nullptr, MDB_RDONLY, &h->txn), "mdb_txn_begin");
    return h;
  }
  bool snap_get(const std::unique_ptr<snap_holder>& s, std::string_view k) { return get_in(s->txn, k); }
};
#define KEEL_LMDB_ADAPTER , lmdb_adapter
#else
#define KEEL_LMDB_ADAPTER
#endif

// Raw RocksDB: what a careful direct user writes.
template <bool MemEnv, bool Defaults, const char* Name, int Slot = 0>
struct raw_adapter {
  static constexpr const char* name = Name;
  using writer = raw_adapter<MemEnv, Defaults, Name, 1>;
  raw_data<MemEnv, Defaults, Slot>& d;
  std::size_t n;
  rocksdb::WriteOptions wo;
  explicit raw_adapter(std::size_t n_) : d(dataset<raw_data<MemEnv, Defaults, Slot>>(n_)), n(n_) {}
  static rocksdb::Slice sl(std::string_view s) { return {s.data(), s.size()}; }
  bool get(std::string_view k) { return get_at(k, nullptr); }
  bool get_at(std::string_view k, const rocksdb::Snapshot* snap) {
    rocksdb::ReadOptions ro;
    ro.snapshot = snap;
    std::string v;
    rocksdb::Status s = d.db->Get(ro, sl(k), &v);
    keep(v);
    if (s.IsNotFound()) return false;
    must_ok(s, "raw get");
    return true;
  }
  void put(std::string_view k, std::string_view v) { must_ok(d.db->Put(wo, sl(k), sl(v)), "raw put"); }
  void batch(rng_t& rng) {
    rocksdb::WriteBatch b;
    for (std::size_t j = 0; j < kBatch; ++j) {
      std::uint64_t i = rng.below(n);
      key_buf k = make_key(i);
      b.Put(rocksdb::Slice(k.b, kKeyLen), sl(value_for(i + 1)));
    }
    must_ok(d.db->Write(wo, &b), "raw batch");
  }
  std::size_t scan(std::string_view prefix) {
    std::string lo(prefix), hi = *keel::key_range::prefix_successor(prefix);
    rocksdb::Slice lo_s(lo), hi_s(hi);
    rocksdb::ReadOptions ro;
    ro.iterate_lower_bound = &lo_s;
    ro.iterate_upper_bound = &hi_s;
    std::unique_ptr<rocksdb::Iterator> it(d.db->NewIterator(ro));
    std::size_t count = 0, bytes = 0;
    for (it->Seek(lo_s); it->Valid(); it->Next()) {
      bytes += touch({it->key().data(), it->key().size()}, {it->value().data(), it->value().size()});
      ++count;
    }
    must_ok(it->status(), "raw scan");
    keep(bytes);
    return count;
  }
  struct snap_holder {
    rocksdb::DB* db;
    const rocksdb::Snapshot* snap;
    ~snap_holder() { db->ReleaseSnapshot(snap); }
  };
  std::unique_ptr<snap_holder> snapshot() {
    return std::unique_ptr<snap_holder>(new snap_holder{d.db, d.db->GetSnapshot()});
  }
  bool snap_get(const std::unique_ptr<snap_holder>& s, std::string_view k) { return get_at(k, s->snap); }
  void reopen() {
    d.close();
    d.open();
  }
};
constexpr char raw_rocks_name[] = "raw_rocks";
constexpr char raw_defaults_name[] = "raw_defaults";
constexpr char raw_memenv_name[] = "raw_memenv";
using raw_rocks_adapter = raw_adapter<false, false, raw_rocks_name>;
using raw_defaults_adapter = raw_adapter<false, true, raw_defaults_name>;
using raw_memenv_adapter = raw_adapter<true, false, raw_memenv_name>;

// ---------------------------------------------------------------------------
// Workloads.
// ---------------------------------------------------------------------------
template <class A>
void bm_get_hit(benchmark::State& st) {
  A a(st.range(0));
  rng_t rng(1);
  benchmark::IterationCount found = 0;
  for (auto _ : st) found += a.get(make_key(rng.below(a.n)).view());
  if (found != st.iterations()) st.SkipWithError("get_hit missed a key");
  st.SetItemsProcessed(st.iterations());
}

template <class A>
void bm_get_miss(benchmark::State& st) {
  A a(st.range(0));
  rng_t rng(2);
  benchmark::IterationCount found = 0;
  for (auto _ : st) found += a.get(make_key(rng.below(a.n), '1').view());
  if (found != 0) st.SkipWithError("get_miss found a key");
  st.SetItemsProcessed(st.iterations());
}

// The adapter put and batch100 use: A::writer when A has one (a DB of its own).
template <class A>
struct writer_of {
  using type = A;
};
template <class A>
  requires requires { typename A::writer; }
struct writer_of<A> {
  using type = typename A::writer;
};

template <class A>
void bm_put(benchmark::State& st) {
  typename writer_of<A>::type a(st.range(0));
  rng_t rng(3);
  for (auto _ : st) {
    std::uint64_t i = rng.below(a.n);
    a.put(make_key(i).view(), value_for(i + 1));  // overwrite: the size stays n
  }
  st.SetItemsProcessed(st.iterations());
}

template <class A>
void bm_batch100(benchmark::State& st) {
  typename writer_of<A>::type a(st.range(0));
  rng_t rng(4);
  for (auto _ : st) a.batch(rng);
  st.SetItemsProcessed(st.iterations() * kBatch);
}

template <class A>
void bm_scan1000(benchmark::State& st) {
  A a(st.range(0));
  rng_t rng(5);
  const std::size_t blocks = a.n / kScanLen;
  std::vector<std::string> prefixes;
  for (std::size_t b = 0; b < blocks; ++b) prefixes.push_back(scan_prefix(b));
  benchmark::IterationCount seen = 0;
  for (auto _ : st) seen += a.scan(prefixes[rng.below(blocks)]);
  if (seen != st.iterations() * benchmark::IterationCount(kScanLen)) st.SkipWithError("scan1000 did not see 1000 keys");
  st.SetItemsProcessed(st.iterations() * kScanLen);
}

template <class A>
void bm_snapshot(benchmark::State& st) {
  A a(st.range(0));
  for (auto _ : st) {
    auto s = a.snapshot();
    keep(s);
  }
  st.SetItemsProcessed(st.iterations());
}

template <class A>
void bm_snapshot_get(benchmark::State& st) {
  A a(st.range(0));
  auto snap = a.snapshot();
  rng_t rng(6);
  benchmark::IterationCount found = 0;
  for (auto _ : st) found += a.snap_get(snap, make_key(rng.below(a.n)).view());
  if (found != st.iterations()) st.SkipWithError("snapshot_get missed a key");
  st.SetItemsProcessed(st.iterations());
}

template <class A>
void bm_reopen(benchmark::State& st) {
  A a(st.range(0));
  a.reopen();  // untimed: the first reopen replays the WAL of earlier writes into an SST
  for (auto _ : st) a.reopen();
  // The dataset must still be there.
  if (!a.get(make_key(0).view())) st.SkipWithError("reopen lost the data");
  st.SetItemsProcessed(st.iterations());
}

// One iteration of fixed duration; thread 0 writes (overwrites), threads 1
// and 2 read (get hits). Reported: ops/s of the writer and of each reader
// (mean of the two), over each thread's own wall time.
constexpr auto kConcurrentFor = 300ms;
template <class A, std::uint64_t PacedWrites = 0>
void concurrent(benchmark::State& st) {
  A a(st.range(0));
  const bool writer = st.thread_index() == 0;
  rng_t rng(100 + st.thread_index());
  std::uint64_t ops = 0;
  double seconds = 0;
  for (auto _ : st) {
    auto start = std::chrono::steady_clock::now(), deadline = start + kConcurrentFor;
    auto now = start;
    do {
      if (writer && PacedWrites) {  // one put per 1/PacedWrites s, on schedule
        std::uint64_t i = rng.below(a.n);
        a.put(make_key(i).view(), value_for(i + 1));
        ++ops;
        auto due = start + std::chrono::nanoseconds(ops * 1000000000ull / PacedWrites);
        now = std::chrono::steady_clock::now();
        if (now < due) std::this_thread::sleep_until(std::min(due, deadline));
        now = std::chrono::steady_clock::now();
        continue;
      }
      for (int k = 0; k < 64; ++k) {
        std::uint64_t i = rng.below(a.n);
        if (writer)
          a.put(make_key(i).view(), value_for(i + 1));
        else
          a.get(make_key(i).view());
      }
      ops += 64;
      now = std::chrono::steady_clock::now();
    } while (now < deadline);
    seconds = std::chrono::duration<double>(now - start).count();
  }
  const double rate = double(ops) / seconds;
  if (writer)
    st.counters["writer_ops_per_s"] = rate;
  else
    st.counters["reader_ops_per_s"] = rate / double(st.threads() - 1);  // summed over readers: the mean
}

// The same with the writer paced at 20k puts/s: both designs then carry the
// same write load, and the readers' throughput compares the read paths.
template <class A>
void bm_concurrent(benchmark::State& st) {
  concurrent<A>(st);
}
template <class A>
void bm_concurrent_paced(benchmark::State& st) {
  concurrent<A, 20000>(st);
}

template <class A>
void bm_footprint(benchmark::State& st) {
  A a(st.range(0));
  for (auto _ : st) keep(a.footprint());
  st.counters["bytes_per_entry"] = a.footprint();
}

// ---------------------------------------------------------------------------
// Registration.
// ---------------------------------------------------------------------------
template <class A>
void reg(const char* workload, void (*fn)(benchmark::State&), std::size_t n) {
  std::string name = std::string(workload) + "/" + A::name;
  auto* b = benchmark::RegisterBenchmark(name.c_str(), fn)->Arg(static_cast<std::int64_t>(n));
  if (std::string_view(workload).starts_with("concurrent"))
    b->Threads(3)->Iterations(1)->UseRealTime();
  else if (std::string_view(workload) == "footprint")
    b->Iterations(1);
  else if (std::string_view(workload) == "reopen")
    b->Unit(benchmark::kMillisecond);
  else if (std::string_view(workload) == "snapshot" && std::string_view(A::name) == "map")
    b->Unit(benchmark::kMillisecond);
}

template <class... As>
void reg_all(const char* workload, std::size_t n, auto fn_of) {
  (reg<As>(workload, fn_of.template operator()<As>(), n), ...);
}

#define KEEL_ALL_BACKENDS                                                                             \
  memory_adapter, any_memory_adapter, virtual_memory_adapter, map_adapter, rocks_default_adapter,    \
      any_rocks_adapter, virtual_rocks_adapter, rocks_macos_adapter, raw_rocks_adapter, raw_defaults_adapter,  \
      raw_memenv_adapter KEEL_LMDB_ADAPTER

void register_size(std::size_t n) {
#define KEEL_WORKLOAD(wl, ...) \
  reg_all<__VA_ARGS__>(#wl, n, []<class A>() { return &bm_##wl<A>; })
  KEEL_WORKLOAD(get_hit, KEEL_ALL_BACKENDS);
  KEEL_WORKLOAD(get_miss, KEEL_ALL_BACKENDS);
  KEEL_WORKLOAD(scan1000, KEEL_ALL_BACKENDS);
  KEEL_WORKLOAD(snapshot_get, KEEL_ALL_BACKENDS);
  KEEL_WORKLOAD(snapshot, KEEL_ALL_BACKENDS);
  KEEL_WORKLOAD(concurrent, KEEL_ALL_BACKENDS);
  KEEL_WORKLOAD(concurrent_paced, memory_adapter, any_memory_adapter, map_adapter, rocks_default_adapter,
                raw_rocks_adapter);
  KEEL_WORKLOAD(put, KEEL_ALL_BACKENDS);
  KEEL_WORKLOAD(batch100, KEEL_ALL_BACKENDS);
  KEEL_WORKLOAD(footprint, memory_adapter, map_adapter);
  // Last: the reopen cycles leave the RocksDB datasets reopened (and raw_memenv
  // has no reopen: a MemEnv DB is the Env's, the cycle would measure nothing real).
  KEEL_WORKLOAD(reopen, rocks_default_adapter, any_rocks_adapter, rocks_macos_adapter, raw_rocks_adapter,
                raw_defaults_adapter);
#undef KEEL_WORKLOAD
}

}  // namespace
}  // namespace keel_bench

int main(int argc, char** argv) {
  using namespace keel_bench;
  std::vector<std::size_t> sizes = {10000, 100000, 1000000};
  std::string dir;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--keel-quick") {
      sizes = {10000, 100000};
    } else if (a.starts_with("--keel-sizes=")) {
      sizes.clear();
      std::string s(a.substr(13));
      for (std::size_t pos = 0; pos <= s.size();) {
        std::size_t comma = s.find(',', pos);
        if (comma == std::string::npos) comma = s.size();
        sizes.push_back(std::stoull(s.substr(pos, comma - pos)));
        pos = comma + 1;
      }
    } else if (a.starts_with("--keel-dir=")) {
      dir = a.substr(11);
    } else {
      rest.push_back(argv[i]);
    }
  }
  for (std::size_t n : sizes)
    if (n < 1000 || n % 1000 != 0) die("sizes must be multiples of 1000");

  bool own_dir = dir.empty();
  if (own_dir) {
    char tmpl[] = "/tmp/keel-bench-XXXXXX";
    if (!mkdtemp(tmpl)) die("cannot create a temporary directory");
    dir = tmpl;
  }
  bench_dir() = dir;
  fs::create_directories(bench_dir());

  for (std::size_t n : sizes) register_size(n);
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 1;
  benchmark::AddCustomContext("keel_sizes", [&] {
    std::string s;
    for (std::size_t n : sizes) s += (s.empty() ? "" : ",") + std::to_string(n);
    return s;
  }());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  {
    std::lock_guard lock(g_dataset_mutex);
    for (auto& drop : g_dataset_droppers) drop();
  }
  if (own_dir) fs::remove_all(bench_dir());
  return 0;
}
