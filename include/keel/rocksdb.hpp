// keel: the RocksDB backend, RocksPolicy<Tuning>, and its tunings.
//
//   auto store = keel::rocks_store::open({.path = "data/db"});
//
// What this backend guarantees beyond RocksDB itself:
// - Deterministic close: close() releases every iterator and snapshot keel
//   handed out, syncs the WAL (sync_on_close), closes and deletes the DB. When
//   it returns, the LOCK is released and the path can be opened again at once.
// - One open per directory per process, by directory identity (not spelling):
//   a second open gives errc::already_open_in_process naming the first path.
// - Lock errors diagnosed: lock_held_by_other_process (naming the PID where
//   the OS tells it), locks_unsupported (naming the filesystem). keel never
//   deletes a LOCK file and never opens one this process might hold.
// - A damaged database is reported as corruption naming the file at fault
//   (a missing MANIFEST or SST, a MANIFEST that is a directory, RocksDB files
//   without CURRENT), never re-created over.
// - Read-only open (rocks_options::read_only): no LOCK, so it works while
//   another process writes; every write returns errc::read_only.
// - A full disk never aborts the process (RocksDB's info log and FlushWAL
//   after a failed WAL write would): a write, flush, open or close that meets
//   it returns errc::no_space, whose message says what to do (free space and
//   reopen, or free RocksDB's 64 MiB reserve and DB::Resume()). docs/durability.md.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/table.h>
#include <rocksdb/transaction_log.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <system_error>
#include <unordered_set>
#include <vector>

#include "detail/db_files.hpp"
#include "detail/dir_registry.hpp"
#include "detail/rocks_error.hpp"
#include "detail/rocks_info_log.hpp"
#include "store.hpp"

namespace keel {

// ---------------------------------------------------------------------------
// Tunings. A tuning is a type with `static void apply(rocksdb::Options&)`,
// called before open and before rocks_options::customize.
// ---------------------------------------------------------------------------
template <class T>
concept rocks_tuning = requires(rocksdb::Options& o) { T::apply(o); };

// RocksDB's own defaults, untouched: what DB::Open does with a fresh
// rocksdb::Options (for comparisons, or to keep a database's behaviour exactly
// as a plain RocksDB program would have it).
struct RocksDefaultsTuning {
  static void apply(rocksdb::Options&) {}
};
static_assert(rocks_tuning<RocksDefaultsTuning>);

// keel's general-purpose tuning: RocksDB's defaults plus what RocksDB's own
// tuning guide ("Setup Options and Basic Tuning") recommends for an embedded
// store, each kept only where a measurement justified it (docs/benchmarks.md,
// "RocksDB tuning"; bench/tuning.cpp measures each setting on its own):
// - a 10-bit-per-key Bloom filter (about 1% false positives, 1.25 bytes per
//   key): a get of an absent key no longer reads a data block;
// - a block cache sized on purpose, 64 MiB, shared by every store this process
//   opens with this tuning (RocksDB's default is a private 8 MiB cache per
//   DB, under a tenth of the blocks of a 1M-key DB of 116-byte entries; 64 MiB
//   made present-key gets 0.74x as long there). It caches uncompressed
//   blocks; the OS page cache still holds the files. Capacity is a cap, not
//   an allocation; raise it with customize for larger working sets;
// - table format_version 5 (the newest in RocksDB 7.8, its default there:
//   stated so it stays so);
// - level_compaction_dynamic_level_bytes: level targets sized from the last
//   level down, which bounds space amplification to about 1.1x (the default
//   in RocksDB >= 8.4);
// - bytes_per_sync = 1 MiB: SST writes are synced incrementally instead of in
//   one burst at the end of a file.
// Not set, and why: optimize_filters_for_hits (drops the last level's filter,
// where almost all keys live: absent gets get slow again);
// cache_index_and_filter_blocks (bounds memory on very large DBs; measured no
// gain here: with max_open_files = -1 index and filter stay in the table
// readers); 16 KiB blocks (scans 0.81x, point reads 1.23x as long);
// compression (RocksDB's default, Snappy, is kept).
// Override anything with rocks_options::customize.
struct DefaultTuning {
  // The block cache every store opened with DefaultTuning (or MacOSTuning)
  // shares. Thread-safe (a function-local static).
  static const std::shared_ptr<rocksdb::Cache>& block_cache() {
    static const std::shared_ptr<rocksdb::Cache> cache = rocksdb::NewLRUCache(std::size_t{64} << 20);
    return cache;
  }
  static void apply(rocksdb::Options& o) {
    rocksdb::BlockBasedTableOptions t;
    t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    t.block_cache = block_cache();
    t.format_version = 5;
    o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
    o.level_compaction_dynamic_level_bytes = true;
    o.bytes_per_sync = std::uint64_t{1} << 20;
  }
};
static_assert(rocks_tuning<DefaultTuning>);

// DefaultTuning plus the settings commonly recommended for macOS. To be clear
// about what they do:
// - use_adaptive_mutex, allow_mmap_reads, allow_mmap_writes, use_direct_reads
//   and use_direct_io_for_flush_and_compaction are already false by default
//   in RocksDB 7.8; setting them changes nothing, and none of them has
//   anything to do with lock errors ("lock hold by current process" is a
//   double open in one process; keel reports it as already_open_in_process).
// - max_open_files = 256 is the one that matters: macOS's default
//   file-descriptor limit is low (often 256) and RocksDB's default (-1, keep
//   every SST file open) ends in "Too many open files" as the DB grows.
// - IncreaseParallelism(2) sizes the background flush/compaction pools. Note
//   it resizes the thread pools of Env::Default(), which every DB in the
//   process shares.
// Durability cost on macOS comes from F_FULLFSYNC (RocksDB >= 6.29), paid on
// every synced write: leave sync_writes off unless you need it.
struct MacOSTuning {
  static void apply(rocksdb::Options& o) {
    DefaultTuning::apply(o);
    o.use_adaptive_mutex = false;
    o.allow_mmap_reads = false;
    o.allow_mmap_writes = false;
    o.use_direct_reads = false;
    o.use_direct_io_for_flush_and_compaction = false;
    o.max_open_files = 256;
    o.IncreaseParallelism(2);
  }
};
static_assert(rocks_tuning<MacOSTuning>);

struct rocks_options {
  // The database directory. Created (with missing parents) when
  // create_if_missing is true.
  std::filesystem::path path{};
  bool create_if_missing = true;
  // Open with rocksdb::DB::OpenForReadOnly: no LOCK is taken (the LOCK file is
  // not even opened), so it works while another process has the database
  // open read-write, and never disturbs that process's lock. The store reads
  // the state as of its open: later writes by the other process are not seen
  // (reopen to see them). Every write (put, erase, write, ...) returns
  // errc::read_only. Nothing is created: create_if_missing is ignored, and a
  // missing directory, or one with no database in it, is errc::not_found.
  // sync_writes and sync_on_close do not apply. In this process a directory
  // is open either read-write once or read-only any number of times
  // (already_open_in_process otherwise; see detail/dir_registry.hpp).
  bool read_only = false;
  // Every write waits until the WAL is fsynced: acknowledged writes survive a
  // power loss. Off: they survive a process crash, not a machine crash.
  bool sync_writes = false;
  // close() fsyncs the WAL before closing, so everything written before a
  // successful close() survives a power loss even without sync_writes.
  bool sync_on_close = true;
  // Not owned; must outlive the store. For tests (fault injection) and for
  // RocksDB without disk (rocksdb::NewMemEnv). nullptr: Env::Default().
  rocksdb::Env* env = nullptr;
  // Last word on the options, applied after the tuning and after keel has
  // set Options::info_log: a read-write open with the default Env gets keel's
  // info log (detail::rocks_info_log: the same <path>/LOG, previous one kept
  // as LOG.old.<microseconds>, lines it cannot write on a full disk dropped,
  // where RocksDB's own logger aborts the process). To get RocksDB's own
  // logger back: `o.info_log = nullptr;` here (it then honours db_log_dir).
  std::function<void(rocksdb::Options&)> customize{};
};

namespace detail {

// Copy of the current entry of a RocksDB iterator, so that a view handed to
// the caller stays valid even if another thread closes the store meanwhile.
struct rocks_cursor_state;
struct rocks_snapshot_state;

}  // namespace detail

// ---------------------------------------------------------------------------
// RocksPolicy<Tuning>: the RocksDB backend. See store.hpp for the contract.
//
// Thread safety: all members may be called concurrently. Point operations
// share a reader lock with each other; close() takes it exclusively, so it
// waits for operations in flight and later ones see errc::closed. Each cursor
// has its own mutex, taken once per read-ahead chunk (not per step), so close()
// can delete its iterator safely; a step after close() begins reports closed.
// ---------------------------------------------------------------------------
template <class Tuning>
class RocksPolicy : public std::enable_shared_from_this<RocksPolicy<Tuning>> {
  static_assert(rocks_tuning<Tuning>);
  struct private_tag {};

 public:
  using options = rocks_options;
  static constexpr keel::backend backend_kind = keel::backend::rocksdb;
  class cursor_type;
  class snapshot_type;

  static result<std::shared_ptr<RocksPolicy>> open(const options& opts);

  RocksPolicy(private_tag, options opts, detail::dir_registry::claim claim, rocksdb::DB* db)
      : opts_(std::move(opts)), claim_(std::move(claim)), db_(db) {
    write_options_.sync = opts_.sync_writes;
  }
  RocksPolicy(const RocksPolicy&) = delete;
  RocksPolicy& operator=(const RocksPolicy&) = delete;
  ~RocksPolicy() { (void)close(); }

  result<void> put(std::string_view key, std::string_view value) {
    std::shared_lock<std::shared_mutex> lock;
    if (auto refused = enter_write(lock, "put")) return std::move(*refused);
    std::shared_lock gate(write_gate_);
    if (auto refused = refuse_after_wal_failure("put")) return std::move(*refused);
    if (auto r = check_write(db_->Put(write_options_, slice(key), slice(value)), "put"); !r) return r;
    if (conflicts_->recording()) conflicts_->record({std::string(key)});
    return {};
  }

  result<std::optional<std::string>> get(std::string_view key) const { return get_at(key, nullptr); }
  result<bool> contains(std::string_view key) const { return contains_at(key, nullptr); }

  result<void> erase(std::string_view key) {
    std::shared_lock<std::shared_mutex> lock;
    if (auto refused = enter_write(lock, "erase")) return std::move(*refused);
    std::shared_lock gate(write_gate_);
    if (auto refused = refuse_after_wal_failure("erase")) return std::move(*refused);
    if (auto r = check_write(db_->Delete(write_options_, slice(key)), "erase"); !r) return r;
    if (conflicts_->recording()) conflicts_->record({std::string(key)});
    return {};
  }

  result<void> write(const write_batch& batch) {
    for (const auto& op : batch) {
      if (op.kind == write_batch::op_kind::erase_range && !erase_range_is_valid(op.range())) return bad_range();
    }
    std::shared_lock<std::shared_mutex> lock;
    if (auto refused = enter_write(lock, "write")) return std::move(*refused);
    // An erase_range without an upper bound is resolved against the keys
    // present, so no other writer may slip a key in meanwhile.
    if (has_open_ended_range(batch)) {
      std::unique_lock gate(write_gate_);
      return apply(batch, "write");
    }
    std::shared_lock gate(write_gate_);
    return apply(batch, "write");
  }

  result<void> erase_range(const key_range& range) {
    if (!erase_range_is_valid(range)) return bad_range();
    write_batch b;
    b.erase_range(range);
    return write(b);
  }

  // RocksDB's batched MultiGet: one consistent view (an implicit snapshot
  // for the whole call), keys looked up together.
  result<std::vector<std::optional<std::string>>> multi_get(std::span<const std::string_view> keys) const {
    std::vector<rocksdb::Slice> slices;
    slices.reserve(keys.size());
    for (std::string_view k : keys) slices.push_back(slice(k));
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    std::shared_lock<std::shared_mutex> lock;
    if (!enter(lock)) return closed();
    if (!keys.empty()) {
      db_->MultiGet(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), keys.size(), slices.data(), values.data(),
                    statuses.data());
    }
    std::vector<std::optional<std::string>> out(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (statuses[i].ok())
        out[i].emplace(values[i].data(), values[i].size());
      else if (!statuses[i].IsNotFound())
        return detail::rocks_op_error(statuses[i], "multi_get", opts_.path);
    }
    return out;
  }

  // CompactRange over range (the whole key space when unbounded), down to
  // the bottommost level so that erased data and range tombstones go.
  result<void> compact(const key_range& range) {
    if (!erase_range_is_valid(range))
      return keel::error(errc::invalid_argument, "compact: the range's lower bound is above its upper bound");
    std::shared_lock<std::shared_mutex> lock;
    if (auto refused = enter_write(lock, "compact")) return std::move(*refused);
    if (range.is_empty()) return {};
    rocksdb::CompactRangeOptions co;
    co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
    rocksdb::Slice lo, hi;
    if (range.lower()) lo = slice(*range.lower());
    if (range.upper()) hi = slice(*range.upper());
    return check(db_->CompactRange(co, range.lower() ? &lo : nullptr, range.upper() ? &hi : nullptr), "compact");
  }

  // Syncs the WAL (as DB::FlushWAL(true) would): every write acknowledged
  // before the call survives a power loss, whatever sync_writes says
  // (basic_store::flush()). After a failed write (a full disk, an I/O error)
  // it returns that error (errc::no_space, errc::io_error) and touches no
  // file; see sync_wal(). Nothing to do on a read-only store.
  result<void> flush() {
    std::shared_lock<std::shared_mutex> lock;
    if (!enter(lock)) return closed();
    if (opts_.read_only) return {};
    if (auto refused = refuse_after_wal_failure("flush")) return std::move(*refused);
    return check_write(sync_wal(), "flush");
  }

  // rocksdb::Checkpoint: SST files hard-linked where the filesystem allows
  // (copied otherwise), the memtable flushed first, so `dir` opens as a
  // database with everything written before the call. `dir` must not exist
  // and its parent must; RocksDB builds it in "<dir>.tmp" and renames it, and
  // removes that staging directory when it fails.
  result<void> checkpoint(const std::filesystem::path& dir) const;

  // The view is taken with writers held off, so it reflects exactly the
  // writes recorded up to `start`.
  result<tx_start<snapshot_type>> begin_transaction() const {
    std::shared_lock<std::shared_mutex> lock;
    if (!enter(lock)) return closed();
    std::unique_lock gate(write_gate_);
    auto [start, registration] = conflicts_->begin();
    return tx_start<snapshot_type>{snapshot_locked(), start, std::move(registration)};
  }

  result<void> commit_transaction(const tx_record& tx) {
    std::shared_lock<std::shared_mutex> lock;
    if (auto refused = enter_write(lock, "commit")) return std::move(*refused);
    std::unique_lock gate(write_gate_);
    if (auto valid = conflicts_->validate(tx); !valid) return valid;
    return apply(tx.writes, "commit");
  }

  cursor_type scan(const key_range& range) const;
  static cursor_type failed_cursor(keel::error e);
  result<snapshot_type> snapshot() const;

  result<void> close();

  bool is_open() const noexcept {
    std::shared_lock<std::shared_mutex> lock;
    return enter(lock);
  }

  // Opened with rocks_options::read_only.
  bool read_only() const noexcept { return opts_.read_only; }

  const std::filesystem::path& path() const noexcept { return opts_.path; }

  // Runs f(rocksdb::DB&) under the reader lock, for RocksDB calls keel does
  // not wrap (properties, compaction, checkpoints). Do not keep the pointer,
  // do not close or delete the DB, and release iterators and snapshots you
  // create before returning. Gives errc::closed after close().
  template <class F>
  auto with_db(F&& f) const -> result<std::invoke_result_t<F, rocksdb::DB&>> {
    std::shared_lock<std::shared_mutex> lock;
    if (!enter(lock)) return closed();
    if constexpr (std::is_void_v<std::invoke_result_t<F, rocksdb::DB&>>) {
      std::forward<F>(f)(*db_);
      return {};
    } else {
      return std::forward<F>(f)(*db_);
    }
  }

 private:
  friend class cursor_type;
  friend class snapshot_type;
  friend struct detail::rocks_cursor_state;

  static rocksdb::Slice slice(std::string_view s) { return {s.data(), s.size()}; }
  // Takes the reader lock for one operation. False once close() has begun.
  bool enter(std::shared_lock<std::shared_mutex>& lock) const noexcept {
    if (closing_.load(std::memory_order_acquire)) return false;
    lock = std::shared_lock(lifecycle_);
    return db_ != nullptr;
  }
  keel::error closed() const { return closed_error("store '" + opts_.path.string() + "'"); }
  // Starts a write named `op`: takes the reader lock like enter(), then
  // refuses with errc::closed after close() began, or errc::read_only on a
  // read-only store. Every write path (put, erase, write, and any later one:
  // transaction commit, erase_range, compact, ...) starts here.
  std::optional<keel::error> enter_write(std::shared_lock<std::shared_mutex>& lock, std::string_view op) const {
    if (!enter(lock)) return closed();
    if (opts_.read_only) {
      return keel::error(errc::read_only, std::string(op) + " on '" + opts_.path.string() +
                                              "' refused: the store was opened read-only (rocks_options::read_only)");
    }
    return std::nullopt;
  }
  // Syncs every live WAL file, as FlushWAL(true) does, but checks the DB's
  // background error first: a synced write of an empty batch. After a failed
  // WAL append (EIO, ENOSPC) FlushWAL/SyncWAL reach the failed log writer, and
  // Debian's RocksDB (assertions on) aborts the process there; the empty
  // write returns the background error instead. Inside enter().
  rocksdb::Status sync_wal() const {
    rocksdb::WriteOptions sync_options;
    sync_options.sync = true;
    rocksdb::WriteBatch empty;
    return db_->Write(sync_options, &empty);
  }
  // After a write that failed with an I/O error (ENOSPC, EIO), RocksDB 7.8
  // may go on writing the same WAL file through its failed writer: when it
  // resumes (DB::Resume(), or on its own once 64 MiB are free) with an empty
  // memtable, it switches to no new WAL, and the next write reaches that
  // writer, where Debian's RocksDB (assertions on) aborts the process. So a
  // failed write records the WAL current then, and every later write, flush
  // and close-time sync is refused (with the first error's code and an
  // explanation) until RocksDB has moved to another WAL (a resume that
  // flushed a memtable does) or the store is reopened. Cost while nothing
  // failed: one atomic load per write.
  struct wal_failure {
    std::optional<std::uint64_t> wal;  // the WAL's number; nullopt: unknown (refuse until reopened)
    keel::error error;                 // the write's error
  };
  std::optional<std::uint64_t> current_wal() const {
    std::unique_ptr<rocksdb::LogFile> wal;
    if (!db_->GetCurrentWalFile(&wal).ok() || !wal) return std::nullopt;
    return wal->LogNumber();
  }
  // The refusal for `op` while a failed WAL is still current; nullopt when
  // writing is safe. Inside enter().
  std::optional<keel::error> refuse_after_wal_failure(std::string_view op) const {
    if (!wal_failed_.load(std::memory_order_acquire)) return std::nullopt;
    std::lock_guard lock(wal_failure_mutex_);
    if (!wal_failure_) return std::nullopt;
    if (wal_failure_->wal) {
      if (const std::optional<std::uint64_t> now = current_wal(); now && *now != *wal_failure_->wal) {
        wal_failure_.reset();  // RocksDB writes a new WAL: the failed writer is gone
        wal_failed_.store(false, std::memory_order_release);
        return std::nullopt;
      }
    }
    std::string text = std::string(op) + " on '" + opts_.path.string() +
                       "' refused: an earlier write failed and RocksDB would write again to the WAL file that failed "
                       "(RocksDB 7.8 aborts the process there); close() the store and open it again";
    if (wal_failure_->error == errc::no_space) text += " once some space is free";
    return keel::error(wal_failure_->error.code(), text + ". The first error: " + wal_failure_->error.message());
  }
  // check(), and records a failed write's WAL (see wal_failure).
  result<void> check_write(const rocksdb::Status& s, std::string_view op) const {
    if (s.ok()) return {};
    keel::error e = detail::rocks_op_error(s, op, opts_.path);
    if (s.IsIOError()) {
      std::lock_guard lock(wal_failure_mutex_);
      if (!wal_failure_) {
        wal_failure_ = wal_failure{current_wal(), e};
        wal_failed_.store(true, std::memory_order_release);
      }
    }
    return e;
  }
  result<void> check(const rocksdb::Status& s, std::string_view op) const {
    if (s.ok()) return {};
    return detail::rocks_op_error(s, op, opts_.path);
  }

  static keel::error bad_range() {
    return keel::error(errc::invalid_argument, "erase_range: the range's lower bound is above its upper bound");
  }
  static bool has_open_ended_range(const write_batch& batch) {
    for (const auto& op : batch) {
      if (op.kind == write_batch::op_kind::erase_range && !op.has_upper) return true;
    }
    return false;
  }
  // Writes the batch and records it for transactions. Called inside enter()
  // with write_gate_ held: exclusively when the batch has an open-ended
  // erase_range (resolved here against the largest key present) or is a
  // commit, shared otherwise.
  result<void> apply(const write_batch& batch, std::string_view what) {
    rocksdb::WriteBatch wb(batch.payload_bytes() + 16 * batch.size() + 64);
    std::optional<std::string> largest_put;     // the largest key put by the ops so far
    std::optional<std::optional<std::string>> largest_stored;  // looked up on first need
    for (const auto& op : batch) {
      rocksdb::Status s;
      switch (op.kind) {
        case write_batch::op_kind::put:
          s = wb.Put(slice(op.key), slice(op.value));
          if (!largest_put || op.key > *largest_put) largest_put = std::string(op.key);
          break;
        case write_batch::op_kind::erase: s = wb.Delete(slice(op.key)); break;
        case write_batch::op_kind::erase_range: {
          const key_range r = op.range();
          if (r.is_empty()) break;
          std::string upper(op.value);
          if (!op.has_upper) {  // up to just past the largest key that can be there
            if (!largest_stored) {
              auto l = largest_key();
              if (!l) return std::move(l).error();
              largest_stored = std::move(*l);
            }
            std::optional<std::string> largest = *largest_stored;
            if (largest_put && (!largest || *largest_put > *largest)) largest = largest_put;
            if (!largest || (r.lower() && *largest < *r.lower())) break;  // no key at or above lower
            upper = detail::key_successor(*largest);
          }
          s = wb.DeleteRange(slice(op.has_lower ? op.key : std::string_view()), slice(upper));
          break;
        }
      }
      if (!s.ok()) return detail::rocks_op_error(s, what, opts_.path);
    }
    if (auto refused = refuse_after_wal_failure(what)) return std::move(*refused);
    if (auto r = check_write(db_->Write(write_options_, &wb), what); !r) return r;
    conflicts_->record(batch);
    return {};
  }
  // The largest key in the database (nullopt when empty). Inside enter().
  result<std::optional<std::string>> largest_key() const {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    it->SeekToLast();
    if (it->Valid()) return std::optional<std::string>(it->key().ToString());
    if (!it->status().ok()) return detail::rocks_op_error(it->status(), "erase_range", opts_.path);
    return std::optional<std::string>();
  }

  result<std::optional<std::string>> get_at(std::string_view key, const rocksdb::Snapshot* const* snap) const {
    std::shared_lock<std::shared_mutex> lock;
    if (!enter(lock)) return closed();
    rocksdb::ReadOptions ro;
    if (snap) {
      if (!*snap) return closed();
      ro.snapshot = *snap;
    }
    std::string value;
    rocksdb::Status s = db_->Get(ro, slice(key), &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return detail::rocks_op_error(s, "get", opts_.path);
    return std::optional<std::string>(std::move(value));
  }

  result<bool> contains_at(std::string_view key, const rocksdb::Snapshot* const* snap) const {
    std::shared_lock<std::shared_mutex> lock;
    if (!enter(lock)) return closed();
    rocksdb::ReadOptions ro;
    if (snap) {
      if (!*snap) return closed();
      ro.snapshot = *snap;
    }
    rocksdb::PinnableSlice value;
    rocksdb::Status s = db_->Get(ro, db_->DefaultColumnFamily(), slice(key), &value);
    if (s.IsNotFound()) return false;
    if (!s.ok()) return detail::rocks_op_error(s, "contains", opts_.path);
    return true;
  }

  // Shared by the copies of one snapshot and the cursors reading through it.
  struct snapshot_view {
    std::shared_ptr<const RocksPolicy> owner;
    const rocksdb::Snapshot* snap = nullptr;  // guarded by owner->lifecycle_; null once released
    ~snapshot_view() {
      std::shared_lock lifecycle(owner->lifecycle_);
      {
        std::lock_guard live(owner->live_mutex_);
        owner->live_snapshots_.erase(&snap);
      }
      if (snap && owner->db_) owner->db_->ReleaseSnapshot(snap);
    }
  };
  cursor_type make_cursor(const key_range& range, std::shared_ptr<const snapshot_view> snap) const;
  snapshot_type snapshot_locked() const;  // inside enter()

  options opts_;
  rocksdb::WriteOptions write_options_;
  detail::dir_registry::claim claim_;
  mutable std::shared_mutex lifecycle_;  // guards db_ and every iterator/snapshot pointer
  std::atomic<bool> open_{true};         // !closing_, for cursors walked by runs (open_flag())
  std::atomic<bool> closing_{false};     // set first by close(): new calls fail at once, so a
                                         // stream of readers cannot starve close()
  rocksdb::DB* db_ = nullptr;            // owned; null once closed
  // A write failed with an I/O error and its WAL may still be current: see
  // refuse_after_wal_failure(). The flag mirrors wal_failure_.has_value().
  mutable std::atomic<bool> wal_failed_{false};
  mutable std::mutex wal_failure_mutex_;
  mutable std::optional<wal_failure> wal_failure_;  // guarded by wal_failure_mutex_
  // Writers hold it shared; transaction begins and commits (and batches
  // with an open-ended erase_range) hold it exclusively, so that validation
  // and the write it allows are one step. Taken after lifecycle_.
  mutable std::shared_mutex write_gate_;
  std::shared_ptr<detail::conflict_tracker> conflicts_ = std::make_shared<detail::conflict_tracker>();

  // Live cursors and snapshots, released by close().
  mutable std::mutex live_mutex_;
  mutable std::unordered_set<detail::rocks_cursor_state*> live_cursors_;
  mutable std::unordered_set<const rocksdb::Snapshot**> live_snapshots_;
};

namespace detail {

// Shared by a cursor and (for removal) its store. Lock order:
// store lifecycle_ -> store live_mutex_ -> cursor mutex.
//
// The cursor reads ahead: each refill takes the mutex once and copies the
// next `chunk` entries (1, then doubling up to 128) into `buf`, so a step
// usually costs an index increment instead of a lock and two string copies.
// The copies keep the views handed out valid even if close() deletes the
// iterator meanwhile.
struct rocks_cursor_state {
  using item = cursor_entry;   // views into buf
  static constexpr std::size_t max_chunk = 128;

  std::mutex mutex;
  std::unique_ptr<rocksdb::Iterator> iterator;  // null once released
  std::string lower, upper;                     // iterate bounds: must outlive the iterator
  rocksdb::Slice lower_slice, upper_slice;
  std::unique_ptr<char[]> buf;                  // copies of the entries read ahead
  std::size_t buf_used = 0, buf_capacity = 0;
  std::array<item, max_chunk> items;            // the entries read ahead: items[0, count)
  std::size_t count = 0;
  std::size_t pos = 0;                          // current entry: items[pos]
  std::size_t chunk = 1;                        // entries per refill
  bool at_end = false;                          // the iterator has no more entries
  std::optional<keel::error> pending;           // its error, reported after the buffered entries
  bool reversed = false;
  bool valid = false;
  std::optional<keel::error> error;

  // Replaces buf/items with copies of up to `chunk` entries from the
  // iterator, which is positioned on the first of them; leaves it on the one
  // after. This runs once per entry scanned: the loop keeps its state in
  // locals (registers across the calls into RocksDB's iterator), copies each key
  // and value with copy_bytes, and records the entry as views into buf.
  template <bool Reverse>
  void copy_chunk() {
    rocksdb::Iterator& it = *iterator;
    item* out = items.data();
    char* b = buf.get();
    std::size_t used = 0, cap = buf_capacity, n = 0;
    const std::size_t limit = chunk;
    while (n < limit && it.Valid()) {
      const rocksdb::Slice k = it.key(), v = it.value();
      const std::size_t need = used + k.size() + v.size();
      if (need > cap) {
        const char* old = b;
        b = grow(used, need);
        cap = buf_capacity;
        for (std::size_t i = 0; i < n; ++i)   // rare: the views so far move with the bytes
          out[i] = {std::string_view(b + (out[i].key.data() - old), out[i].key.size()),
                    std::string_view(b + (out[i].value.data() - old), out[i].value.size())};
      }
      out[n++] = {std::string_view(b + used, k.size()), std::string_view(b + used + k.size(), v.size())};
      copy_bytes(b + used, k.data(), k.size());
      copy_bytes(b + used + k.size(), v.data(), v.size());
      used = need;
      if constexpr (Reverse) it.Prev();
      else it.Next();
    }
    count = n;
    buf_used = used;
  }
  // memcpy, with the short sizes most keys have (4-16 bytes) done inline as
  // two overlapping fixed-size moves instead of a call.
  static void copy_bytes(char* to, const char* from, std::size_t n) noexcept {
    if (n >= 8 && n <= 16) {
      std::uint64_t head, tail;
      std::memcpy(&head, from, 8);
      std::memcpy(&tail, from + n - 8, 8);
      std::memcpy(to, &head, 8);
      std::memcpy(to + n - 8, &tail, 8);
    } else if (n >= 4 && n < 8) {
      std::uint32_t head, tail;
      std::memcpy(&head, from, 4);
      std::memcpy(&tail, from + n - 4, 4);
      std::memcpy(to, &head, 4);
      std::memcpy(to + n - 4, &tail, 4);
    } else if (n != 0) {
      std::memcpy(to, from, n);
    }
  }
  // A buffer of at least `need` bytes holding the first `used` bytes of buf.
  char* grow(std::size_t used, std::size_t need) {
    const std::size_t cap = std::max(need, 2 * buf_capacity);
    auto bigger = std::make_unique_for_overwrite<char[]>(cap);
    if (used) std::memcpy(bigger.get(), buf.get(), used);
    buf = std::move(bigger);
    buf_capacity = cap;
    return buf.get();
  }
};

}  // namespace detail

// A cursor over the RocksDB backend. Movable, single-threaded use.
template <class Tuning>
class RocksPolicy<Tuning>::cursor_type {
 public:
  cursor_type(cursor_type&&) noexcept = default;
  cursor_type& operator=(cursor_type&&) noexcept = default;
  ~cursor_type() { release(); }

  bool valid() const noexcept { return state_->valid; }
  std::string_view key() const noexcept { return state_->items[state_->pos].key; }
  std::string_view value() const noexcept { return state_->items[state_->pos].value; }
  const std::optional<keel::error>& error() const noexcept { return state_->error; }

  void next() {
    if (!state_->valid) return;
    if (owner_->closing_.load(std::memory_order_acquire)) return stop(owner_->closed());
    if (++state_->pos < state_->count) return;
    if (state_->at_end) {
      state_->valid = false;
      state_->error = std::move(state_->pending);
      return;
    }
    std::lock_guard lock(state_->mutex);
    if (!state_->iterator) return stop(owner_->closed());
    read_ahead();
  }

  // The optional run_cursor members (store.hpp): a run is the entries read
  // ahead and not yet handed out, as views into the read-ahead buffer (valid
  // until the next fill(), which may refill it). Once walked by fill(), the
  // cursor is walked by fill() only.
  std::size_t fill(std::span<cursor_entry> out) {
    detail::rocks_cursor_state& st = *state_;
    if (!st.valid || out.empty()) return 0;
    if (owner_->closing_.load(std::memory_order_acquire)) {
      stop(owner_->closed());
      return 0;
    }
    if (st.pos == st.count) {   // every entry read ahead was handed out
      if (st.at_end) {
        st.valid = false;
        st.error = std::move(st.pending);
        return 0;
      }
      std::lock_guard lock(st.mutex);
      if (!st.iterator) {
        stop(owner_->closed());
        return 0;
      }
      read_ahead();
      if (!st.valid) return 0;
    }
    const std::size_t n = std::min(out.size(), st.count - st.pos);
    std::copy_n(st.items.data() + st.pos, n, out.data());
    st.pos += n;
    return n;
  }
  // Precondition: not a failed cursor (one that fill() gave entries).
  const std::atomic<bool>& open_flag() const noexcept { return owner_->open_; }

 private:
  friend class RocksPolicy;
  cursor_type(std::shared_ptr<const RocksPolicy> owner, std::shared_ptr<const void> snap,
              std::unique_ptr<detail::rocks_cursor_state> state)
      : owner_(std::move(owner)), snap_(std::move(snap)), state_(std::move(state)) {}

  // Copies the next chunk of entries from the iterator, which is positioned
  // on the first of them. Called with state_->mutex held (or before the
  // cursor is shared).
  void read_ahead() {
    detail::rocks_cursor_state& st = *state_;
    rocksdb::Iterator& it = *st.iterator;
    st.pos = 0;
    if (st.reversed) st.copy_chunk<true>();
    else st.copy_chunk<false>();
    if (!it.Valid()) {
      st.at_end = true;
      if (!it.status().ok()) st.pending = detail::rocks_op_error(it.status(), "scan", owner_->opts_.path);
    }
    st.chunk = std::min(st.chunk * 2, detail::rocks_cursor_state::max_chunk);
    st.valid = st.count != 0;
    if (!st.valid) st.error = std::move(st.pending);
  }
  void stop(keel::error e) {
    state_->valid = false;
    state_->error = std::move(e);
  }
  void release() noexcept {
    if (!state_ || !owner_) return;
    std::shared_lock lifecycle(owner_->lifecycle_);
    {
      std::lock_guard live(owner_->live_mutex_);
      owner_->live_cursors_.erase(state_.get());
    }
    std::lock_guard lock(state_->mutex);
    state_->iterator.reset();  // the DB is open (or the iterator is already gone)
  }

  std::shared_ptr<const RocksPolicy> owner_;  // null for a failed cursor
  std::shared_ptr<const void> snap_;  // keeps the snapshot a cursor reads alive
  std::unique_ptr<detail::rocks_cursor_state> state_;
};

// A snapshot of the RocksDB backend: a rocksdb::Snapshot, released when the
// last copy goes or at close(), whichever comes first.
template <class Tuning>
class RocksPolicy<Tuning>::snapshot_type {
 public:
  result<std::optional<std::string>> get(std::string_view key) const { return owner_->get_at(key, &view_->snap); }
  result<bool> contains(std::string_view key) const { return owner_->contains_at(key, &view_->snap); }
  cursor_type scan(const key_range& range) const { return owner_->make_cursor(range, view_); }

 private:
  friend class RocksPolicy;
  explicit snapshot_type(std::shared_ptr<const snapshot_view> v) : owner_(v->owner.get()), view_(std::move(v)) {}
  const RocksPolicy* owner_;
  std::shared_ptr<const snapshot_view> view_;
};

template <class Tuning>
result<std::shared_ptr<RocksPolicy<Tuning>>> RocksPolicy<Tuning>::open(const options& opts) {
  namespace fs = std::filesystem;
  const fs::path& dir = opts.path;
  const std::string where = "'" + dir.string() + "'";
  if (dir.empty()) return fail(errc::invalid_argument, "cannot open a RocksDB store: the path is empty");
  // The OS sees a path only up to its first NUL: "db\0x" would silently be "db".
  if (dir.native().find('\0') != std::filesystem::path::string_type::npos) {
    std::string shown = dir.string();
    for (char& c : shown) if (c == '\0') c = '?';
    return fail(errc::invalid_argument,
                "cannot open '" + shown + "' (NUL shown as '?'): the path contains a NUL byte, which no file system allows");
  }

  std::error_code ec;
  fs::file_status st = fs::status(dir, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return fail(ec == std::errc::permission_denied ? errc::permission_denied
                : ec == std::errc::not_a_directory ? errc::invalid_argument
                                                   : errc::io_error,
                "cannot open " + where + ": " + ec.message());
  }
  if (fs::exists(st) && !fs::is_directory(st)) {
    return fail(errc::invalid_argument, "cannot open " + where + ": it exists and is not a directory");
  }
  // Files of a database but no CURRENT: RocksDB would report it only after
  // writing a new, empty database's files beside the old ones. A MANIFEST
  // named by CURRENT that is missing or not a file: RocksDB reports it after
  // rotating the LOG. Refuse both before RocksDB touches the directory.
  const detail::db_dir_state state = detail::inspect_db_dir(dir);
  if (!state.bad_manifest.empty()) {
    return detail::damaged_file_error(dir, state.bad_manifest, state.manifest_is_directory);
  }
  if (state.what == detail::db_dir_state::kind::damaged && state.data_files) {
    return fail(errc::corruption, "cannot open " + where + ": the database is damaged: it has RocksDB files (" +
                                      detail::join_names(state.files) +
                                      ") but no CURRENT file. Keep a copy of the directory before anything else; "
                                      "restore it from a backup, or repair a copy of it (rocksdb's `ldb repair`)");
  }
  if (opts.read_only && (state.what == detail::db_dir_state::kind::missing ||
                         state.what == detail::db_dir_state::kind::empty)) {
    return fail(errc::not_found, "cannot open " + where + " read-only: no database there (" +
                                     (state.what == detail::db_dir_state::kind::missing
                                          ? std::string("no such directory")
                                          : std::string("no CURRENT file")) +
                                     "); a read-only open creates nothing");
  }
  if (!fs::exists(st)) {
    if (!opts.create_if_missing) {
      return fail(errc::not_found, "cannot open " + where + ": no such directory (create_if_missing is false)");
    }
    fs::create_directories(dir, ec);
    if (ec) {
      errc code = ec == std::errc::permission_denied || ec == std::errc::read_only_file_system ? errc::permission_denied
                  : ec == std::errc::no_space_on_device                                      ? errc::no_space
                  : ec == std::errc::not_a_directory || ec == std::errc::file_exists ? errc::invalid_argument
                                                                                     : errc::io_error;
      return fail(code, "cannot create " + where + ": " + ec.message());
    }
  }

  auto claim = detail::dir_registry::instance().acquire(
      dir, opts.read_only ? detail::dir_registry::mode::read_only : detail::dir_registry::mode::read_write);
  if (!claim) return std::move(claim).error();

  rocksdb::Options ro;
  Tuning::apply(ro);
  ro.create_if_missing = opts.create_if_missing;
  if (opts.env) ro.env = opts.env;
  // RocksDB's own info log aborts the process on a full disk (see
  // detail/rocks_info_log.hpp): keel's writes the same <dir>/LOG and drops
  // the lines it cannot write. Not for read-only opens (which write no LOG)
  // nor with a custom Env (the LOG then comes from that Env, as before);
  // customize may replace it (o.info_log = nullptr: RocksDB's own again).
  if (!opts.read_only && !opts.env) ro.info_log = std::make_shared<detail::rocks_info_log>(dir);
  if (opts.customize) opts.customize(ro);

  rocksdb::DB* db = nullptr;
  rocksdb::Status s;
  if (opts.read_only) {
    // create_if_missing = false: RocksDB then only reads CURRENT first
    // (true would create the directory). Takes no lock, writes no LOG. A
    // writer in another process may switch to a new MANIFEST and delete the
    // one just read from CURRENT: then try again (at most twice more).
    ro.create_if_missing = false;
    for (int attempt = 0;; ++attempt) {
      const std::string current = detail::read_current(dir);
      s = rocksdb::DB::OpenForReadOnly(ro, dir.string(), &db);
      if (s.ok() || attempt == 2 || detail::read_current(dir) == current) break;
      delete db;
      db = nullptr;
    }
  } else {
    s = rocksdb::DB::Open(ro, dir.string(), &db);
  }
  if (!s.ok()) {
    delete db;
    return detail::rocks_open_error(s, dir);
  }
  return std::make_shared<RocksPolicy>(private_tag{}, opts, std::move(*claim), db);
}

template <class Tuning>
typename RocksPolicy<Tuning>::cursor_type RocksPolicy<Tuning>::failed_cursor(keel::error e) {
  auto state = std::make_unique<detail::rocks_cursor_state>();
  state->error = std::move(e);
  return cursor_type(nullptr, nullptr, std::move(state));
}

template <class Tuning>
typename RocksPolicy<Tuning>::cursor_type RocksPolicy<Tuning>::scan(const key_range& range) const {
  return make_cursor(range, nullptr);
}

template <class Tuning>
typename RocksPolicy<Tuning>::cursor_type RocksPolicy<Tuning>::make_cursor(
    const key_range& range, std::shared_ptr<const snapshot_view> snap) const {
  auto state = std::make_unique<detail::rocks_cursor_state>();
  state->reversed = range.is_reversed();
  std::shared_lock<std::shared_mutex> lifecycle;
  if (!enter(lifecycle) || (snap && !snap->snap)) return failed_cursor(closed());
  if (range.is_empty()) return cursor_type(this->shared_from_this(), nullptr, std::move(state));

  // The bounds are read through pointers for the iterator's whole life: they
  // live in the (heap-allocated, never moved) cursor state.
  rocksdb::ReadOptions ro;
  if (range.lower()) {
    state->lower = *range.lower();
    state->lower_slice = slice(state->lower);
    ro.iterate_lower_bound = &state->lower_slice;
  }
  if (range.upper()) {
    state->upper = *range.upper();
    state->upper_slice = slice(state->upper);
    ro.iterate_upper_bound = &state->upper_slice;
  }
  if (snap) ro.snapshot = snap->snap;
  state->iterator.reset(db_->NewIterator(ro));
  rocksdb::Iterator& it = *state->iterator;
  if (!state->reversed) {
    if (range.lower())
      it.Seek(state->lower_slice);
    else
      it.SeekToFirst();
  } else if (range.upper()) {
    it.SeekForPrev(state->upper_slice);
    if (it.Valid() && it.key() == state->upper_slice) it.Prev();
  } else {
    it.SeekToLast();
  }
  {
    std::lock_guard live(live_mutex_);
    live_cursors_.insert(state.get());
  }
  cursor_type c(this->shared_from_this(), std::move(snap), std::move(state));
  c.read_ahead();
  return c;
}

template <class Tuning>
result<typename RocksPolicy<Tuning>::snapshot_type> RocksPolicy<Tuning>::snapshot() const {
  std::shared_lock<std::shared_mutex> lifecycle;
  if (!enter(lifecycle)) return closed();
  return snapshot_locked();
}

template <class Tuning>
typename RocksPolicy<Tuning>::snapshot_type RocksPolicy<Tuning>::snapshot_locked() const {
  auto v = std::make_shared<snapshot_view>();
  v->owner = this->shared_from_this();
  v->snap = db_->GetSnapshot();
  std::lock_guard live(live_mutex_);
  live_snapshots_.insert(&v->snap);
  return snapshot_type(std::move(v));
}

template <class Tuning>
result<void> RocksPolicy<Tuning>::checkpoint(const std::filesystem::path& dir) const {
  if (auto bad = detail::checkpoint_path_error(dir)) return fail(std::move(*bad));
  std::shared_lock<std::shared_mutex> lock;
  if (!enter(lock)) return closed();
  rocksdb::Checkpoint* raw = nullptr;
  if (rocksdb::Status s = rocksdb::Checkpoint::Create(db_, &raw); !s.ok()) {
    return detail::rocks_op_error(s, "checkpoint", opts_.path);
  }
  std::unique_ptr<rocksdb::Checkpoint> cp(raw);
  rocksdb::Status s = cp->CreateCheckpoint(dir.string(), /*log_size_for_flush=*/0);
  if (!s.ok()) return detail::rocks_op_error(s, "checkpoint to '" + dir.string() + "'", opts_.path);
  return {};
}

template <class Tuning>
result<void> RocksPolicy<Tuning>::close() {
  closing_.store(true, std::memory_order_release);
  open_.store(false, std::memory_order_release);
  std::unique_lock lifecycle(lifecycle_);
  if (!db_) return {};
  {
    std::lock_guard live(live_mutex_);
    for (detail::rocks_cursor_state* c : live_cursors_) {
      std::lock_guard lock(c->mutex);
      c->iterator.reset();
    }
    for (const rocksdb::Snapshot** s : live_snapshots_) {
      if (*s) db_->ReleaseSnapshot(*s);
      *s = nullptr;
    }
  }
  rocksdb::Status synced = rocksdb::Status::OK();
  std::optional<keel::error> closed_refusal;
  if ((opts_.sync_on_close || opts_.sync_writes) && !opts_.read_only) {
    if (auto refused = refuse_after_wal_failure("close (WAL sync)")) {
      closed_refusal = std::move(refused);  // no sync through a failed WAL writer
    } else {
      synced = sync_wal();  // never FlushWAL: see sync_wal()
    }
  }
  rocksdb::Status closed_status = db_->Close();
  delete db_;
  db_ = nullptr;
  claim_.release();
  if (closed_refusal) return std::move(*closed_refusal);
  if (!synced.ok()) return detail::rocks_op_error(synced, "close (WAL sync)", opts_.path);
  if (!closed_status.ok()) return detail::rocks_op_error(closed_status, "close", opts_.path);
  return {};
}

}  // namespace keel

namespace keel {
static_assert(store_policy<RocksPolicy<DefaultTuning>>);
static_assert(store_policy<RocksPolicy<MacOSTuning>>);
static_assert(store_policy<RocksPolicy<RocksDefaultsTuning>>);
static_assert(run_cursor<RocksPolicy<DefaultTuning>::cursor_type>);

// What basic_store::stats() asks of the backend: the key RocksDB properties,
// rocksdb.estimate-num-keys as the key count, and the size of the files in
// the database directory.
template <class Tuning>
result<void> backend_stats(const RocksPolicy<Tuning>& p, store_stats& s) {
  static constexpr const char* names[] = {
      "rocksdb.estimate-num-keys",       "rocksdb.total-sst-files-size",   "rocksdb.live-sst-files-size",
      "rocksdb.estimate-live-data-size", "rocksdb.cur-size-all-mem-tables", "rocksdb.num-immutable-mem-table",
      "rocksdb.num-running-flushes",     "rocksdb.num-running-compactions", "rocksdb.compaction-pending",
      "rocksdb.background-errors",       "rocksdb.num-live-versions",      "rocksdb.estimate-pending-compaction-bytes",
      "rocksdb.num-snapshots",           "rocksdb.estimate-table-readers-mem", "rocksdb.block-cache-usage"};
  auto props = p.with_db([](rocksdb::DB& db) {
    std::vector<std::pair<std::string, std::uint64_t>> out;
    for (const char* n : names) {
      std::uint64_t v = 0;
      if (db.GetIntProperty(n, &v)) out.emplace_back(n, v);
    }
    return out;
  });
  if (!props) return std::move(props).error();
  s.properties = std::move(*props);
  for (const auto& [name, value] : s.properties) {
    if (name == "rocksdb.estimate-num-keys") s.keys = value;
  }
  s.keys_exact = false;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(p.path(), ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code fec;
    if (it->is_regular_file(fec)) {
      auto n = it->file_size(fec);
      if (!fec) s.size_bytes += n;
    }
  }
  return {};
}
}  // namespace keel
