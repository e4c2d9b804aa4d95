// Test support: the backends the conformance suite runs on. Each backend
// type owns what its stores need (a fresh temporary directory for RocksDB)
// and opens stores on it; open() may be called again to reopen.
#pragma once

// KEEL_HAS_ROCKSDB (set by tests/meson.build): the RocksDB and any_store
// backends exist only when keel is built with RocksDB.
#if KEEL_HAS_ROCKSDB
#include <keel/keel.hpp>
#else
#include <keel/memory.hpp>
#endif

#include <atomic>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fake_clock.hpp"
#include "temp_dir.hpp"

// KEEL_HAS_ETCD (set by tests/meson.build with meson option etcd): the
// cluster backend, against a real etcd process.
#if KEEL_HAS_ETCD
#include <keel/etcd.hpp>

#include "etcd_cluster.hpp"
#endif

// KEEL_HAS_POSTGRES (set by tests/meson.build with meson option postgres and
// the server binaries installed): the PostgreSQL backend, against a real
// server this binary starts.
#if KEEL_HAS_POSTGRES
#include <keel/postgres.hpp>

#include "pg_server.hpp"
#endif

namespace keel::test {

struct memory_backend {
  using store_type = memory_store;
  static constexpr bool persistent = false;
  static constexpr const char* name = "memory";
  result<store_type> open() const { return store_type::open({}); }
};

// A memory store persisted to a file (memory_options::persist_path): every
// open loads what the last close saved.
struct persisted_memory_backend {
  using store_type = memory_store;
  static constexpr bool persistent = true;
  static constexpr const char* name = "memory(persisted)";
  temp_dir dir;
  result<store_type> open() const {
    memory_options o;
    o.persist_path = dir.path() / "store.keeldump";
    return store_type::open(o);
  }
};

// A memory store with value compression (zstd, else lz4, else none): its
// background compressor runs alongside every case.
struct compressed_memory_backend {
  using store_type = memory_store;
  static constexpr bool persistent = false;
  static constexpr const char* name = "memory(compressed)";
  result<store_type> open() const {
    memory_options o;
#if KEEL_HAVE_ZSTD
    o.compression = compression::zstd;
#elif KEEL_HAVE_LZ4
    o.compression = compression::lz4;
#endif
    return store_type::open(o);
  }
};

#if KEEL_HAS_ROCKSDB
template <class Tuning>
struct rocks_backend {
  using store_type = basic_store<RocksPolicy<Tuning>>;
  static constexpr bool persistent = true;
  static constexpr const char* name = "rocksdb";
  temp_dir dir;
  std::filesystem::path path() const { return dir.path() / "db"; }
  result<store_type> open() const {
    rocks_options o;
    o.path = path();
    return store_type::open(o);
  }
};

using rocks_default_backend = rocks_backend<DefaultTuning>;
using rocks_macos_backend = rocks_backend<MacOSTuning>;

// any_store over each of its alternatives, opened through open_store().
template <keel::backend Which>
struct any_backend {
  using store_type = any_store;
  static constexpr bool persistent = Which == keel::backend::rocksdb;
  static constexpr const char* name = Which == keel::backend::rocksdb ? "any_store(rocksdb)" : "any_store(memory)";
  temp_dir dir;
  result<store_type> open() const {
    store_config c;
    c.path = dir.path() / "db";
    c.preferred = Which;
    c.log = [](std::string_view) {};
    auto s = open_store(c);
    if (s && s->backend() != Which) return keel::error(errc::invalid_argument, "wrong backend opened");
    return s;
  }
};
using any_memory_backend = any_backend<keel::backend::memory>;
using any_rocks_backend = any_backend<keel::backend::rocksdb>;

// The hybrid store (<keel/hybrid.hpp>): Spill = false keeps it in its
// memory tier (default spill_bytes); Spill = true gives spill_bytes = 0, so
// its background mover moves the data to RocksDB right after open, while
// the case runs: every case then also checks that the move is invisible.
template <bool Spill>
struct hybrid_backend {
  using store_type = hybrid_store;
  static constexpr bool persistent = true;
  static constexpr const char* name = Spill ? "hybrid(spilling)" : "hybrid";
  temp_dir dir;
  std::filesystem::path path() const { return dir.path() / "hybrid"; }
  result<store_type> open() const {
    hybrid_options o;
    o.path = path();
    if (Spill) o.spill_bytes = 0;
    return store_type::open(o);
  }
};
using hybrid_memory_backend = hybrid_backend<false>;
using hybrid_spilling_backend = hybrid_backend<true>;
#endif  // KEEL_HAS_ROCKSDB

#if KEEL_HAS_ETCD
// One single-member etcd for the whole test binary, started on first use and
// stopped at exit (its destructor; PR_SET_PDEATHSIG if the binary dies).
inline etcd_cluster& shared_etcd() {
  static etcd_cluster cluster(1);
  return cluster;
}

// A fresh key prefix on the shared etcd per backend object, so test cases
// never see each other's keys; reopening uses the same prefix (persistent).
struct etcd_backend {
  using store_type = etcd_store;
  static constexpr bool persistent = true;
  static constexpr const char* name = "etcd";
  // The data lives in the cluster: checkpoint() is errc::not_supported
  // (docs/cluster.md says how to back up an etcd cluster).
  static constexpr bool no_checkpoint = true;
  std::string prefix = next_prefix();
  etcd_options options() const {
    etcd_options o;
    o.endpoints = shared_etcd().endpoints();
    o.prefix = prefix;
    return o;
  }
  result<store_type> open() const { return store_type::open(options()); }
  static std::string next_prefix() {
    static std::atomic<int> n{0};
    return "keel-test/" + std::to_string(++n) + "/";
  }
};
#endif  // KEEL_HAS_ETCD

#if KEEL_HAS_POSTGRES
// One PostgreSQL server for the whole test binary, started on first use and
// stopped at exit (its destructor; PR_SET_PDEATHSIG if the binary dies).
inline pg_server& shared_pg() {
  static pg_server server;
  return server;
}

// A fresh table on the shared server per backend object, so test cases never
// see each other's keys; reopening uses the same table (persistent).
struct postgres_backend {
  using store_type = postgres_store;
  static constexpr bool persistent = true;
  static constexpr const char* name = "postgres";
  // The data lives in the server: checkpoint() is errc::not_supported.
  static constexpr bool no_checkpoint = true;
  // Transactions are validated by the server (SSI): serializable, but not
  // always in commit order, and a key written by a commit after the
  // transaction began is a conflict even when only written (see
  // transaction_promise below).
  static constexpr bool server_serializable = true;
  std::string table = next_table();
  postgres_options options() const {
    postgres_options o;
    o.conninfo = shared_pg().conninfo();
    o.table = table;
    return o;
  }
  result<store_type> open() const { return store_type::open(options()); }
  static std::string next_table() {
    static std::atomic<int> n{0};
    return "keel_test_" + std::to_string(++n);
  }
};
#endif  // KEEL_HAS_POSTGRES

// Which promise a backend's transactions keep (docs/transactions.md):
//  - commit_order: serializable in commit order; keel validates each commit
//    against the transaction's read set (memory, RocksDB, hybrid, any_store,
//    etcd): a commit that read or scanned what a later-committed write
//    touched is a conflict, and blind writes never conflict;
//  - server_serializable: the server validates (PostgreSQL SSI): committed
//    transactions have some serial order, not always their commit order (a
//    one-sided phantom commits both sides, as "reader first"), and a key
//    written by another commit after the transaction began is a conflict
//    (first committer wins), read or not.
// Cases that test a promise only one kind keeps say so with this.
enum class transaction_promise { commit_order, server_serializable };
template <class B>
inline constexpr transaction_promise promise_of =
    requires { B::server_serializable; } ? transaction_promise::server_serializable : transaction_promise::commit_order;

// The conformance suite's type list: every backend runs every case of
// conformance_test.cpp, transaction_test.cpp and operations_test.cpp. A new
// backend is one line here.
// KEEL_HAS_ROCKSDB, KEEL_HAS_ETCD and KEEL_HAS_POSTGRES are set by
// tests/meson.build (meson options rocksdb, etcd and postgres).
#if KEEL_HAS_ETCD
#define KEEL_ETCD_BACKENDS , keel::test::etcd_backend
#else
#define KEEL_ETCD_BACKENDS
#endif
#if KEEL_HAS_POSTGRES
#define KEEL_POSTGRES_BACKENDS , keel::test::postgres_backend
#else
#define KEEL_POSTGRES_BACKENDS
#endif
#if KEEL_HAS_ROCKSDB
#define KEEL_BACKENDS                                                                                \
  keel::test::memory_backend, keel::test::rocks_default_backend, keel::test::rocks_macos_backend, \
      keel::test::any_memory_backend, keel::test::any_rocks_backend,                              \
      keel::test::persisted_memory_backend, keel::test::compressed_memory_backend,                \
      keel::test::hybrid_memory_backend, keel::test::hybrid_spilling_backend KEEL_ETCD_BACKENDS KEEL_POSTGRES_BACKENDS
#else
#define KEEL_BACKENDS                                                                           \
  keel::test::memory_backend, keel::test::persisted_memory_backend, keel::test::compressed_memory_backend \
      KEEL_ETCD_BACKENDS KEEL_POSTGRES_BACKENDS
#endif

// The backends with keyspaces (issue 27; keel::keyspace_policy): the
// keyspace cases (keyspace_test.cpp) run on each.
// The hybrid store runs them in its memory tier (hybrid_memory_backend; its
// keyspaces across the move: tests/hybrid_test.cpp). Not hybrid(spilling):
// whether its background move is done before a case's snapshot is a race,
// and a RocksDB snapshot gives snapshot_expired for a keyspace dropped after
// it where the memory tier reads on.
#if KEEL_HAS_ROCKSDB
#define KEEL_KEYSPACE_BACKENDS                                                                              \
  keel::test::memory_backend, keel::test::compressed_memory_backend, keel::test::persisted_memory_backend, \
      keel::test::hybrid_memory_backend
#else
#define KEEL_KEYSPACE_BACKENDS \
  keel::test::memory_backend, keel::test::compressed_memory_backend, keel::test::persisted_memory_backend
#endif

// The backends with watch (issue 28; keel::watch_policy): every case of
// tests/watch_test.cpp runs on each. One line per backend as it gains watch
// (KEEL_WATCH_..._BACKENDS: empty, or ", backend, ...").
#define KEEL_WATCH_MEMORY_BACKENDS \
  keel::test::memory_backend, keel::test::persisted_memory_backend, keel::test::compressed_memory_backend
#if KEEL_HAS_ETCD
#define KEEL_WATCH_ETCD_BACKENDS , keel::test::etcd_backend
#else
#define KEEL_WATCH_ETCD_BACKENDS
#endif
#if KEEL_HAS_ROCKSDB
#define KEEL_WATCH_ROCKS_BACKENDS , keel::test::rocks_default_backend, keel::test::rocks_macos_backend
#define KEEL_WATCH_HYBRID_BACKENDS , keel::test::hybrid_memory_backend, keel::test::hybrid_spilling_backend
#define KEEL_WATCH_ANY_BACKENDS , keel::test::any_memory_backend, keel::test::any_rocks_backend
#else
#define KEEL_WATCH_ROCKS_BACKENDS
#define KEEL_WATCH_HYBRID_BACKENDS
#define KEEL_WATCH_ANY_BACKENDS
#endif
#define KEEL_WATCH_BACKENDS                                                                         \
  KEEL_WATCH_MEMORY_BACKENDS KEEL_WATCH_ROCKS_BACKENDS KEEL_WATCH_HYBRID_BACKENDS KEEL_WATCH_ANY_BACKENDS \
      KEEL_WATCH_ETCD_BACKENDS

// The backends with expiry (issue 29; keel::expiry_policy): the expiry
// cases (expiry_test.cpp) run on each. Each opens its stores with the fake
// clock it owns (`clock`, tests/support/fake_clock.hpp), which the case
// moves; reopening keeps the clock. A new backend is one line here.
template <int Kind>  // 0 plain, 1 persisted, 2 compressed
struct memory_expiry_backend {
  using store_type = memory_store;
  static constexpr bool persistent = Kind == 1;
  static constexpr const char* name = Kind == 0 ? "memory" : Kind == 1 ? "memory(persisted)" : "memory(compressed)";
  temp_dir dir;
  fake_clock clock;
  result<store_type> open() const {
    memory_options o;
    o.clock = clock.source();
    if (Kind == 1) o.persist_path = dir.path() / "store.keeldump";
#if KEEL_HAVE_ZSTD
    if (Kind == 2) o.compression = compression::zstd;
#elif KEEL_HAVE_LZ4
    if (Kind == 2) o.compression = compression::lz4;
#endif
    return store_type::open(o);
  }
};
#if KEEL_HAS_ROCKSDB
// RocksDB with each tuning of KEEL_KEYED_BACKENDS, on the fake clock.
template <class Tuning>
struct rocks_expiry_backend {
  using store_type = basic_store<RocksPolicy<Tuning>>;
  static constexpr bool persistent = true;
  static constexpr const char* name = "rocksdb";
  temp_dir dir;
  fake_clock clock;
  result<store_type> open() const {
    rocks_options o;
    o.path = dir.path() / "db";
    o.clock = clock.source();
    return store_type::open(o);
  }
};
#define KEEL_ROCKS_EXPIRY_BACKENDS \
  , keel::test::rocks_expiry_backend<keel::DefaultTuning>, keel::test::rocks_expiry_backend<keel::MacOSTuning>
// The hybrid store before the move (memory tier) and after it (spill_bytes
// 0: RocksDB from the first size check), on the fake clock.
template <bool Spill>
struct hybrid_expiry_backend {
  using store_type = hybrid_store;
  static constexpr bool persistent = true;
  static constexpr const char* name = Spill ? "hybrid(spilling)" : "hybrid";
  temp_dir dir;
  fake_clock clock;
  result<store_type> open() const {
    hybrid_options o;
    o.path = dir.path() / "hybrid";
    o.clock = clock.source();
    if (Spill) o.spill_bytes = 0;
    auto s = store_type::open(o);
    if (s && Spill) {
      if (auto moved = s->policy().move_to_large(); !moved) return moved.error();
    }
    return s;
  }
};
#define KEEL_HYBRID_EXPIRY_BACKENDS , keel::test::hybrid_expiry_backend<false>, keel::test::hybrid_expiry_backend<true>
#else
#define KEEL_ROCKS_EXPIRY_BACKENDS
#define KEEL_HYBRID_EXPIRY_BACKENDS
#endif
#define KEEL_EXPIRY_BACKENDS                                                          \
  keel::test::memory_expiry_backend<0>, keel::test::memory_expiry_backend<1>, \
      keel::test::memory_expiry_backend<2> KEEL_ROCKS_EXPIRY_BACKENDS KEEL_HYBRID_EXPIRY_BACKENDS

// Whether the backend's checkpoint() makes a copy (false: not_supported).
template <class B>
inline constexpr bool supports_checkpoint = !requires { B::no_checkpoint; };

// Opens or fails the test with the error's message.
template <class Backend>
typename Backend::store_type open_or_fail(const Backend& b) {
  auto s = b.open();
  if (!s) FAIL(Backend::name << " open failed: " << s.error().message());
  return std::move(*s);
}

// Opens (creating it if missing) keyspace `name` of `store`, or fails the
// test with the error's message.
template <class Store>
auto keyspace_or_fail(Store& store, std::string_view name) {
  auto ks = store.keyspace(name);
  REQUIRE_MESSAGE(ks, (ks ? "" : ks.error().message()));
  return std::move(*ks);
}

inline std::string str(std::string_view v) { return std::string(v); }

// Every entry of a cursor as "key=value" pairs, in order.
template <class Cursor>
std::vector<std::pair<std::string, std::string>> collect(Cursor&& cursor) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : cursor) out.emplace_back(std::string(e.key), std::string(e.value));
  REQUIRE_FALSE(cursor.error().has_value());
  return out;
}

template <class Cursor>
std::vector<std::string> keys_of(Cursor&& cursor) {
  std::vector<std::string> out;
  for (const auto& e : cursor) out.emplace_back(e.key);
  REQUIRE_FALSE(cursor.error().has_value());
  return out;
}

// ---------------------------------------------------------------------------
// keyspace_of<B>: backend B seen through a non-default keyspace. Its
// store_type (keyspace_view) has the store's keyed API (put, get, contains,
// erase, erase_range, multi_get, scan, compact, write, snapshot, close,
// is_open) and sends every call through the handle of keyspace
// keyspace_view_name ("k\0\xff": NUL and 0xFF in a name) of a store of B:
// batches with their ops moved into that keyspace (write_batch::put(ks, ...)),
// snapshots read with the keyspace overloads. So the conformance suite's keyed
// cases run unchanged on keyspaces: a case lists KEEL_KEYED_BACKENDS
// instead of KEEL_BACKENDS.
//
// Decoys: every put through the view also puts, under the same key, a decoy
// value in the store's default keyspace "" and, under "\xff" + key, in the
// keyspace "k\0" (whose name is a prefix of the view's: a backend that
// encoded (name, key) as name + key would store both at "k\0\xff" + key).
// Erases through the view leave the decoys. So a call that reached another
// keyspace than the view's (a read or scan of "", a write there) returns or
// leaves a decoy where the case expects its own value or nothing, and the
// case fails. A batch's decoys travel in the same batch: every batch through
// the view spans three keyspaces.
//
// Not here (cases about the store as a whole stay on KEEL_BACKENDS): move
// of the store object, stats(), checkpoint(), transactions (until
// transactions span keyspaces, issue 27), reopen.
// ---------------------------------------------------------------------------
inline constexpr std::string_view keyspace_view_name{"k\0\xff", 3};
inline constexpr std::string_view keyspace_decoy_name{"k\0", 2};
inline constexpr std::string_view keyspace_decoy_value = "decoy: this key was written through a keyspace view";

template <class Store>
class keyspace_view {
  using policy = typename Store::policy_type;
  using handle = basic_keyspace<policy>;

 public:
  using cursor = typename handle::cursor;

  // Reads of one snapshot of the store, in the view's keyspace.
  class snapshot_type {
   public:
    result<std::optional<std::string>> get(std::string_view key) const { return snap_.get(ks_, key); }
    result<bool> contains(std::string_view key) const { return snap_.contains(ks_, key); }
    cursor scan(const key_range& range = key_range::all()) const { return snap_.scan(ks_, range); }
    bool valid() const noexcept { return snap_.valid(); }

   private:
    friend class keyspace_view;
    snapshot_type(typename Store::snapshot_type snap, handle ks) : snap_(std::move(snap)), ks_(std::move(ks)) {}
    typename Store::snapshot_type snap_;
    handle ks_;
  };

  // Opens the view's keyspace and the decoy keyspace of `store` (created if
  // missing).
  static result<keyspace_view> over(Store store) {
    auto ks = store.keyspace(keyspace_view_name);
    if (!ks) return std::move(ks).error();
    auto decoys = store.keyspace(keyspace_decoy_name);
    if (!decoys) return std::move(decoys).error();
    return keyspace_view(std::move(store), std::move(*ks), std::move(*decoys));
  }

  result<void> put(std::string_view key, std::string_view value) {
    auto r = ks_.put(key, value);
    if (r) r = plant_decoys(key);
    return r;
  }
  result<std::optional<std::string>> get(std::string_view key) const { return ks_.get(key); }
  result<bool> contains(std::string_view key) const { return ks_.contains(key); }
  result<void> erase(std::string_view key) { return ks_.erase(key); }
  result<void> erase_range(const key_range& range) { return ks_.erase_range(range); }
  template <class Keys>
  auto multi_get(const Keys& keys) const {
    return ks_.multi_get(keys);
  }
  auto multi_get(std::initializer_list<std::string_view> keys) const { return ks_.multi_get(keys); }
  cursor scan(const key_range& range = key_range::all()) const { return ks_.scan(range); }
  result<void> compact(const key_range& range = key_range::all()) { return ks_.compact(range); }

  // `batch` with each op of the default keyspace moved into the view's
  // keyspace, and a decoy put in "" and in the decoy keyspace beside each put.
  // The batch's ops moved into the view's keyspace, with the decoys of its
  // puts in the same batch; in batches of their own, written first, when
  // together they would pass etcd's 128 operations per transaction (its
  // --max-txn-ops default), which the batch alone stays under.
  result<void> write(const write_batch& batch) {
    static constexpr std::size_t max_ops = 128;
    write_batch moved;
    std::vector<write_batch> decoys(1);
    for (const auto& op : batch) {
      const keyspace_name ks(op.keyspace.empty() ? ks_.name() : op.keyspace);
      switch (op.kind) {
        case write_batch::op_kind::put:
          moved.put(ks, op.key, op.value);
          if (op.keyspace.empty()) {
            if (decoys.back().size() + 2 > max_ops) decoys.emplace_back();
            decoys.back().put(op.key, keyspace_decoy_value);
            decoys.back().put(keyspace_name(decoys_.name()), "\xff" + std::string(op.key), keyspace_decoy_value);
          }
          break;
        case write_batch::op_kind::erase: moved.erase(ks, op.key); break;
        case write_batch::op_kind::erase_range: moved.erase_range(ks, op.range()); break;
      }
    }
    if (decoys.size() == 1 && moved.size() + decoys.front().size() <= max_ops) {
      for (const auto& op : decoys.front()) moved.put(keyspace_name(op.keyspace), op.key, op.value);
      return store_.write(moved);
    }
    for (const auto& d : decoys) {
      if (auto r = store_.write(d); !r) return r;
    }
    return store_.write(moved);
  }

  snapshot_type snapshot() const { return snapshot_type(store_.snapshot(), ks_); }
  result<void> close() { return store_.close(); }
  bool is_open() const noexcept { return store_.is_open(); }
  // The store behind the view (for checks of the decoys).
  Store& store() noexcept { return store_; }

 private:
  keyspace_view(Store store, handle ks, handle decoys)
      : store_(std::move(store)), ks_(std::move(ks)), decoys_(std::move(decoys)) {}
  result<void> plant_decoys(std::string_view key) {
    auto r = store_.put(key, keyspace_decoy_value);
    if (r) r = decoys_.put("\xff" + std::string(key), keyspace_decoy_value);
    return r;
  }

  Store store_;
  handle ks_;
  handle decoys_;
};

template <class B>
struct keyspace_of {
  using store_type = keyspace_view<typename B::store_type>;
  static_assert(keyspace_policy<typename B::store_type::policy_type>, "keyspace_of<B>: B has no keyspaces");
  static constexpr bool persistent = B::persistent;
  static constexpr const char* name = "keyspace view";
  B backend;
  result<store_type> open() const {
    auto s = backend.open();
    if (!s) return std::move(s).error();
    return store_type::over(std::move(*s));
  }
};

// Every backend with keyspaces, seen through keyspace_of: one line per
// backend. The keyed cases of the conformance suite run on these besides
// KEEL_BACKENDS (KEEL_KEYED_BACKENDS).
#if KEEL_HAS_ETCD
#define KEEL_ETCD_KEYSPACE_VIEW , keel::test::keyspace_of<keel::test::etcd_backend>
#else
#define KEEL_ETCD_KEYSPACE_VIEW
#endif
#if KEEL_HAS_POSTGRES
#define KEEL_POSTGRES_KEYSPACE_VIEW , keel::test::keyspace_of<keel::test::postgres_backend>
#else
#define KEEL_POSTGRES_KEYSPACE_VIEW
#endif
#if KEEL_HAS_ROCKSDB
#define KEEL_KEYSPACE_VIEW_BACKENDS                                                                        \
  keel::test::keyspace_of<keel::test::memory_backend>, keel::test::keyspace_of<keel::test::compressed_memory_backend>, \
      keel::test::keyspace_of<keel::test::persisted_memory_backend>,                                       \
      keel::test::keyspace_of<keel::test::rocks_default_backend>,                                          \
      keel::test::keyspace_of<keel::test::rocks_macos_backend>,                                            \
      keel::test::keyspace_of<keel::test::hybrid_memory_backend>,                                          \
      keel::test::keyspace_of<keel::test::hybrid_spilling_backend> KEEL_ETCD_KEYSPACE_VIEW KEEL_POSTGRES_KEYSPACE_VIEW
#else
#define KEEL_KEYSPACE_VIEW_BACKENDS                                                                        \
  keel::test::keyspace_of<keel::test::memory_backend>, keel::test::keyspace_of<keel::test::compressed_memory_backend>, \
      keel::test::keyspace_of<keel::test::persisted_memory_backend> KEEL_ETCD_KEYSPACE_VIEW KEEL_POSTGRES_KEYSPACE_VIEW
#endif
#define KEEL_KEYED_BACKENDS KEEL_BACKENDS, KEEL_KEYSPACE_VIEW_BACKENDS

}  // namespace keel::test
