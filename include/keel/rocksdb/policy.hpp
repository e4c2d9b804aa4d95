// keel: RocksPolicy<Tuning>, the RocksDB backend's policy: the contract
// methods (contract.hpp), each forwarding to the part that does the job:
//   rocksdb/open.hpp        opening (path checks, registry claim, lock
//                           diagnosis, options), the shared handle, closing
//   rocksdb/write_gate.hpp  the write gate (group commit kept, commits
//                           serialised) and the WAL-failure guard
//   rocksdb/cursor.hpp      the read-ahead cursor
//   rocksdb/errors.hpp      rocksdb::Status -> keel::error
//   rocksdb/tunings.hpp     the tunings (the Tuning parameter)
//
// LOCK ORDER (every mutex of a store, in the order they are taken):
//   1. h_.lifecycle    (shared_mutex, rocks_handle) guards h_.db and every
//                      iterator and snapshot pointer: shared for each call,
//                      exclusive for close(). Not taken at all once close()
//                      has begun (h_.closing): such calls fail at once.
//   2. gate_           (shared_mutex, rocks_write_gate): shared for plain
//                      writes, exclusive for transaction begin/commit and
//                      batches with an open-ended erase_range.
//   3. h_.live_mutex   (mutex) guards h_.live_cursors and h_.live_snapshots.
//   4. a cursor's rocks_cursor_state::mutex guards its iterator (a step takes
//                      it alone, without lifecycle; close() takes it under 1
//                      and 3 to delete the iterator).
//   Leaves (nothing else is taken while they are held): the write gate's WAL
//   failure mutex (under 1, and under 2 on writes), the conflict tracker's
//   mutex (under 2).
//
// Thread safety: all members may be called concurrently. Point operations
// share the lifecycle lock with each other; close() takes it exclusively, so
// it waits for operations in flight and later ones see errc::closed. Each
// cursor has its own mutex, taken once per read-ahead chunk (not per step),
// so close() can delete its iterator safely; a step after close() begins
// reports closed.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../contract.hpp"
#include "../detail/conflict_tracker.hpp"
#include "../detail/platform_file.hpp"
#include "../stats.hpp"
#include "../store.hpp"
#include "cursor.hpp"
#include "errors.hpp"
#include "open.hpp"
#include "options.hpp"
#include "tunings.hpp"
#include "write_gate.hpp"

namespace keel {

// RocksPolicy<Tuning>: the RocksDB backend. See contract.hpp for the
// contract, the file comment for the lock order.
template <class Tuning>
class RocksPolicy : public std::enable_shared_from_this<RocksPolicy<Tuning>> {
  static_assert(rocks_tuning<Tuning>);
  struct private_tag {};

 public:
  using options = rocks_options;
  static constexpr keel::backend backend_kind = keel::backend::rocksdb;
  class cursor_type;
  class snapshot_type;

  static result<std::shared_ptr<RocksPolicy>> open(const options& opts) {
    auto opened = detail::rocks_open(opts, &Tuning::apply);
    if (!opened) return std::move(opened).error();
    return std::make_shared<RocksPolicy>(private_tag{}, opts, std::move(opened->claim), opened->db);
  }

  RocksPolicy(private_tag, options opts, detail::dir_registry::claim claim, rocksdb::DB* db)
      : opts_(std::move(opts)), h_(opts_.path, std::move(claim), db) {
    write_options_.sync = opts_.sync_writes;
  }
  RocksPolicy(const RocksPolicy&) = delete;
  RocksPolicy& operator=(const RocksPolicy&) = delete;
  ~RocksPolicy() { (void)close(); }

  result<void> put(std::string_view key, std::string_view value) {
    std::shared_lock<std::shared_mutex> lock;
    if (auto refused = enter_write(lock, "put")) return std::move(*refused);
    auto gate = gate_.shared();
    if (auto refused = refuse_after_wal_failure("put")) return std::move(*refused);
    if (auto r = check_write(h_.db->Put(write_options_, slice(key), slice(value)), "put"); !r) return r;
    if (conflicts_->recording()) conflicts_->record({std::string(key)});
    return {};
  }

  result<std::optional<std::string>> get(std::string_view key) const { return read_at<true>(key, nullptr); }
  result<bool> contains(std::string_view key) const { return read_at<false>(key, nullptr); }

  result<void> erase(std::string_view key) {
    std::shared_lock<std::shared_mutex> lock;
    if (auto refused = enter_write(lock, "erase")) return std::move(*refused);
    auto gate = gate_.shared();
    if (auto refused = refuse_after_wal_failure("erase")) return std::move(*refused);
    if (auto r = check_write(h_.db->Delete(write_options_, slice(key)), "erase"); !r) return r;
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
      auto gate = gate_.exclusive();
      return apply(batch, "write");
    }
    auto gate = gate_.shared();
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
    if (!h_.enter(lock)) return h_.closed();
    if (!keys.empty()) {
      h_.db->MultiGet(rocksdb::ReadOptions(), h_.db->DefaultColumnFamily(), keys.size(), slices.data(),
                      values.data(), statuses.data());
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
    return check(h_.db->CompactRange(co, range.lower() ? &lo : nullptr, range.upper() ? &hi : nullptr), "compact");
  }

  // Syncs the WAL (as DB::FlushWAL(true) would): every write acknowledged
  // before the call survives a power loss, whatever sync_writes says
  // (basic_store::flush()). After a failed write (a full disk, an I/O error)
  // it returns that error (errc::no_space, errc::io_error) and touches no
  // file; see detail::rocks_sync_wal(). Nothing to do on a read-only store.
  result<void> flush() {
    std::shared_lock<std::shared_mutex> lock;
    if (!h_.enter(lock)) return h_.closed();
    if (opts_.read_only) return {};
    if (auto refused = refuse_after_wal_failure("flush")) return std::move(*refused);
    return check_write(detail::rocks_sync_wal(*h_.db), "flush");
  }

  // rocksdb::Checkpoint: SST files hard-linked where the filesystem allows
  // (copied otherwise), the memtable flushed first, so `dir` opens as a
  // database with everything written before the call. `dir` must not exist
  // and its parent must; RocksDB builds it in "<dir>.tmp" and renames it, and
  // removes that staging directory when it fails.
  result<void> checkpoint(const std::filesystem::path& dir) const {
    if (auto bad = detail::checkpoint_path_error(dir)) return fail(std::move(*bad));
    std::shared_lock<std::shared_mutex> lock;
    if (!h_.enter(lock)) return h_.closed();
    rocksdb::Checkpoint* raw = nullptr;
    if (rocksdb::Status s = rocksdb::Checkpoint::Create(h_.db, &raw); !s.ok()) {
      return detail::rocks_op_error(s, "checkpoint", opts_.path);
    }
    std::unique_ptr<rocksdb::Checkpoint> cp(raw);
    rocksdb::Status s = cp->CreateCheckpoint(dir.string(), /*log_size_for_flush=*/0);
    if (!s.ok()) return detail::rocks_op_error(s, "checkpoint to '" + detail::path_text(dir) + "'", opts_.path);
    return {};
  }

  // The view is taken with writers held off, so it reflects exactly the
  // writes recorded up to `start`.
  result<tx_start<snapshot_type>> begin_transaction() const {
    std::shared_lock<std::shared_mutex> lock;
    if (!h_.enter(lock)) return h_.closed();
    auto gate = gate_.exclusive();
    auto [start, registration] = conflicts_->begin();
    return tx_start<snapshot_type>{snapshot_locked(), start, std::move(registration)};
  }

  result<void> commit_transaction(const tx_record& tx) {
    std::shared_lock<std::shared_mutex> lock;
    if (auto refused = enter_write(lock, "commit")) return std::move(*refused);
    auto gate = gate_.exclusive();
    if (auto valid = conflicts_->validate(tx); !valid) return valid;
    return apply(tx.writes, "commit");
  }

  cursor_type scan(const key_range& range) const {
    return cursor_type(detail::rocks_cursor::open(handle(), range, nullptr));
  }
  static cursor_type failed_cursor(keel::error e) { return cursor_type(detail::rocks_cursor::failed(std::move(e))); }

  result<snapshot_type> snapshot() const {
    std::shared_lock<std::shared_mutex> lifecycle;
    if (!h_.enter(lifecycle)) return h_.closed();
    return snapshot_locked();
  }

  // Releases every cursor's iterator and every snapshot keel handed out,
  // syncs the WAL (sync_on_close or sync_writes; refused after a WAL failure,
  // see write_gate.hpp), closes and deletes the DB. Waits for calls in flight;
  // later calls get errc::closed. Idempotent.
  result<void> close() {
    h_.closing.store(true, std::memory_order_release);
    h_.open.store(false, std::memory_order_release);
    std::unique_lock lifecycle(h_.lifecycle);
    if (!h_.db) return {};
    {
      std::lock_guard live(h_.live_mutex);
      for (detail::rocks_cursor_state* c : h_.live_cursors) {
        std::lock_guard lock(c->mutex);
        c->iterator.reset();
      }
      for (const rocksdb::Snapshot** s : h_.live_snapshots) {
        if (*s) h_.db->ReleaseSnapshot(*s);
        *s = nullptr;
      }
    }
    rocksdb::Status synced = rocksdb::Status::OK();
    std::optional<keel::error> closed_refusal;
    if ((opts_.sync_on_close || opts_.sync_writes) && !opts_.read_only) {
      if (auto refused = refuse_after_wal_failure("close (WAL sync)")) {
        closed_refusal = std::move(refused);  // no sync through a failed WAL writer
      } else {
        synced = detail::rocks_sync_wal(*h_.db);  // never FlushWAL: see rocks_sync_wal()
      }
    }
    return h_.shut(synced, std::move(closed_refusal));
  }

  bool is_open() const noexcept {
    std::shared_lock<std::shared_mutex> lock;
    return h_.enter(lock);
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
    if (!h_.enter(lock)) return h_.closed();
    if constexpr (std::is_void_v<std::invoke_result_t<F, rocksdb::DB&>>) {
      std::forward<F>(f)(*h_.db);
      return {};
    } else {
      return std::forward<F>(f)(*h_.db);
    }
  }

 private:
  static rocksdb::Slice slice(std::string_view s) { return {s.data(), s.size()}; }

  // The handle, sharing ownership of this policy (cursors and snapshots keep
  // both alive).
  std::shared_ptr<const detail::rocks_handle> handle() const {
    return std::shared_ptr<const detail::rocks_handle>(this->shared_from_this(), &h_);
  }
  // Starts a write named `op`: takes the reader lock like enter(), then
  // refuses with errc::closed after close() began, or errc::read_only on a
  // read-only store. Every write path (put, erase, write, and any later one:
  // transaction commit, erase_range, compact, ...) starts here.
  std::optional<keel::error> enter_write(std::shared_lock<std::shared_mutex>& lock, std::string_view op) const {
    if (!h_.enter(lock)) return h_.closed();
    if (opts_.read_only) {
      return keel::error(errc::read_only, std::string(op) + " on '" + detail::path_text(opts_.path) +
                                              "' refused: the store was opened read-only (rocks_options::read_only)");
    }
    return std::nullopt;
  }
  // The write gate's WAL-failure guard for this DB (write_gate.hpp). Inside enter().
  std::optional<keel::error> refuse_after_wal_failure(std::string_view op) const {
    return gate_.refuse_after_wal_failure(*h_.db, op, opts_.path);
  }
  result<void> check_write(const rocksdb::Status& s, std::string_view op) const {
    return gate_.check_write(*h_.db, s, op, opts_.path);
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
  // with the write gate held: exclusively when the batch has an open-ended
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
    if (auto r = check_write(h_.db->Write(write_options_, &wb), what); !r) return r;
    conflicts_->record(batch);
    return {};
  }
  // The largest key in the database (nullopt when empty). Inside enter().
  result<std::optional<std::string>> largest_key() const {
    std::unique_ptr<rocksdb::Iterator> it(h_.db->NewIterator(rocksdb::ReadOptions()));
    it->SeekToLast();
    if (it->Valid()) return std::optional<std::string>(it->key().ToString());
    if (!it->status().ok()) return detail::rocks_op_error(it->status(), "erase_range", opts_.path);
    return std::optional<std::string>();
  }

  // The point read of get (WithValue: the value, or nullopt when absent) and
  // contains (!WithValue: whether present; the value is only pinned, not
  // copied), of the store or, when `snap` is given, of that snapshot (closed
  // once close() released it).
  template <bool WithValue>
  auto read_at(std::string_view key, const rocksdb::Snapshot* const* snap) const
      -> result<std::conditional_t<WithValue, std::optional<std::string>, bool>> {
    std::shared_lock<std::shared_mutex> lock;
    if (!h_.enter(lock)) return h_.closed();
    rocksdb::ReadOptions ro;
    if (snap) {
      if (!*snap) return h_.closed();
      ro.snapshot = *snap;
    }
    std::conditional_t<WithValue, std::string, rocksdb::PinnableSlice> value;
    rocksdb::Status s = h_.db->Get(ro, h_.db->DefaultColumnFamily(), slice(key), &value);
    if constexpr (WithValue) {
      if (s.IsNotFound()) return std::optional<std::string>();
      if (!s.ok()) return detail::rocks_op_error(s, "get", opts_.path);
      return std::optional<std::string>(std::move(value));
    } else {
      if (s.IsNotFound()) return false;
      if (!s.ok()) return detail::rocks_op_error(s, "contains", opts_.path);
      return true;
    }
  }

  // A new snapshot; inside enter().
  snapshot_type snapshot_locked() const { return snapshot_type(this, detail::take_rocks_snapshot(handle())); }

  options opts_;
  rocksdb::WriteOptions write_options_;
  detail::rocks_handle h_;         // the DB, the lifecycle lock, live cursors and snapshots
  detail::rocks_write_gate gate_;  // mutable state only: usable from const members
  std::shared_ptr<detail::conflict_tracker> conflicts_ = std::make_shared<detail::conflict_tracker>();
};

// A cursor over the RocksDB backend (detail::rocks_cursor, one type per
// tuning). Movable, single-threaded use.
template <class Tuning>
class RocksPolicy<Tuning>::cursor_type : public detail::rocks_cursor {
 private:
  friend class RocksPolicy;
  explicit cursor_type(detail::rocks_cursor c) : detail::rocks_cursor(std::move(c)) {}
};

// A snapshot of the RocksDB backend: a rocksdb::Snapshot, released when the
// last copy goes or at close(), whichever comes first.
template <class Tuning>
class RocksPolicy<Tuning>::snapshot_type {
 public:
  result<std::optional<std::string>> get(std::string_view key) const { return owner_->template read_at<true>(key, &view_->snap); }
  result<bool> contains(std::string_view key) const { return owner_->template read_at<false>(key, &view_->snap); }
  cursor_type scan(const key_range& range) const {
    return cursor_type(detail::rocks_cursor::open(owner_->handle(), range, view_));
  }

 private:
  friend class RocksPolicy;
  snapshot_type(const RocksPolicy* owner, std::shared_ptr<const detail::rocks_snapshot_view> v)
      : owner_(owner), view_(std::move(v)) {}
  const RocksPolicy* owner_;
  std::shared_ptr<const detail::rocks_snapshot_view> view_;
};

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
