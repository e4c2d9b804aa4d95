// keel: store_stats, what store.stats() reports, and op_counters, the
// operation counters behind it (basic_store owns one; its cursors, snapshots
// and transactions count into it). Needs no backend headers.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace keel {

enum class backend;

// A store's statistics. Counters count calls through this store object
// (basic_store or basic_any_store) and through its snapshots and cursors,
// since it was opened, successful or not. A cursor adds the entries it handed
// out when its pass ends or it is destroyed (not at each step), so a live
// cursor's entries are not in the counts yet.
struct store_stats {
  keel::backend backend{};
  // gets, contains and scans include those made through snapshots.
  std::uint64_t puts = 0, gets = 0, contains = 0, erases = 0, writes = 0, scans = 0, snapshots = 0;
  std::uint64_t batch_ops = 0;      // operations inside write()s
  std::uint64_t bytes_written = 0;  // keys and values of put() and write() (erase: the key)
  std::uint64_t bytes_read = 0;     // values returned by get(), keys and values handed out by cursors
  std::uint64_t cursor_entries = 0; // entries handed out by cursors
  // Transactions: begun, committed (read-only ones included), failed with
  // errc::conflict, rolled back (rollback() or destroyed unfinished).
  std::uint64_t tx_begun = 0, tx_committed = 0, tx_conflicts = 0, tx_rolled_back = 0;
  std::uint64_t keys = 0;           // number of keys
  bool keys_exact = false;          // memory: exact; RocksDB: rocksdb.estimate-num-keys
  std::uint64_t size_bytes = 0;     // memory: bytes held by the entries (values as held, compressed or not); RocksDB: files on disk
  // memory: size_bytes with every value uncompressed (equal to size_bytes
  // without memory_options::compression; size_bytes / uncompressed_bytes is
  // the compression ratio); other backends: 0.
  std::uint64_t uncompressed_bytes = 0;
  // Hybrid stores: the tier that holds the data ("memory" or "rocksdb");
  // empty for other backends.
  std::string tier;
  // Backend specifics, e.g. RocksDB properties ("rocksdb.estimate-num-keys", ...).
  std::vector<std::pair<std::string, std::uint64_t>> properties;
};

// Operation counters, striped over cache lines so that threads rarely share
// one: an increment is one relaxed atomic add on a mostly private line.
class op_counters {
 public:
  enum field : unsigned {
    puts,
    gets,
    contains,
    erases,
    writes,
    scans,
    snapshots,
    batch_ops,
    bytes_written,
    bytes_read,
    cursor_entries,
    tx_begun,
    tx_committed,
    tx_conflicts,
    tx_rolled_back,
    count_
  };

  void add(field f, std::uint64_t n = 1) noexcept { stripes_[stripe()].v[f].fetch_add(n, std::memory_order_relaxed); }
  // One more `op`, and n more `amount` (one stripe lookup for both).
  void add(field op, field amount, std::uint64_t n) noexcept { add(op, amount, 1, n); }
  void add(field a, field b, std::uint64_t n_a, std::uint64_t n_b) noexcept {
    auto& s = stripes_[stripe()];
    s.v[a].fetch_add(n_a, std::memory_order_relaxed);
    s.v[b].fetch_add(n_b, std::memory_order_relaxed);
  }
  std::uint64_t total(field f) const noexcept {
    std::uint64_t sum = 0;
    for (const auto& s : stripes_) sum += s.v[f].load(std::memory_order_relaxed);
    return sum;
  }
  void fill(store_stats& s) const noexcept {
    s.puts = total(puts);
    s.gets = total(gets);
    s.contains = total(contains);
    s.erases = total(erases);
    s.writes = total(writes);
    s.scans = total(scans);
    s.snapshots = total(snapshots);
    s.batch_ops = total(batch_ops);
    s.bytes_written = total(bytes_written);
    s.bytes_read = total(bytes_read);
    s.cursor_entries = total(cursor_entries);
    s.tx_begun = total(tx_begun);
    s.tx_committed = total(tx_committed);
    s.tx_conflicts = total(tx_conflicts);
    s.tx_rolled_back = total(tx_rolled_back);
  }

 private:
  static constexpr std::size_t stripes = 16;
  // Threads take stripes round-robin, in the order they first count.
  static std::size_t stripe() noexcept {
    static std::atomic<std::size_t> next{0};
    static thread_local const std::size_t mine = next.fetch_add(1, std::memory_order_relaxed) % stripes;
    return mine;
  }
  struct alignas(64) stripe_t {
    std::atomic<std::uint64_t> v[count_]{};
  };
  stripe_t stripes_[stripes];
};

}  // namespace keel
